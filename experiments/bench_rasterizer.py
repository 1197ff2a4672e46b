"""Rasterizer benchmark: the tiled FFI kernel's figures, side by side with a baseline build.

Times `rasterize_to_pixels` (binning, sorting, blending; the op the kernels replace) on
pre-projected head-like scenes (`experiments/head_scene.py`, RGB + depth = 4 channels). "Evaluations" are
the (Gaussian, pixel) pairs inside the footprint boxes; M evals/s = pairs / forward time.

  python -m experiments.bench_rasterizer [--rounds=5] [--calls=30]
  python -m experiments.bench_rasterizer --baseline=PATH [--rounds=7]
  python -m experiments.bench_rasterizer --grid [--runs=7] [--sizes=256:10000,512:100000]
  python -m experiments.bench_rasterizer --binning_ab --sizes=256:10000,512:100000

Default: at 256², 10k Gaussians and 512², 100k, the kernel's forward, forward + backward and
backward (their difference) in ms, M evals/s and backward / forward, each round the fastest of
--calls calls and the figures the median over --rounds rounds; then the speed-up over the
pure-JAX reference at 128², 2k (the reference is O(H·W·N), too slow above that).

--baseline=PATH: a second checkout of the repository with its CPU kernel built in place
(`UA3D_NO_CUDA=1 python setup.py build_ext --inplace` there), e.g. today's commit as a git
worktree. Its extension module is loaded from its file under another module name and its XLA
FFI targets are registered with the prefix `ua3d_baseline_`, so both kernels run in this process
through the same raw ffi_calls (forward; forward keeping its tile lists + backward taking them).
They are timed alternately, which kernel goes first alternating too, and the speed-ups are
per-round ratios of the fastest calls; their median is printed with the range over rounds (the
machine's load moves single figures by ±15 % here, a ratio much less). The baseline must have
the same FFI signature (any commit since "binning once a step").

--grid: the full size × N table against the reference (medians of --runs). --binning_ab: the
kernel's fwd+bwd with the backward taking the forward's tile lists vs binning again
(UA3D_KEEP_BINS=0), alternating.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags

from experiments import cli
from experiments.head_scene import footprint_pixels, head_camera, head_scene
from ua3dtalk_jax.render import available_backends, reference
from ua3dtalk_jax.render.projection import project

_RUNS = flags.DEFINE_integer("runs", 7, "--grid, --binning_ab: timed runs a measurement (median).")
_ROUNDS = flags.DEFINE_integer("rounds", 5, "Alternating rounds (the figures are their medians).")
_CALLS = flags.DEFINE_integer("calls", 30, "Calls a round; its figure is the fastest.")
_BASELINE = flags.DEFINE_string("baseline", "", "A second checkout with its CPU kernel built.")
_GRID = flags.DEFINE_bool("grid", False, "The full size × N table against the reference.")
_MAX_REF = flags.DEFINE_float("max_reference_pairs", 3e8, "Skip the reference above H*W*N.")
_ASYNC = flags.DEFINE_bool(
    "async_dispatch",
    False,
    "Keep JAX's CPU async dispatch on. Off by default: on a 2-core machine its dispatch thread "
    "can hold one core while the kernel's two threads run, and the medians then jump between "
    "the one- and two-thread times (256², 10k forward 4.2 vs 2.3 ms).",
)
_SIZES = flags.DEFINE_list("sizes", [], "Only these SIZE:N configurations (e.g. 256:10000).")
_BINNING_AB = flags.DEFINE_bool("binning_ab", False, "Kept vs re-binned tile lists in fwd+bwd.")
_AB_ROUNDS = flags.DEFINE_integer("ab_rounds", 5, "Alternating rounds of --binning_ab.")

GRID = [
    (64, 1_000),
    (64, 10_000),
    (64, 100_000),
    (256, 1_000),
    (256, 10_000),
    (256, 100_000),
    (512, 1_000),
    (512, 10_000),
    (512, 100_000),
]
KERNEL_SIZES = [(256, 10_000), (512, 100_000)]
REFERENCE_SIZE = (128, 2_000)
TARGETS = [REFERENCE_SIZE, (256, 10_000)]  # --binning_ab's default
BASELINE_PREFIX = "ua3d_baseline"


def scene_inputs(size: int, n: int):
    """Pre-projected head scene (RGB + depth) at size²: (rasterize_to_pixels args, pairs)."""
    scene = head_scene(n)
    viewmat, K = head_camera(size, size)
    p = project(
        scene["means"],
        scene["quats"],
        scene["scales"],
        scene["opacities"],
        viewmat,
        K,
        width=size,
        height=size,
    )
    colors = jnp.concatenate([scene["colors"], p.depths[:, None]], -1)  # RGB + depth, as rasterize
    bg = jnp.array([0.1, 0.2, 0.3, 0.0], jnp.float32)
    args = (p.means2d, p.conics, colors, p.opacities, p.depths, p.radii, bg)
    return args, footprint_pixels(np.asarray(p.means2d), np.asarray(p.radii), size, size)


def median_ms(fn, args, runs: int, clock=time.perf_counter) -> float:
    """Median milliseconds of fn(*args) over `runs` calls after one compiling warm-up call."""
    jax.block_until_ready(fn(*args))  # compile + warm-up
    times = []
    for _ in range(runs):
        t0 = clock()
        jax.block_until_ready(fn(*args))
        times.append((clock() - t0) * 1e3)
    return float(np.median(times))


def fastest_ms(fn, args, calls: int) -> float:
    """Fastest of `calls` calls of fn(*args) in milliseconds (compiled beforehand)."""
    best = float("inf")
    for _ in range(calls):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        best = min(best, (time.perf_counter() - t0) * 1e3)
    return best


def timers(impl, size: int):
    """Jitted (forward, forward+backward) of `impl.rasterize_to_pixels` at size²."""

    def fwd(*args):
        return impl.rasterize_to_pixels(*args, width=size, height=size)

    def loss(m, c, col, o, bg, depths, radii):
        render, alpha = impl.rasterize_to_pixels(
            m, c, col, o, depths, radii, bg, width=size, height=size
        )
        return jnp.sum(render * jnp.linspace(-1.0, 1.0, render.shape[-1])) + jnp.sum(alpha)

    grad = jax.grad(loss, argnums=(0, 1, 2, 3, 4))

    def fwd_bwd(m, c, col, o, depths, radii, bg):
        return grad(m, c, col, o, bg, depths, radii)

    return jax.jit(fwd), jax.jit(fwd_bwd)


class Kernel:
    """One build's CPU FFI targets ("<prefix>_rasterize_to_pixels_{fwd,bwd}_f32"), called raw."""

    def __init__(self, label: str, prefix: str, isa: str):
        self.label, self.prefix, self.isa = label, prefix, isa

    def timers(self, size: int):
        """Jitted (forward, forward keeping its tile lists + backward taking them) at size²."""
        dims = {"width": np.int64(size), "height": np.int64(size)}
        f32, i32 = jnp.float32, jnp.int32

        def forward(args, keep):
            c = args[2].shape[-1]
            out = (
                jax.ShapeDtypeStruct((size, size, c), f32),
                jax.ShapeDtypeStruct((size, size), f32),
                jax.ShapeDtypeStruct((size, size), i32),
                jax.ShapeDtypeStruct((2,), i32),
            )
            call = jax.ffi.ffi_call(f"{self.prefix}_rasterize_to_pixels_fwd_f32", out)
            return call(*args, **dims, keep_bins=np.int64(keep))

        def fwd_bwd(args, v_render, v_alpha):
            _, trans, last, token = forward(args, 1)
            out = tuple(jax.ShapeDtypeStruct(x.shape, x.dtype) for x in args[:4])
            call = jax.ffi.ffi_call(f"{self.prefix}_rasterize_to_pixels_bwd_f32", out)
            return call(*args, trans, last, v_render, v_alpha, token, **dims, use_token=np.int64(1))

        return jax.jit(lambda args, *_: forward(args, 0)), jax.jit(fwd_bwd)


