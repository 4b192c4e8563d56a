# Included by _driver.pyx (one extension module; one file per concept).
# Creation of a layout's green contexts from a SplitRecipe: ONE split of the device's SMs,
# one descriptor and green context per partition, its streams and events. The recipe
# (greenres.recipe) is the only thing of a plan this code reads.


cdef int _split_device(Device device, object recipe, cydriver.CUdevResource* results,
                       cydriver.CUdevResource* remainder) except -1:
    """Make the recipe's one split of ``device``'s SM resource into ``results`` (of
    ``recipe.result_count`` entries) and ``remainder``."""
    cdef cydriver.CUdevResource device_resource
    cdef greenres_group_params* params = NULL
    cdef unsigned int wanted = recipe.result_count
    cdef unsigned int made = wanted
    cdef unsigned int flags = recipe.split_flags
    cdef unsigned int min_count = recipe.min_count
    cdef unsigned int coscheduled, group_flags
    cdef int k
    device._sm_resource(&device_resource)
    if recipe.mechanism == "groups":
        if wanted:
            with nogil:
                check(cydriver.cuDevSmResourceSplitByCount(
                    results, &made, &device_resource, remainder, flags, min_count),
                    "cuDevSmResourceSplitByCount")
        if made < wanted:
            raise PlanError(
                f"the driver made {made} groups of {min_count} SMs where the plan needs "
                f"{wanted}; plan against Device.sm_facts() of this device"
            )
        return 0
    if recipe.mechanism != "structured":
        raise PlanError(
            f"unknown mechanism {recipe.mechanism!r} (expected 'groups' or 'structured')")
    if not _structured_split_ok():
        raise _too_old("the structured split (cuDevSmResourceSplit)", STRUCTURED_SPLIT)
    sizes = recipe.group_sm_counts
    if len(sizes) != wanted:
        raise PlanError(f"the plan has {len(sizes)} split groups but says {wanted}")
    domains = recipe.group_localities
    if domains and len(domains) != wanted:
        raise PlanError(f"the plan has {len(domains)} group domains but says {wanted}")
    params = <greenres_group_params*>calloc(max(wanted, 1), sizeof(greenres_group_params))
    if params == NULL:
        raise MemoryError()
    try:
        coscheduled = recipe.coscheduled_sm_count
        group_flags = recipe.group_flags
        for k in range(wanted):
            params[k].smCount = sizes[k]
            params[k].coscheduledSmCount = coscheduled
            params[k].flags = group_flags
            if domains and domains[k] >= 0:
                # 13.4: the group's SMs from one locality domain (or any: ID_ANY); the
                # field localityDomainId is the first reserved word of the 13.1 layout
                params[k].flags |= GROUP_LOCALITY_DOMAIN_ID
                params[k].reserved[0] = domains[k]
        with nogil:
            check(_structured_split(results, wanted, &device_resource, remainder, flags,
                                    params),
                  "cuDevSmResourceSplit")
    finally:
        free(params)
    return 0


cdef int _check_workqueue(cydriver.CUgreenCtx green, object r) except -1:
    """Refuse a green context whose workqueue configuration is not the plan's."""
    cdef cydriver.CUdevResource held
    cdef greenres_wq_config* config
    memset(&held, 0, sizeof(held))
    with nogil:
        check(cydriver.cuGreenCtxGetDevResource(green, &held,
                                                GREENRES_RESOURCE_TYPE_WORKQUEUE_CONFIG),
              "cuGreenCtxGetDevResource")
    config = greenres_wq_config_of(&held)
    if config.wqConcurrencyLimit != r.workqueue_limit or config.sharingScope != r.workqueue_scope:
        raise PlanError(
            f"partition {r.name!r} was created with workqueue scope {config.sharingScope} and "
            f"limit {config.wqConcurrencyLimit} but the plan says scope {r.workqueue_scope} "
            f"and limit {r.workqueue_limit}"
        )
    return 0


cdef object _planned_partition(object plan, int i, object name):
    """The plan's partition of recipe ``i``: the plan's ``i``-th (recipes are made in plan
    order), else by name (``plan[name]``, which normalises and searches)."""
    planned = plan.partitions
    if i < len(planned) and planned[i].name == name:
        return planned[i]
    return plan[name]


