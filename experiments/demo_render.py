"""Renders a head-like Gaussian scene with every available rasterizer backend.

  python -m experiments.demo_render --out=out/demo.png [--num_gaussians=20000 --size=256]

Writes the backends' images side by side (reference | ffi) to --out and prints the
median milliseconds per frame of each backend and their largest pixel difference.
"""

from __future__ import annotations

import os

import jax
import numpy as np
from absl import flags
from PIL import Image

from experiments import cli
from ua3dtalk_jax.render import available_backends
from ua3dtalk_jax.render.demo import render_with_backends

_OUT = flags.DEFINE_string("out", "out/demo.png", "Output PNG path.")
_N = flags.DEFINE_integer("num_gaussians", 20_000, "Number of Gaussians in the head scene.")
_SIZE = flags.DEFINE_integer("size", 256, "Image width and height in pixels.")
_RUNS = flags.DEFINE_integer("runs", 3, "Timed runs per backend (median reported).")


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