def this_kernel() -> Kernel:
    from ua3dtalk_jax.render import _raster_cpu, ffi  # noqa: F401 - registers the targets

    return Kernel("this checkout", "ua3d", _raster_cpu.tile_isa())


def load_baseline(path: str) -> Kernel:
    """The CPU kernel built in checkout `path`, its FFI targets registered as ua3d_baseline_*."""
    render_dir = os.path.join(os.path.abspath(path), "ua3dtalk_jax", "render")
    built = sorted(glob.glob(os.path.join(render_dir, "_raster_cpu*.so")))
    if not built:
        raise ValueError(
            f"--baseline: no built CPU kernel (_raster_cpu*.so) in {render_dir}; "
            "build it there: UA3D_NO_CUDA=1 python setup.py build_ext --inplace"
        )
    # Its own module name (the init symbol is the last component's, PyInit__raster_cpu).
    spec = importlib.util.spec_from_file_location("ua3d_baseline._raster_cpu", built[0])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for name, capsule in module.registrations().items():
        if not name.startswith("ua3d_"):
            raise ValueError(f"--baseline: unexpected FFI target {name!r} in {built[0]}")
        jax.ffi.register_ffi_target(BASELINE_PREFIX + name[4:], capsule, platform="cpu")
    isa = module.tile_isa() if hasattr(module, "tile_isa") else "omp simd"
    return Kernel(f"baseline {os.path.basename(os.path.abspath(path))}", BASELINE_PREFIX, isa)


