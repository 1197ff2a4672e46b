"""Renders a head-like Gaussian scene with every available rasterizer backend.

  python -m experiments.demo_render --out=out/demo.png [--num_gaussians=20000 --size=256]

Writes the backends' images side by side (reference | ffi) to --out and prints the
median milliseconds per frame of each backend and their largest pixel difference.
"""

from __future__ import annotations

import functools
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags
from PIL import Image

from experiments import cli
from experiments.head_scene import head_camera, head_scene
from ua3dtalk_jax.render import available_backends, rasterize

_OUT = flags.DEFINE_string("out", "out/demo.png", "Output PNG path.")
_N = flags.DEFINE_integer("num_gaussians", 20_000, "Number of Gaussians in the head scene.")
_SIZE = flags.DEFINE_integer("size", 256, "Image width and height in pixels.")
_RUNS = flags.DEFINE_integer("runs", 3, "Timed runs per backend (median reported).")


def render_with_backends(
    num_gaussians: int, size: int, *, runs: int = 3, seed: int = 0
) -> dict[str, tuple[np.ndarray, float]]:
    """Renders the head scene with every available backend of the current platform.

    Args:
      num_gaussians: N.
      size: image height and width.
      runs: timed runs after a warm-up (median reported).
      seed: scene seed.

    Returns:
      {backend name: (rgb (size, size, 3) uint8, median milliseconds per frame)}.
    """
    scene = head_scene(num_gaussians, seed)
    viewmat, K = head_camera(size, size)
    background = jnp.array([1.0, 1.0, 1.0], jnp.float32)
    built = available_backends()
    names = ["reference"] + (["ffi"] if built["cpu"] or built["cuda"] else [])
    results = {}
    for name in names:
        fn = jax.jit(functools.partial(rasterize, width=size, height=size, backend=name))
        args = (
            scene["means"],
            scene["quats"],
            scene["scales"],
            scene["opacities"],
            scene["colors"],
            viewmat,
            K,
        )
        rgb = jax.block_until_ready(fn(*args, background=background).rgb)
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            jax.block_until_ready(fn(*args, background=background))
            times.append((time.perf_counter() - t0) * 1e3)
        image = np.asarray(jnp.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        results[name] = (image, float(np.median(times)))
    return results


def main(argv):
    del argv
    print(f"platform: {jax.default_backend()}; kernels built: {available_backends()}")
    results = render_with_backends(_N.value, _SIZE.value, runs=_RUNS.value)
    for name, (_, ms) in results.items():
        print(f"{name:>9}: {ms:9.2f} ms / frame ({_N.value} Gaussians, {_SIZE.value}²)")
    images = [image for image, _ in results.values()]
    if len(images) > 1:
        diff = np.abs(images[0].astype(int) - images[1].astype(int)).max()
        print(f"largest pixel difference between backends: {diff} / 255")
    os.makedirs(os.path.dirname(_OUT.value) or ".", exist_ok=True)
    Image.fromarray(np.concatenate(images, axis=1)).save(_OUT.value)
    print(f"wrote {_OUT.value} ({' | '.join(results)})")


if __name__ == "__main__":
    cli.run(main)
