"""Build of ua3dtalk_jax and its rasterizer kernels (XLA FFI, pybind11).

  ua3dtalk_jax.render._raster_cpu   always: C++17, -O3 -fopenmp-simd -fno-math-errno
                                    (-march=native when UA3D_MARCH_NATIVE=1);
  ua3dtalk_jax.render._raster_cuda  when nvcc is found: csrc/cuda/*.cu compiled by nvcc for
                                    UA3D_CUDA_ARCHS (default "80;90", + PTX of the newest),
                                    linked with the static CUDA runtime. UA3D_NO_CUDA=1 skips
                                    it; a failed CUDA build prints one line and the install
                                    still succeeds (the CPU kernel and the reference remain).

The XLA FFI headers come from jaxlib (`jax.ffi.include_dir()`), see BUILD_NOTES.md.
"""

from __future__ import annotations

import concurrent.futures
import glob
import importlib.util
import os
import shutil
import subprocess
import sys

from pybind11.setup_helpers import Pybind11Extension
from setuptools import find_packages, setup
from setuptools.command.build_ext import build_ext

ROOT = os.path.dirname(os.path.abspath(__file__))
CSRC = os.path.join("csrc")


def _log(msg: str) -> None:
    print(f"ua3dtalk_jax: {msg}", file=sys.stderr, flush=True)


def _ffi_include_dir() -> str:
    """jaxlib/include (what jax.ffi.include_dir() returns) without importing jax."""
    spec = importlib.util.find_spec("jaxlib")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("jaxlib is required to build the rasterizer (XLA FFI headers)")
    path = os.path.join(next(iter(spec.submodule_search_locations)), "include")
    if not os.path.exists(os.path.join(path, "xla", "ffi", "api", "ffi.h")):
        raise RuntimeError(f"XLA FFI headers not found under {path}")
    return path


def _cuda_home(nvcc: str) -> str | None:
    candidates = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH")]
    candidates += [os.path.dirname(os.path.dirname(os.path.realpath(nvcc))), "/usr/local/cuda"]
    for c in candidates:
        if c and os.path.exists(os.path.join(c, "include", "cuda_runtime.h")):
            return c
    return None


# -fno-trapping-math lets GCC if-convert (vectorise) the masked pixel loops; -ffp-contract=off keeps
# the forward and backward passes bit-identical in which pairs they blend, with or without FMA.
# -fno-wrapv undoes the -fwrapv of Python's own CFLAGS (sysconfig), which setuptools puts first:
# with wrapping int arithmetic GCC cannot widen the masked loops' int indices, and the forward
# ran at half speed (256², 10k: 11.4 vs 6.1 ms on one thread).
CPU_FLAGS = ["-O3", "-fopenmp-simd", "-fno-math-errno", "-fno-trapping-math", "-ffp-contract=off"]
CPU_FLAGS += ["-fno-wrapv"]
CPU_FLAGS += ["-fvisibility=hidden"]
if os.environ.get("UA3D_MARCH_NATIVE") == "1":
    CPU_FLAGS.append("-march=native")
INCLUDES = [CSRC, os.path.join(CSRC, "include")]


def _cpu_extension(ffi_include: str) -> Pybind11Extension:
    sources = sorted(glob.glob(os.path.join(CSRC, "cpu", "*.cc")))
    sources += [os.path.join(CSRC, "ffi", "rasterize_cpu_ffi.cc")]
    sources += [os.path.join(CSRC, "ffi", "module_cpu.cc")]
    return Pybind11Extension(
        "ua3dtalk_jax.render._raster_cpu",
        sources,
        include_dirs=INCLUDES + [ffi_include],
        extra_compile_args=CPU_FLAGS,
        cxx_std=17,
        depends=_cpu_headers(),
    )


def _cpu_headers() -> list[str]:
    """The headers and .inc files the CPU sources include: setuptools rebuilds the extension
    only when a source or one of these is newer than it (an edited tile_forward.inc alone
    would otherwise leave the old kernel in place)."""
    found = []
    for pattern in ("cpu/*.h", "cpu/*.inc", "ffi/*.h", "include/ua3d/*.h"):
        found += glob.glob(os.path.join(CSRC, pattern))
    return sorted(found)