def _interleaved(fns: dict, args: tuple, calls: int, flip: bool) -> dict:
    """{label: (fastest wall ms, fastest process CPU ms)} of `calls` calls of each function,
    the functions called in turn (the order reversed every other call)."""
    best = {label: [float("inf"), float("inf")] for label in fns}
    order = list(fns)
    for i in range(calls):
        for label in order if (i % 2 == 0) != flip else order[::-1]:
            t0, c0 = time.perf_counter(), time.process_time()
            jax.block_until_ready(fns[label](*args))
            t1, c1 = time.perf_counter(), time.process_time()
            best[label] = [
                min(best[label][0], (t1 - t0) * 1e3),
                min(best[label][1], (c1 - c0) * 1e3),
            ]
    return best


def side_by_side(size: int, n: int, kernels: list, rounds: int, calls: int) -> dict:
    """Per kernel label, per measure ("fwd", "fwd_bwd", and their process CPU times "fwd_cpu",
    "fwd_bwd_cpu"), per round the fastest of `calls` calls. The kernels are called in turn,
    call by call, so that both see the same machine load."""
    args, pairs = scene_inputs(size, n)
    c = args[2].shape[-1]
    v_render = jnp.broadcast_to(jnp.linspace(-1.0, 1.0, c, dtype=jnp.float32), (size, size, c))
    v_alpha = jnp.ones((size, size), jnp.float32)
    fns = {k.label: k.timers(size) for k in kernels}
    for fwd, fwd_bwd in fns.values():  # compile and warm up
        jax.block_until_ready((fwd(args), fwd_bwd(args, v_render, v_alpha)))
    times = {
        k.label: {m: [] for m in ("fwd", "fwd_bwd", "fwd_cpu", "fwd_bwd_cpu")} for k in kernels
    }
    for r in range(rounds):
        fwd = _interleaved({k: f[0] for k, f in fns.items()}, (args,), calls, r % 2 == 1)
        fb = _interleaved(
            {k: f[1] for k, f in fns.items()}, (args, v_render, v_alpha), calls, r % 2 == 1
        )
        for label, t in times.items():
            t["fwd"].append(fwd[label][0])
            t["fwd_cpu"].append(fwd[label][1])
            t["fwd_bwd"].append(fb[label][0])
            t["fwd_bwd_cpu"].append(fb[label][1])
        line = "  ".join(f"{label} {fwd[label][0]:.2f} / {fb[label][0]:.2f} ms" for label in fns)
        print(
            f"    {size}², {n // 1000}k round {r + 1}/{rounds}: fwd / fwd+bwd  {line}", flush=True
        )
    return {"pairs": pairs, "times": times}


