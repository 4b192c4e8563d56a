/* The structured split of CUDA 13.1 as greenres calls it: CU_DEV_SM_RESOURCE_GROUP_PARAMS
 * (64 bytes; 13.5 names one reserved word localityDomainId) and cuDevSmResourceSplit's
 * type. Declared here so that what includes it compiles against 12.9's cuda.h, which lacks
 * both; cuDevSmResourceSplit is called through a pointer resolved at run time. Included by
 * greenres_runtime.h (the runtime) and by the benchmarks' C floor (floor.c).
 */
#ifndef GREENRES_GROUP_PARAMS_H
#define GREENRES_GROUP_PARAMS_H

#include <cuda.h>

typedef struct {
    unsigned int smCount;
    unsigned int coscheduledSmCount;
    unsigned int preferredCoscheduledSmCount;
    unsigned int flags;
    unsigned int reserved[12];
} greenres_group_params;
typedef CUresult (*greenres_split_fn)(CUdevResource*, unsigned int, const CUdevResource*,
                                      CUdevResource*, unsigned int, greenres_group_params*);

#endif