def _cuda_extension(ffi_include: str, cuda_home: str) -> Pybind11Extension:
    ext = Pybind11Extension(
        "ua3dtalk_jax.render._raster_cuda",
        [
            os.path.join(CSRC, "ffi", "rasterize_cuda_ffi.cc"),
            os.path.join(CSRC, "ffi", "module_cuda.cc"),
        ],
        include_dirs=INCLUDES + [ffi_include, os.path.join(cuda_home, "include")],
        library_dirs=[os.path.join(cuda_home, "lib64")],
        libraries=["cudart_static", "dl", "rt", "pthread"],
        extra_compile_args=["-O3", "-fvisibility=hidden"],
        cxx_std=17,
    )
    ext.cuda_sources = sorted(glob.glob(os.path.join(CSRC, "cuda", "*.cu")))
    return ext


class BuildExt(build_ext):
    """Compiles .cu files with nvcc before linking the CUDA extension; never fails the install
    because of CUDA."""

    def build_extensions(self):
        self._failed = []
        super().build_extensions()
        # A failed CUDA extension is dropped, so that the editable/in-place copy step does not
        # look for its missing .so, and a stale copy in the source tree (an older build) is
        # removed, so that it cannot be imported in place of the code that failed to build.
        for ext in self._failed:
            self.extensions.remove(ext)
            stale = os.path.join(ROOT, self.get_ext_filename(ext.name))
            if os.path.exists(stale):
                os.remove(stale)
                _log(f"removed the stale {os.path.relpath(stale, ROOT)}")

    def build_extension(self, ext):
        cuda_sources = getattr(ext, "cuda_sources", None)
        if not cuda_sources:
            return super().build_extension(ext)
        try:
            ext.extra_objects = self._nvcc_compile(ext, cuda_sources)
            super().build_extension(ext)
            _log("CUDA kernels built (ua3dtalk_jax.render._raster_cuda)")
        except Exception as err:  # noqa: BLE001 - any CUDA failure leaves the CPU build intact
            first = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
            _log(f"CUDA build failed, CPU kernel only ({first}); see BUILD_NOTES.md")
            self._failed.append(ext)

    def _nvcc_compile(self, ext, sources):
        nvcc = NVCC
        archs = [
            a for a in os.environ.get("UA3D_CUDA_ARCHS", "80;90").replace(",", ";").split(";") if a
        ]
        gencode = []
        for arch in archs:
            gencode += ["-gencode", f"arch=compute_{arch},code=sm_{arch}"]
        gencode += ["-gencode", f"arch=compute_{archs[-1]},code=compute_{archs[-1]}"]
        out_dir = os.path.join(self.build_temp, "cuda")
        os.makedirs(out_dir, exist_ok=True)
        includes = [f"-I{d}" for d in ext.include_dirs]

        def compile_one(src):
            obj = os.path.join(out_dir, os.path.basename(src) + ".o")
            cmd = [nvcc, "-c", src, "-o", obj, "-O3", "-std=c++17", "--expt-relaxed-constexpr"]
            cmd += ["-Xcompiler", "-fPIC,-fvisibility=hidden", *gencode, *includes]
            _log("nvcc " + os.path.basename(src))
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                sys.stderr.write(proc.stdout + proc.stderr)
                raise RuntimeError(f"nvcc failed on {src}")
            return obj

        # In parallel: the CUB sort alone takes about a minute per architecture.
        with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            return list(pool.map(compile_one, sources))


def _extensions():
    ffi_include = _ffi_include_dir()
    exts = [_cpu_extension(ffi_include)]
    if os.environ.get("UA3D_NO_CUDA") == "1":
        _log("UA3D_NO_CUDA=1: CUDA kernels skipped, CPU kernel only")
    elif NVCC is None:
        _log("nvcc not found: CUDA kernels skipped, CPU kernel only (set NVCC, CUDA_HOME or PATH)")
    elif (home := _cuda_home(NVCC)) is None:
        _log(f"nvcc at {NVCC} but no CUDA headers found (set CUDA_HOME): CUDA kernels skipped")
    else:
        exts.append(_cuda_extension(ffi_include, home))
    return exts


def _find_nvcc() -> str | None:
    if os.environ.get("NVCC"):
        return os.environ["NVCC"]
    for home in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH")):
        if home and os.path.exists(os.path.join(home, "bin", "nvcc")):
            return os.path.join(home, "bin", "nvcc")
    return shutil.which("nvcc")


NVCC = _find_nvcc()

setup(
    name="ua3dtalk_jax",
    version="0.1.0",
    description="JAX/Flax UA-3DTalk (3D Gaussian talking heads) with C++/CUDA rasterizer kernels",
    python_requires=">=3.11",
    packages=find_packages(
        include=["ua3dtalk_jax", "ua3dtalk_jax.*", "experiments", "experiments.*"]
    ),
    ext_modules=_extensions(),
    cmdclass={"build_ext": BuildExt},
    zip_safe=False,
)
