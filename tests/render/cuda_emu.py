"""Builds and calls the CPU emulation of the CUDA rasterizer (csrc/emu + the csrc/cuda kernels).

`library(variant)` compiles the unchanged `csrc/cuda/*.cu` kernels as host C++ with g++ (the
shim `csrc/emu/cuda_emu.h` stands in for the CUDA runtime; each CUDA thread is a fiber) into
`build/cuda_emu/<variant>-<hash>/`, once per source hash (a file lock serialises pytest-xdist
workers). Variants: "release" (-O2) and "sanitize" (-O1, ASan + UBSan, no recovery).

`Emulator` runs the forward and backward on numpy arrays laid out as the FFI takes them
(every array [B, N, ...], images [B, H, W(, C)]) and raises `KernelFault` with the scheduler's
message when a kernel breaks the execution model (divergent barrier, missing warp lanes,
deadlock).
"""

from __future__ import annotations

import ctypes
import fcntl
import functools
import hashlib
import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
CSRC = ROOT / "csrc"
# device_primitives.cu wraps CUB (nvcc only); the emulation links its host stand-ins instead.
NVCC_ONLY = {"device_primitives.cu"}
COMMON_FLAGS = [
    "-std=c++17",
    "-fPIC",
    "-fvisibility=hidden",
    "-ffp-contract=off",
    "-fno-math-errno",
    "-DUA3D_CUDA_EMU",
    "-Wall",
    "-Wextra",
    "-Werror",
]
VARIANT_FLAGS = {
    "release": ["-O2"],
    "sanitize": [
        "-O1",
        "-g",
        "-fno-omit-frame-pointer",
        "-fsanitize=address,undefined,float-cast-overflow",
        "-fno-sanitize-recover=all",
        "-fno-sanitize=vptr",
    ],
}
GRAD_NAMES = ("v_means2d", "v_conics", "v_colors", "v_opacities")
ORDERS = {"forward": 0, "reverse": 1, "random": 2}
STAT_NAMES = (
    "launches",
    "blocks",
    "barriers",
    "warp_ops",
    "switches",
    "stream_syncs",
    "device_allocs",
    "live_device_bytes",
)


class KernelFault(RuntimeError):
    """The emulator's scheduler rejected a kernel (the message names kernel, block and lines)."""


def gxx() -> str | None:
    return shutil.which(os.environ.get("CXX", "g++"))


def sources(root: Path = ROOT) -> list[Path]:
    cuda = sorted(p for p in (root / "csrc" / "cuda").glob("*.cu") if p.name not in NVCC_ONLY)
    return cuda + sorted((root / "csrc" / "emu").glob("*.cc"))


def _digest(root: Path, flags: list[str], compiler: str) -> str:
    h = hashlib.sha256(" ".join([compiler, *flags]).encode())
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True, check=False)
    h.update(version.stdout.encode())
    for d in ("cuda", "emu", "include"):
        for p in sorted((root / "csrc" / d).rglob("*")):
            if p.is_file():
                h.update(str(p.relative_to(root)).encode() + p.read_bytes())
    return h.hexdigest()[:16]


def build(root: Path = ROOT, variant: str = "release", out_dir: Path | None = None) -> Path:
    """Compiles the emulation library of the sources under `root`; returns the .so path.

    Args:
      root: a checkout (its csrc/ is compiled); the tests' mutation checks pass a copy.
      variant: "release" or "sanitize".
      out_dir: where to build; default `root/build/cuda_emu/<variant>-<source hash>`.

    Raises:
      RuntimeError: g++ is missing or the compilation fails (its output included).
    """
    compiler = gxx()
    if compiler is None:
        raise RuntimeError("the CUDA emulation needs g++ (set CXX to another GCC-compatible one)")
    flags = COMMON_FLAGS + VARIANT_FLAGS[variant]
    if out_dir is None:
        out_dir = root / "build" / "cuda_emu" / f"{variant}-{_digest(root, flags, compiler)}"
    lib = out_dir / "libua3d_cuda_emu.so"
    if lib.exists():
        return lib
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if lib.exists():  # another worker built it meanwhile
            return lib
        includes = [
            f"-I{root / 'csrc' / 'emu' / 'shim'}",
            f"-I{root / 'csrc'}",
            f"-I{root / 'csrc' / 'include'}",
        ]

        def compile_one(src: Path) -> Path:
            obj = out_dir / (src.name + ".o")
            lang = ["-x", "c++"] if src.suffix == ".cu" else []
            cmd = [compiler, *flags, *includes, "-c", *lang, str(src), "-o", str(obj)]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                raise RuntimeError(f"g++ failed on {src}:\n{proc.stderr[-6000:]}")
            return obj

        with ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1)) as pool:
            objects = list(pool.map(compile_one, sources(root)))
        tmp = out_dir / f"lib.{os.getpid()}.tmp"
        link = [compiler, *flags, "-shared", *map(str, objects), "-o", str(tmp)]
        proc = subprocess.run(link, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"linking the emulation failed:\n{proc.stderr[-6000:]}")
        os.replace(tmp, lib)
    return lib


