"""Seeded screen-space scenes for the kernels called directly (already projected Gaussians).

A scene is a dict of numpy arrays in the FFI's layout, B views at once: means2d [B,N,2],
conics [B,N,3], colors [B,N,C], opacities [B,N], depths [B,N], radii [B,N,2] int32,
background [B,C], plus width and height. Radii are the projection's opacity-aware boxes
(render/projection.py), so the tiles cover every pair with alpha >= 1/255.
"""

from __future__ import annotations

import numpy as np

ALPHA_MIN = 1.0 / 255.0


def radii_for(conics: np.ndarray, opacities: np.ndarray) -> np.ndarray:
    """The projection's box half-sizes ceil(sqrt(2 ln(255 o)) sqrt(Σ_kk)); 0 when o < 1/255."""
    a, b, c = conics[..., 0].astype(np.float64), conics[..., 1], conics[..., 2]
    det = a * c - b * b
    var_x, var_y = c / det, a / det  # diagonal of the covariance, the conic's inverse
    o = opacities.astype(np.float64)
    extend = np.sqrt(2.0 * np.log(np.maximum(255.0 * o, 1.0)))
    r = np.ceil(np.stack([extend * np.sqrt(var_x), extend * np.sqrt(var_y)], -1))
    return np.where((o >= ALPHA_MIN)[..., None], r, 0).astype(np.int32)


def random_scene(
    seed: int,
    batch: int,
    n: int,
    width: int,
    height: int,
    channels: int,
    *,
    sigma_px=(0.4, 6.0),
    opacity=(0.05, 0.95),
    depth=(0.5, 5.0),
    margin: float = 0.1,
    centre=None,
    spread=None,
) -> dict:
    """B views of N random anisotropic Gaussians.

    Args:
      seed: random seed.
      batch, n, width, height, channels: B, N, image size and C.
      sigma_px: range of the standard deviations along the principal axes (log-uniform).
      opacity, depth: uniform ranges.
      margin: means range over the image grown by this fraction on every side (off-screen).
      centre, spread: if given, means are centre ± spread (pixels) instead.

    Returns:
      A scene dict (module docstring).
    """
    rng = np.random.default_rng(seed)
    shape = (batch, n)
    if centre is None:
        lo = np.array([-margin * width, -margin * height])
        hi = np.array([(1 + margin) * width, (1 + margin) * height])
        means2d = rng.uniform(lo, hi, (*shape, 2))
    else:
        means2d = np.asarray(centre) + rng.uniform(-spread, spread, (*shape, 2))
    sig = np.exp(rng.uniform(np.log(sigma_px[0]), np.log(sigma_px[1]), (*shape, 2)))
    theta = rng.uniform(0, np.pi, shape)
    cos, sin = np.cos(theta), np.sin(theta)
    cxx = cos**2 * sig[..., 0] ** 2 + sin**2 * sig[..., 1] ** 2 + 0.3
    cyy = sin**2 * sig[..., 0] ** 2 + cos**2 * sig[..., 1] ** 2 + 0.3
    cxy = cos * sin * (sig[..., 0] ** 2 - sig[..., 1] ** 2)
    det = cxx * cyy - cxy**2
    conics = np.stack([cyy / det, -cxy / det, cxx / det], -1).astype(np.float32)
    opacities = rng.uniform(*opacity, shape).astype(np.float32)
    scene = {
        "means2d": means2d.astype(np.float32),
        "conics": conics,
        "colors": rng.uniform(-0.2, 1.0, (*shape, channels)).astype(np.float32),
        "opacities": opacities,
        "depths": rng.uniform(*depth, shape).astype(np.float32),
        "radii": radii_for(conics, opacities),
        "background": rng.uniform(0.0, 1.0, (batch, channels)).astype(np.float32),
        "width": width,
        "height": height,
    }
    return scene


def cotangents(scene: dict, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random cotangents (v_render [B,H,W,C], v_alpha [B,H,W])."""
    rng = np.random.default_rng(seed + 77)
    b, _, c = scene["colors"].shape
    h, w = scene["height"], scene["width"]
    v_render = rng.normal(size=(b, h, w, c)).astype(np.float32)
    return v_render, rng.normal(size=(b, h, w)).astype(np.float32)


def concat(*scenes: dict) -> dict:
    """Gaussians of several scenes (same B, C, size) in one scene, in argument order."""
    out = dict(scenes[0])
    for k in ("means2d", "conics", "colors", "opacities", "depths", "radii"):
        out[k] = np.concatenate([s[k] for s in scenes], axis=1)
    return out


def edge_scene(name: str) -> dict:
    """The named case of EDGE_SCENES."""
    if name == "random_200x120_b2":
        return random_scene(1, 2, 300, 200, 120, 4)
    if name == "pixel_1x1_b3":
        return random_scene(2, 3, 12, 1, 1, 4, sigma_px=(0.3, 3.0), margin=1.0)
    if name == "odd_37x23_b3":
        return random_scene(3, 3, 150, 37, 23, 4)
    if name == "over_256_per_tile":
        # 300 wide, faint Gaussians in a 20x13 image (two tiles): both lists are longer than
        # the 256 Gaussians staged per batch, and all of them blend (0.988^300 > 1e-4).
        return random_scene(
            4,
            1,
            300,
            20,
            13,
            4,
            sigma_px=(15.0, 25.0),
            opacity=(0.011, 0.013),
            centre=(10.0, 6.0),
            spread=3.0,
        )
    if name == "cutoff_pile":
        # Opaque Gaussians on one spot: the pixels there stop at T <= 1e-4 after a few.
        return random_scene(
            5,
            2,
            200,
            45,
            30,
            4,
            sigma_px=(2.0, 5.0),
            opacity=(0.6, 0.99),
            centre=(22.0, 15.0),
            spread=4.0,
        )
    if name == "depth_ties_and_signs":
        s = random_scene(6, 2, 120, 40, 40, 4, sigma_px=(2.0, 5.0), opacity=(0.4, 0.9))
        rng = np.random.default_rng(6)
        values = np.array([-0.5, -0.0, 0.0, 0.7, 0.7, 2.0], np.float32)
        s["depths"] = rng.choice(values, s["depths"].shape).astype(np.float32)
        return s
    if name == "inactive":
        s = random_scene(7, 2, 160, 50, 35, 4)
        s["means2d"][0, 3, 0] = np.nan
        s["means2d"][1, 4, 1] = np.inf
        s["depths"][0, 5] = np.inf
        s["depths"][1, 6] = np.nan
        s["radii"][0, 7] = 0
        s["radii"][1, 8, 1] = 0
        s["opacities"][0, 9] = 0.0
        s["opacities"][1, 10] = -0.5
        s["conics"][0, 11, 0] = np.nan  # a non-finite conic with a positive radius
        s["conics"][1, 12, 1] = np.inf
        return s
    raise ValueError(name)


EDGE_SCENES = (
    "random_200x120_b2",
    "pixel_1x1_b3",
    "odd_37x23_b3",
    "over_256_per_tile",
    "cutoff_pile",
    "depth_ties_and_signs",
    "inactive",
)
