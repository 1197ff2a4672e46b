"""Seeded Gaussian scenes and cameras for the rasterizer tests (random and edge cases).

Every builder returns `(gaussians, camera)`: gaussians = dict(means (N,3), quats (N,4),
scales (N,3), opacities (N,), colors (N,C)) and camera = dict(viewmat (4,4), K (3,3),
width, height, background (C,)), float32 unless `dtype` says otherwise.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np


def camera(width: int, height: int, *, seed: int = 0, dtype=np.float32) -> dict:
    """A slightly rotated, translated pinhole camera with a non-centred principal point."""
    rng = np.random.default_rng(seed + 1000)
    angle = rng.uniform(-0.1, 0.1, size=3)
    cx, cy, cz = np.cos(angle)
    sx, sy, sz = np.sin(angle)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    viewmat = np.eye(4)
    viewmat[:3, :3] = rz @ ry @ rx
    viewmat[:3, 3] = rng.uniform(-0.1, 0.1, size=3)
    f = 0.9 * max(width, height)
    K = np.array([[f, 0, 0.47 * width + 0.3], [0, 1.05 * f, 0.52 * height - 0.2], [0, 0, 1]])
    background = rng.uniform(0.1, 0.9, size=3)
    return {
        "viewmat": jnp.asarray(viewmat, dtype),
        "K": jnp.asarray(K, dtype),
        "width": width,
        "height": height,
        "background": jnp.asarray(background, dtype),
    }


def random_gaussians(
    n: int,
    *,
    seed: int,
    depth=(2.0, 6.0),
    spread: float = 0.45,
    scale=(0.02, 0.25),
    opacity=(0.05, 0.95),
    dtype=np.float32,
) -> dict:
    """N random Gaussians; `spread` is the lateral extent relative to depth (FOV ~ ±0.55)."""
    rng = np.random.default_rng(seed)
    z = rng.uniform(*depth, size=n)
    xy = rng.uniform(-spread, spread, size=(n, 2)) * z[:, None]
    means = np.concatenate([xy, z[:, None]], axis=1)
    scales = np.exp(rng.uniform(np.log(scale[0]), np.log(scale[1]), size=(n, 3)))
    out = {
        "means": means,
        "quats": rng.normal(size=(n, 4)),
        "scales": scales,
        "opacities": rng.uniform(*opacity, size=n),
        "colors": rng.uniform(0, 1, size=(n, 3)),
    }
    return {k: jnp.asarray(v, dtype) for k, v in out.items()}


# Every edge case has N_EDGE Gaussians and (but one) a WIDTH x HEIGHT image, so the jitted
# renderers compile once per backend for all of them.
N_EDGE, WIDTH, HEIGHT = 160, 37, 23


def edge_case(name: str) -> tuple[dict, dict]:
    """The named edge-case scene (see EDGE_CASES)."""
    n, cam = N_EDGE, camera(WIDTH, HEIGHT, seed=len(name))
    if name == "random_37x23":
        return random_gaussians(n, seed=1), cam
    if name == "nonsquare_offscreen_50x19":
        return random_gaussians(n, seed=2, spread=1.5), camera(50, 19, seed=2)
    if name == "near_plane":
        g = random_gaussians(n - 40, seed=3, depth=(-0.05, 0.12), spread=0.3, scale=(0.005, 0.05))
        g2 = random_gaussians(40, seed=4)
        return {k: jnp.concatenate([g[k], g2[k]]) for k in g}, cam
    if name == "behind_camera":
        return random_gaussians(n, seed=5, depth=(-6.0, -0.5)), cam
    if name == "zero_opacity":
        g = random_gaussians(n, seed=6)
        g["opacities"] = g["opacities"].at[::2].set(0.0)
        return g, cam
    if name == "thin_scales":
        g = random_gaussians(n, seed=7)
        g["scales"] = g["scales"].at[::3, 2].set(1e-7).at[1::5].set(1e-7)
        return g, cam
    if name == "unnormalised_quats":
        g = random_gaussians(n, seed=8)
        factor = np.exp(np.random.default_rng(8).uniform(np.log(0.01), np.log(10.0), size=(n, 1)))
        g["quats"] = g["quats"] * jnp.asarray(factor, g["quats"].dtype)
        return g, cam
    if name == "pile_one_pixel":
        # N Gaussians on nearly one point: the transmittance cut-off stops every
        # pixel near the centre after a few of them (0.3^8 < 1e-4 < 0.3^7).
        g = random_gaussians(n, seed=9, depth=(3.0, 3.5), spread=0.01, scale=(0.05, 0.08))
        g["opacities"] = jnp.full_like(g["opacities"], 0.7)
        return g, cam
    raise ValueError(name)


EDGE_CASES = (
    "random_37x23",
    "nonsquare_offscreen_50x19",
    "near_plane",
    "behind_camera",
    "zero_opacity",
    "thin_scales",
    "unnormalised_quats",
    "pile_one_pixel",
)