def _runtime(name: str) -> str | None:
    path = subprocess.run(
        [gxx(), f"-print-file-name={name}"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return path if os.path.isabs(path) and os.path.exists(path) else None


def libasan() -> str | None:
    """The ASan runtime of g++ (to LD_PRELOAD into a Python that loads a sanitized build)."""
    return _runtime("libasan.so")


def sanitizer_env() -> dict:
    """Environment for a subprocess that loads the "sanitize" build: ASan preloaded (with
    libstdc++, else ASan's __cxa_throw interceptor finds no real one: the interpreter does not
    link libstdc++), leaks not checked (the interpreter's own), the first report fatal."""
    preload = ":".join(p for p in (libasan(), _runtime("libstdc++.so.6")) if p)
    return dict(
        os.environ,
        LD_PRELOAD=preload,
        PYTHONPATH=str(ROOT),
        ASAN_OPTIONS="detect_leaks=0:abort_on_error=1",
        UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1",
    )


def _ptr(a: np.ndarray | None):
    return None if a is None else a.ctypes.data_as(ctypes.c_void_p)


class Emulator:
    """The emulated CUDA rasterizer in a loaded library (see module docstring)."""

    def __init__(self, lib_path: Path):
        self.lib = ctypes.CDLL(str(lib_path))
        self.lib.ua3d_emu_set_schedule.argtypes = [ctypes.c_int, ctypes.c_uint64]
        self.lib.ua3d_emu_stats.argtypes = [ctypes.c_void_p]
        tail = [ctypes.c_char_p, ctypes.c_int64]
        self.lib.ua3d_emu_forward.argtypes = [ctypes.c_void_p] * 12 + tail
        self.lib.ua3d_emu_forward.restype = ctypes.c_int
        self.lib.ua3d_emu_backward.argtypes = [ctypes.c_void_p] * 17 + tail
        self.lib.ua3d_emu_backward.restype = ctypes.c_int
        self.lib.ua3d_emu_kept_bins.restype = ctypes.c_int64
        self.lib.ua3d_emu_selftest.argtypes = [ctypes.c_char_p, ctypes.c_void_p] + tail

    def schedule(self, order: str, seed: int = 0) -> None:
        """Thread order between synchronisation points for later calls: forward/reverse/random."""
        self.lib.ua3d_emu_set_schedule(ORDERS[order], seed)

    def stats(self) -> dict:
        out = np.zeros(len(STAT_NAMES), np.int64)
        self.lib.ua3d_emu_stats(_ptr(out))
        return dict(zip(STAT_NAMES, out.tolist()))

    def reset_stats(self) -> None:
        self.lib.ua3d_emu_reset_stats()

    def selftest(self, name: str) -> np.ndarray:
        """Runs one of csrc/emu/selftest_kernels.cc's kernels; returns its output ints."""
        out = np.full(3 * 128, -1, np.int32)
        err = ctypes.create_string_buffer(4096)
        self._check(self.lib.ua3d_emu_selftest(name.encode(), _ptr(out), err, 4096), err)
        return out

    @staticmethod
    def _dims(scene: dict) -> np.ndarray:
        b, n, c = scene["colors"].shape
        return np.array([b, n, c, scene["width"], scene["height"]], np.int64)

    @staticmethod
    def _inputs(scene: dict) -> list:
        names = ("means2d", "conics", "colors", "opacities", "depths", "radii", "background")
        return [_ptr(scene[k]) for k in names]

    def _check(self, code: int, err) -> None:
        if code == 2:
            raise KernelFault(err.value.decode())
        if code != 0:
            raise RuntimeError(f"emulated CUDA call failed: {err.value.decode()}")

    def kept_bins(self) -> int:
        """Tile lists kept by forwards and not yet taken by a backward."""
        return int(self.lib.ua3d_emu_kept_bins())

    def forward(self, scene: dict, fill=np.nan, keep_bins: bool = False):
        """(render [B,H,W,C], transmittance [B,H,W], last [B,H,W]); outputs start as `fill`.

        With keep_bins, returns a fourth output: the bins token [B, 2] int32.
        """
        b, _, c = scene["colors"].shape
        h, w = scene["height"], scene["width"]
        render = np.full((b, h, w, c), fill, np.float32)
        trans = np.full((b, h, w), fill, np.float32)
        last = np.full((b, h, w), -7, np.int32)
        token = np.zeros((b, 2), np.int32) if keep_bins else None
        err = ctypes.create_string_buffer(4096)
        code = self.lib.ua3d_emu_forward(
            _ptr(self._dims(scene)),
            *self._inputs(scene),
            _ptr(render),
            _ptr(trans),
            _ptr(last),
            _ptr(token),
            err,
            4096,
        )
        self._check(code, err)
        return (render, trans, last, token) if keep_bins else (render, trans, last)

    def backward(self, scene: dict, trans, last, v_render, v_alpha, fill=np.nan, bins_token=None):
        """(v_means2d, v_conics, v_colors, v_opacities), each shaped like its input; with the
        forward's bins_token the kept tile lists are taken instead of binning again."""
        outs = [
            np.full(scene[k].shape, fill, np.float32)
            for k in ("means2d", "conics", "colors", "opacities")
        ]
        err = ctypes.create_string_buffer(4096)
        grads_in = [np.ascontiguousarray(x) for x in (trans, last, v_render, v_alpha)]
        token = None if bins_token is None else np.ascontiguousarray(bins_token, np.int32)
        code = self.lib.ua3d_emu_backward(
            _ptr(self._dims(scene)),
            *self._inputs(scene),
            *map(_ptr, grads_in),
            _ptr(token),
            *map(_ptr, outs),
            err,
            4096,
        )
        self._check(code, err)
        return tuple(outs)


@functools.cache
def emulator(variant: str = "release") -> Emulator:
    return Emulator(build(variant=variant))
