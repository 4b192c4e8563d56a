# Sourced by scripts/test and scripts/demo: make ./.venv and install greenres into it.
# Needs only a Python >= 3.10 with venv and a C++ compiler; every other piece (Cython,
# cuda-bindings, the cuda.h headers) comes from PyPI during the build.

bootstrap_venv() {
    local extras=${1:-}
    local python=${GREENRES_PYTHON:-python3}
    if [ ! -x .venv/bin/python ]; then
        "$python" -m venv .venv
    fi
    local target="."
    [ -n "$extras" ] && target=".[$extras]"
    # A non-editable install: the tests run against the built package, like users get it.
    .venv/bin/python -m pip install --quiet --disable-pip-version-check "$target"
}