def _backward_ratio(base: dict, this: dict) -> np.ndarray:
    """Per round, base's backward time over this one's (NaN where either is not positive: the
    backward of a round is a difference of two fastest calls, which a loaded machine can make
    zero or negative, and such a round says nothing)."""
    b = np.array(base["fwd_bwd"]) - base["fwd"]
    t = np.array(this["fwd_bwd"]) - this["fwd"]
    ok = (b > 0) & (t > 0)
    return np.divide(b, t, out=np.full(b.shape, np.nan), where=ok)


def report_kernels(size: int, n: int, result: dict) -> None:
    pairs = result["pairs"]
    print(
        f"{size}², {n // 1000}k Gaussians, {pairs / 1e6:.2f} M pairs (medians over rounds; "
        "cpu: process CPU time of all threads):"
    )
    for label, t in result["times"].items():
        fwd, fb = np.array(t["fwd"]), np.array(t["fwd_bwd"])
        bwd = fb - fwd
        print(
            f"  {label:<24} fwd {np.median(fwd):7.2f} ms  {pairs / np.median(fwd) / 1e3:6.0f} M "
            f"evals/s | fwd+bwd {np.median(fb):7.2f} ms | bwd {np.median(bwd):7.2f} ms | "
            f"bwd/fwd {np.median(bwd / fwd):.2f} | cpu fwd {np.median(t['fwd_cpu']):.2f} ms, "
            f"fwd+bwd {np.median(t['fwd_bwd_cpu']):.2f} ms"
        )
    labels = list(result["times"])
    if len(labels) == 2:
        this, base = (result["times"][k] for k in labels)
        ratios = {
            "forward": np.array(base["fwd"]) / this["fwd"],
            "forward+backward": np.array(base["fwd_bwd"]) / this["fwd_bwd"],
            "backward": _backward_ratio(base, this),
            "forward, cpu time": np.array(base["fwd_cpu"]) / this["fwd_cpu"],
            "forward+backward, cpu time": np.array(base["fwd_bwd_cpu"]) / this["fwd_bwd_cpu"],
        }
        for what, ratio in ratios.items():
            kept = ratio[np.isfinite(ratio)]
            dropped = f", {ratio.size - kept.size} rounds dropped" if kept.size < ratio.size else ""
            if kept.size == 0:
                print(f"  speed-up over the baseline, {what}: no usable round")
                continue
            print(
                f"  speed-up over the baseline, {what}: median {np.median(kept):.2f}x "
                f"(rounds {kept.min():.2f}-{kept.max():.2f}x{dropped})"
            )


def report_reference(impl, runs: int) -> None:
    size, n = REFERENCE_SIZE
    args, _ = scene_inputs(size, n)
    rows = {}
    for name, module in (("kernel", impl), ("reference", reference)):
        fwd, fwd_bwd = timers(module, size)
        jax.block_until_ready((fwd(*args), fwd_bwd(*args)))
        rows[name] = (fastest_ms(fwd, args, runs), fastest_ms(fwd_bwd, args, runs))
    k, r = rows["kernel"], rows["reference"]
    print(
        f"{size}², {n // 1000}k vs the pure-JAX reference (fastest of {runs}): reference fwd "
        f"{r[0]:.1f} ms, fwd+bwd {r[1]:.1f} ms; kernel {k[0]:.2f}, {k[1]:.2f} ms: speed-up "
        f"fwd {r[0] / k[0]:.0f}x, fwd+bwd {r[1] / k[1]:.0f}x"
    )


def bench(size: int, n: int, backends: dict, runs: int) -> dict:
    args, pairs = scene_inputs(size, n)
    row = {"size": size, "n": n, "pairs": pairs}
    for name, impl in backends.items():
        if name == "reference" and size * size * n > _MAX_REF.value:
            row[name] = None
            continue
        fwd, fwd_bwd = timers(impl, size)
        row[name] = (median_ms(fwd, args, runs), median_ms(fwd_bwd, args, runs))
    return row


