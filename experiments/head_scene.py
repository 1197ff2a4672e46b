"""A head-like Gaussian scene and its camera, for the rasterizer demo, benchmark and tests.

`head_scene` places N flat Gaussians on (and just inside) an ellipsoid the size of a head
(semi-axes 9 x 12 x 10 cm) with skin-toned, shaded colours; their scales follow the
surface area per Gaussian, so the number of Gaussians covering a pixel stays realistic
whatever N. `head_camera` looks at it from 45 cm with a ~45° field of view (OpenCV
camera: x right, y down, z forward).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

HEAD_AXES = np.array([0.09, 0.12, 0.10])  # metres: x (ear to ear), y (chin to crown), z
CAMERA_DISTANCE = 0.45


def head_scene(num_gaussians: int, seed: int = 0) -> dict[str, jnp.ndarray]:
    """Random Gaussians on a head-sized ellipsoid shell.

    Args:
      num_gaussians: N.
      seed: numpy seed.

    Returns:
      dict with means (N, 3), quats (N, 4), scales (N, 3), opacities (N,), colors (N, 3),
      all float32, world frame centred on the head.
    """
    rng = np.random.default_rng(seed)
    n = num_gaussians
    direction = rng.normal(size=(n, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    shell = rng.uniform(0.85, 1.0, size=(n, 1)) ** 0.5
    means = direction * HEAD_AXES * shell
    area = 4.0 * np.pi * np.mean(HEAD_AXES) ** 2
    base = 0.6 * np.sqrt(area / max(n, 1))
    scales = base * np.exp(rng.normal(0.0, 0.35, size=(n, 3)))
    scales[:, 2] *= 0.3  # flat: thin along one axis
    quats = rng.normal(size=(n, 4))
    opacities = rng.uniform(0.35, 1.0, size=n)
    skin = np.array([0.86, 0.64, 0.52])
    light = 0.55 + 0.45 * np.clip(direction @ np.array([0.3, -0.4, -0.85]), 0.0, 1.0)
    colors = np.clip(skin * light[:, None] + rng.normal(0.0, 0.04, size=(n, 3)), 0.0, 1.0)
    as32 = lambda x: jnp.asarray(x, jnp.float32)
    return {
        "means": as32(means),
        "quats": as32(quats),
        "scales": as32(scales),
        "opacities": as32(opacities),
        "colors": as32(colors),
    }


def head_camera(width: int, height: int) -> tuple[jnp.ndarray, jnp.ndarray]:
    """World-to-camera (4, 4) and intrinsics (3, 3) looking at the head from the front."""
    viewmat = np.eye(4)
    viewmat[2, 3] = CAMERA_DISTANCE
    focal = 1.2 * max(width, height)
    K = np.array([[focal, 0.0, width / 2.0], [0.0, focal, height / 2.0], [0.0, 0.0, 1.0]])
    return jnp.asarray(viewmat, jnp.float32), jnp.asarray(K, jnp.float32)


def footprint_pixels(means2d: np.ndarray, radii: np.ndarray, width: int, height: int) -> int:
    """Number of (Gaussian, pixel) pairs inside the footprint boxes, clipped to the image.

    Args:
      means2d: (N, 2) screen centres; radii: (N, 2) int footprint half-sizes (0 = culled).

    Returns:
      The count of pixel centres inside each box, summed over Gaussians.
    """
    means2d, radii = np.asarray(means2d, np.float64), np.asarray(radii, np.int64)
    live = np.all(radii > 0, axis=1)
    lo = np.clip(np.ceil(means2d - radii - 0.5), 0, [width, height])
    hi = np.clip(np.floor(means2d + radii - 0.5), -1, [width - 1, height - 1])
    extent = np.maximum(hi - lo + 1, 0)
    return int(np.sum(extent[:, 0] * extent[:, 1] * live))
