"""Extensions only; metadata lives in pyproject.toml.

Three native pieces are built:
  greenres._driver        the Cython runtime core (C++, cimports cuda.bindings.cydriver)
  greenres/sim/libcuda.so.1  the simulated CUDA driver (plain C++ shared library)
  greenres/benchmark/libgreenres_floor.so  the benchmarks' C floor (plain C shared library)

GREENRES_SANITIZE=1 builds both with AddressSanitizer and UndefinedBehaviorSanitizer (run
them with the ASan runtime preloaded: scripts/sanitize does both).
"""

import glob
import importlib.util
import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

SIM_LIBRARY = "greenres.sim.libcuda"
SIM_FILENAME = "libcuda.so.1"
FLOOR_LIBRARY = "greenres.benchmark.libgreenres_floor"
FLOOR_FILENAME = "libgreenres_floor.so"
# Plain shared libraries (no PyInit_ symbol), each with the file name it is loaded by.
PLAIN_LIBRARIES = {SIM_LIBRARY: SIM_FILENAME, FLOOR_LIBRARY: FLOOR_FILENAME}


def _nvidia_include(subdir, header="cuda.h", wheel="nvidia-cuda-runtime"):
    """The include folder of an NVIDIA header wheel, found through the `nvidia`
    namespace package (works inside pip's isolated build, unlike cuda.pathfinder)."""
    spec = importlib.util.find_spec("nvidia")
    roots = list(spec.submodule_search_locations) if spec else []
    for root in roots:
        candidate = os.path.join(root, subdir, "include")
        if os.path.isfile(os.path.join(candidate, header)):
            return candidate
    raise RuntimeError(
        f"{header} not found under nvidia/{subdir}/include in {roots}: the build needs the "
        f"{wheel} wheel listed in pyproject.toml's build requirements"
    )


def _bindings_major():
    from cuda.bindings import __version__

    return int(__version__.split(".")[0])


class BuildExt(build_ext):
    """Resolves header folders at build time and names the plain shared libraries (the
    simulated driver is libcuda.so.1)."""

    def build_extensions(self):
        cuda13 = _nvidia_include("cu13")
        driver_headers = cuda13 if _bindings_major() >= 13 else _nvidia_include("cuda_runtime")
        # NVTX v3 is header-only (nvidia-nvtx); after the driver headers, so that its
        # nvToolsExtCuda.h includes the cuda.h the runtime is built against.
        nvtx = _nvidia_include("cu13", os.path.join("nvtx3", "nvToolsExt.h"), "nvidia-nvtx")
        for ext in self.extensions:
            if ext.name == SIM_LIBRARY:
                ext.include_dirs.append(cuda13)
            else:
                ext.include_dirs += [driver_headers, nvtx]
        super().build_extensions()

    def get_ext_fullpath(self, ext_name):
        # cuda-bindings dlopens "libcuda.so.1"; the loader matches an already loaded
        # library by its soname, and the file keeps the same name to avoid surprises.
        if ext_name in PLAIN_LIBRARIES:
            fullpath = super().get_ext_fullpath(ext_name)
            return os.path.join(os.path.dirname(fullpath), PLAIN_LIBRARIES[ext_name])
        return super().get_ext_fullpath(ext_name)

    def get_export_symbols(self, ext):
        if ext.name in PLAIN_LIBRARIES:
            return []  # a plain shared library: no PyInit_ symbol to export
        return super().get_export_symbols(ext)


# -fno-sanitize-recover: an undefined-behaviour report fails the run like an ASan one.
SANITIZE_FLAGS = (
    [
        "-fsanitize=address,undefined",
        "-fno-sanitize-recover=undefined",
        "-fno-omit-frame-pointer",
        "-g",
    ]
    if os.environ.get("GREENRES_SANITIZE") == "1"
    else []
)


def _cythonized():
    from Cython.Build import cythonize

    driver = Extension(
        "greenres._driver",
        sources=["src/greenres/_driver.pyx"],
        include_dirs=["src/greenres/_native", "src/greenres/include"],
        depends=sorted(
            glob.glob("src/greenres/*.pxi")
            + glob.glob("src/greenres/_native/*.h")
            + glob.glob("src/greenres/include/*.h")
        ),
        language="c++",
        extra_compile_args=["-std=c++17", "-O2", *SANITIZE_FLAGS],
        extra_link_args=SANITIZE_FLAGS,
    )
    return cythonize(
        [driver],
        language_level=3,
        compiler_directives={"embedsignature": True, "binding": True},
        # The generated C++ depends on the cuda-bindings it cimports (12.x and 13.x differ):
        # written under build/, one folder per Python, cuda-bindings and sanitizer setting,
        # never next to the .pyx, so that builds for several environments at once (tox
        # run-parallel) cannot compile each other's output.
        build_dir=os.path.join(
            "build",
            "cython",
            f"py{sys.version_info[0]}{sys.version_info[1]}-bindings{_bindings_major()}"
            + ("-sanitized" if SANITIZE_FLAGS else ""),
        ),
    )


simulated_driver = Extension(
    SIM_LIBRARY,
    sources=sorted(glob.glob("src/simdriver/*.cpp")),
    depends=sorted(glob.glob("src/simdriver/*.h")),
    language="c++",
    extra_compile_args=["-std=c++17", "-O2", "-fvisibility=hidden", "-pthread", *SANITIZE_FLAGS],
    extra_link_args=["-Wl,-soname,libcuda.so.1", "-pthread", *SANITIZE_FLAGS],
)

# The benchmarks' C floor: the driver calls greenres makes, timed in C (greenres.benchmark).
benchmark_floor = Extension(
    FLOOR_LIBRARY,
    sources=["src/greenres/benchmark/floor.c"],
    include_dirs=["src/greenres/include", "src/greenres/_native"],
    depends=[
        "src/greenres/include/greenres_api.h",
        "src/greenres/_native/greenres_group_params.h",
    ],
    language="c",
    extra_compile_args=["-O2", "-pthread", *SANITIZE_FLAGS],
    extra_link_args=["-pthread", *SANITIZE_FLAGS],
)

setup(
    ext_modules=[*_cythonized(), simulated_driver, benchmark_floor],
    cmdclass={"build_ext": BuildExt},
    # A sanitized build keeps its objects apart: a later plain build must not reuse them.
    options={"build": {"build_base": "build/sanitized" if SANITIZE_FLAGS else "build/plain"}},
)
