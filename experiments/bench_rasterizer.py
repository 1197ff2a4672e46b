"""Rasterizer benchmark: tiled FFI kernel vs the pure-JAX reference compositor.

Times `rasterize_to_pixels` (binning, sorting, blending; the op the kernels replace) on
pre-projected head-like scenes (`render/demo.py`): median forward and forward+backward
milliseconds over --runs runs after a warm-up, Gaussian-pixel evaluations per second
(pairs inside the footprint boxes), and the kernel's speed-up over the reference.

  python -m experiments.bench_rasterizer [--runs=7] [--quick] [--sizes=256:10000,512:100000]
  python -m experiments.bench_rasterizer --binning_ab --sizes=256:10000,512:100000

--binning_ab times the kernel's forward+backward with the backward taking the forward's tile
lists (the default) and binning again (UA3D_KEEP_BINS=0, the behaviour before), in
alternating rounds so that both see the same machine load.

Reference combinations with more than --max_reference_pairs dense (pixel, Gaussian) pairs
are skipped (the reference is O(H·W·N)), and said so. The two CPU targets are printed
last: 128², 2k Gaussians (kernel fwd+bwd ≥ 20x the reference) and 256², 10k Gaussians
(≥ 300 M evaluations/s forward; fwd+bwd ≤ 4x fwd).
"""

from __future__ import annotations

import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags

from experiments import cli
from ua3dtalk_jax.render import available_backends, reference
from ua3dtalk_jax.render.demo import footprint_pixels, head_camera, head_scene
from ua3dtalk_jax.render.projection import project

_RUNS = flags.DEFINE_integer("runs", 7, "Timed runs per measurement (median reported).")
_QUICK = flags.DEFINE_bool("quick", False, "Only the two target configurations.")
_MAX_REF = flags.DEFINE_float("max_reference_pairs", 3e8, "Skip the reference above H*W*N.")
_ASYNC = flags.DEFINE_bool(
    "async_dispatch", False,
    "Keep JAX's CPU async dispatch on. Off by default: on a 2-core machine its dispatch thread "
    "can hold one core while the kernel's two threads run, and the medians then jump between "
    "the one- and two-thread times (256², 10k forward 4.2 vs 2.3 ms).",
)  # fmt: skip

_SIZES = flags.DEFINE_list("sizes", [], "Only these SIZE:N configurations (e.g. 256:10000).")
_BINNING_AB = flags.DEFINE_bool("binning_ab", False, "Kept vs re-binned tile lists in fwd+bwd.")
_AB_ROUNDS = flags.DEFINE_integer("ab_rounds", 5, "Alternating rounds of --binning_ab.")

GRID = [(64, 1_000), (64, 10_000), (64, 100_000), (256, 1_000), (256, 10_000), (256, 100_000),
        (512, 1_000), (512, 10_000), (512, 100_000)]  # fmt: skip
TARGETS = [(128, 2_000), (256, 10_000)]


def scene_inputs(size: int, n: int):
    """Pre-projected head scene (RGB + depth) at size²: (rasterize_to_pixels args, pairs)."""
    scene = head_scene(n)
    viewmat, K = head_camera(size, size)
    p = project(scene["means"], scene["quats"], scene["scales"], scene["opacities"], viewmat, K,
                width=size, height=size)  # fmt: skip
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


def main(argv):
    del argv
    jax.config.update("jax_cpu_enable_async_dispatch", _ASYNC.value)
    built = available_backends()
    backends = {"reference": reference}
    if built["cpu"] or built["cuda"]:
        from ua3dtalk_jax.render import ffi

        backends = {"ffi": ffi, "reference": reference}
    print(
        f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}); kernels built: {built}"
    )
    if _BINNING_AB.value:
        if "ffi" not in backends:
            raise SystemExit("--binning_ab needs the compiled kernels (pip install -e .)")
        for size, n in _configs(TARGETS):
            t = binning_ab(size, n, backends["ffi"], _RUNS.value, _AB_ROUNDS.value)
            for clock in ("wall", "cpu"):
                print(f"{size:>4}² {n:>7} G  fwd+bwd ({clock}): tile lists kept "
                      f"{t['kept', clock]:8.2f} ms, binned again {t['rebinned', clock]:8.2f} ms",
                      flush=True)  # fmt: skip
        return
    if _SIZES.value:
        for size, n in _configs(GRID):
            _report(bench(size, n, backends, _RUNS.value), backends)
        return
    if not _QUICK.value:
        for size, n in GRID:
            _report(bench(size, n, backends, _RUNS.value), backends)
    print("targets:")
    rows = [bench(size, n, backends, _RUNS.value) for size, n in TARGETS]
    for row in rows:
        _report(row, backends)
    if "ffi" in backends:
        a, b = rows
        if a["reference"] is not None:
            print(
                f"  128², 2k: kernel fwd+bwd speed-up {a['reference'][1] / a['ffi'][1]:.1f}x (target ≥ 20x)"
            )
        rate = b["pairs"] / (b["ffi"][0] * 1e-3) / 1e6
        print(f"  256², 10k: forward {rate:.0f} M eval/s (target ≥ 300); "
              f"fwd+bwd / fwd = {b['ffi'][1] / b['ffi'][0]:.2f} (target ≤ 4)")  # fmt: skip


if __name__ == "__main__":
    cli.run(main)