def _report(row: dict, backends: dict) -> None:
    line = f"{row['size']:>4}² {row['n']:>7} G  pairs {row['pairs'] / 1e6:7.2f} M |"
    for name in backends:
        t = row[name]
        if t is None:
            line += f" {name}: skipped (H·W·N > {_MAX_REF.value:.0e}) |"
            continue
        rate = row["pairs"] / (t[0] * 1e-3) / 1e6
        line += f" {name}: fwd {t[0]:8.2f} ms  fwd+bwd {t[1]:8.2f} ms  {rate:7.0f} M eval/s |"
    if row.get("ffi") and row.get("reference"):
        line += f" speed-up fwd {row['reference'][0] / row['ffi'][0]:.0f}x"
        line += f" fwd+bwd {row['reference'][1] / row['ffi'][1]:.0f}x"
    print(line, flush=True)


def binning_ab(size: int, n: int, impl, runs: int, rounds: int) -> dict:
    """Median fwd+bwd ms, wall and process CPU time (less sensitive to other jobs), with kept
    and with re-binned tile lists, over alternating rounds: {(mode, clock): ms}."""
    args, _ = scene_inputs(size, n)
    _, fwd_bwd = timers(impl, size)
    times = {}
    for _ in range(rounds):
        for mode, env in (("rebinned", "0"), ("kept", "1")):
            os.environ["UA3D_KEEP_BINS"] = env  # read by the kernel at every call
            for clock, fn in (("wall", time.perf_counter), ("cpu", time.process_time)):
                times.setdefault((mode, clock), []).append(median_ms(fwd_bwd, args, runs, fn))
    os.environ.pop("UA3D_KEEP_BINS")
    return {key: float(np.median(t)) for key, t in times.items()}


def _configs(default):
    if not _SIZES.value:
        return default
    try:
        return [tuple(int(v) for v in item.split(":")) for item in _SIZES.value]
    except ValueError as err:
        raise ValueError(f"--sizes takes SIZE:N items, got {_SIZES.value}") from err


def _run(backends: dict) -> None:
    if _BINNING_AB.value:
        for size, n in _configs(TARGETS):
            t = binning_ab(size, n, backends["ffi"], _RUNS.value, _AB_ROUNDS.value)
            for clock in ("wall", "cpu"):
                print(
                    f"{size:>4}² {n:>7} G  fwd+bwd ({clock}): tile lists kept "
                    f"{t['kept', clock]:8.2f} ms, binned again {t['rebinned', clock]:8.2f} ms",
                    flush=True,
                )
        return
    if _GRID.value:
        for size, n in _configs(GRID):
            _report(bench(size, n, backends, _RUNS.value), backends)
        return
    if jax.default_backend() != "cpu" or not available_backends()["cpu"]:
        raise ValueError(
            "the kernel figures need the CPU kernel built and JAX on the CPU "
            "(--grid and --binning_ab take the CUDA kernel too)"
        )
    kernels = [this_kernel()]
    if _BASELINE.value:
        kernels.append(load_baseline(_BASELINE.value))
    print(
        "tile kernels: "
        + ", ".join(f"{k.label} {k.isa}" for k in kernels)
        + f"; {_ROUNDS.value} rounds, each the fastest of {_CALLS.value} calls"
    )
    for size, n in _configs(KERNEL_SIZES):
        report_kernels(size, n, side_by_side(size, n, kernels, _ROUNDS.value, _CALLS.value))
    report_reference(backends["ffi"], max(3, _CALLS.value // 6))


def main(argv):
    del argv
    jax.config.update("jax_cpu_enable_async_dispatch", _ASYNC.value)
    built = available_backends()
    print(
        f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}); kernels built: "
        f"{built}; threads: {os.environ.get('UA3D_NUM_THREADS', os.cpu_count())}"
    )
    try:
        if not (built["cpu"] or built["cuda"]):
            raise ValueError("no kernel built (pip install -e .)")
        if min(_ROUNDS.value, _CALLS.value, _RUNS.value) < 1:
            raise ValueError("--rounds, --calls and --runs must be >= 1")
        from ua3dtalk_jax.render import ffi

        _run({"ffi": ffi, "reference": reference})
    except ValueError as e:
        cli.fail("bench_rasterizer", e)


if __name__ == "__main__":
    cli.run(main)