cdef int _create_partitions(_LayoutCore core, Device device, object recipe, object plan,
                            int first, list out, bint modal) except -1:
    """Create every partition of ``recipe`` from ONE split of the device's SMs into
    ``core.states[first:]``, appending GreenContext objects to ``out``. On failure what was
    made stays in the core, which the caller closes. ``modal``: the layout has modes to
    switch between, whose fences need an event per partition (one of a single mode never
    switches: no fence event)."""
    cdef unsigned int result_count = recipe.result_count
    cdef cydriver.CUdevResource remainder
    cdef cydriver.CUdevResource* results = NULL
    cdef cydriver.CUdevResource* pieces = NULL
    cdef cydriver.CUdevResourceDesc desc
    cdef cydriver.CUdevResource held
    cdef cydriver.CUdevResource queue
    cdef greenres_wq_config* config
    cdef unsigned int n_pieces
    cdef int i, k, priority, scope
    cdef PartState* s
    cdef GreenContext part
    cdef cydriver.CUdevice cu_device = device._device
    partitions = recipe.partitions
    if result_count == 0 and not any(p.takes_split_remainder for p in partitions):
        raise PlanError("the plan has no partitions to create")
    memset(&remainder, 0, sizeof(remainder))
    results = <cydriver.CUdevResource*>calloc(max(result_count, 1),
                                              sizeof(cydriver.CUdevResource))
    pieces = <cydriver.CUdevResource*>calloc(max(result_count, 1) + 2,
                                             sizeof(cydriver.CUdevResource))
    try:
        if results == NULL or pieces == NULL:
            raise MemoryError()
        _split_device(device, recipe, results, &remainder)
        for i, r in enumerate(partitions):
            n_pieces = 0
            for k in r.results:
                pieces[n_pieces] = results[k]
                n_pieces += 1
            if r.takes_split_remainder:
                pieces[n_pieces] = remainder
                n_pieces += 1
            if n_pieces == 0:
                raise PlanError(f"partition {r.name!r} has no SMs in the plan")
            scope = r.workqueue_scope
            if scope >= 0:
                # cuda.h: a configuration is changed "directly in place" and provisioned
                # by cuGreenCtxCreate; it travels in the descriptor beside the SMs.
                device._workqueue_config(&queue)
                config = greenres_wq_config_of(&queue)
                config.wqConcurrencyLimit = r.workqueue_limit
                config.sharingScope = scope
                pieces[n_pieces] = queue
                n_pieces += 1
            s = core.states[first + i]
            s.primary = core.primary
            s.device = cu_device
            with nogil:
                check(cydriver.cuDevResourceGenerateDesc(&desc, pieces, n_pieces),
                      "cuDevResourceGenerateDesc")
                check(cydriver.cuGreenCtxCreate(&s.green, desc, cu_device,
                                                cydriver.CU_GREEN_CTX_DEFAULT_STREAM),
                      "cuGreenCtxCreate")
                check(cydriver.cuCtxFromGreenCtx(&s.ctx, s.green), "cuCtxFromGreenCtx")
                memset(&held, 0, sizeof(held))
                check(cydriver.cuGreenCtxGetDevResource(s.green, &held,
                                                        cydriver.CU_DEV_RESOURCE_TYPE_SM),
                      "cuGreenCtxGetDevResource")
            got = greenres_sm_prefix_of(&held).smCount
            if got != r.sm_count:
                raise PlanError(
                    f"partition {r.name!r} was created with {got} SMs but the plan says "
                    f"{r.sm_count}; plan against Device.sm_facts() of this device"
                )
            if scope >= 0:
                _check_workqueue(s.green, r)
            priority = r.priority
            with nogil:
                check(cydriver.cuGreenCtxStreamCreate(&s.stream, s.green,
                                                      cydriver.CU_STREAM_NON_BLOCKING,
                                                      priority),
                      "cuGreenCtxStreamCreate")
            s.enter_event = _new_event(cydriver.CU_EVENT_DISABLE_TIMING)
            s.exit_event = _new_event(cydriver.CU_EVENT_DISABLE_TIMING)
            if modal:
                s.fence_event = _new_event(cydriver.CU_EVENT_DISABLE_TIMING)
            part = GreenContext.__new__(GreenContext)
            part._init(core, first + i, device, r, plan, _planned_partition(plan, i, r.name),
                       got)
            for _ in range(max(r.streams, 1) - 1):
                part._extra_streams.append(part._make_stream(priority))
            out.append(part)
    finally:
        free(results)
        free(pieces)
    return 0
