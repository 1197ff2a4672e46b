"""Real spherical harmonics up to degree 3, as in 3DGS (`utils/sh_utils.py`), and RGB ↔ SH DC.

Colour of a Gaussian seen along unit direction d (from the camera centre to the Gaussian):
    c(d) = max(0, Σ_{l ≤ degree} Σ_m c_lm Y_lm(d) + 0.5)
Coefficient k = l² + l + m is stored at sh[:, k, :] (K = (max_degree + 1)² per colour channel).
The active degree may be a traced integer (it grows during training): coefficients of higher
bands are masked, so shapes never change.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

C0 = 0.28209479177387814
C1 = 0.4886025119029199
C2 = (
    1.0925484305920792,
    -1.0925484305920792,
    0.31539156525252005,
    -1.0925484305920792,
    0.5462742152960396,
)
C3 = (
    -0.5900435899266435,
    2.890611442640554,
    -0.4570457994644658,
    0.3731763325901154,
    -0.4570457994644658,
    1.445305721320277,
    -0.5900435899266435,
)


def num_coeffs(degree: int) -> int:
    """K = (degree + 1)² coefficients per channel."""
    return (degree + 1) ** 2


def rgb_to_sh(rgb: jax.Array) -> jax.Array:
    """DC coefficient whose colour is `rgb` (…, 3)."""
    return (rgb - 0.5) / C0


def sh_basis(dirs: jax.Array, degree: int) -> jax.Array:
    """Y_lm(d) for every coefficient up to `degree` (static, ≤ 3).

    Args:
      dirs: (N, 3) unit directions.
      degree: static maximum degree.
    Returns:
      (N, (degree + 1)²) basis values.
    """
    if not 0 <= degree <= 3:
        raise ValueError(f"SH degree must be in [0, 3], got {degree}")
    x, y, z = dirs[:, 0], dirs[:, 1], dirs[:, 2]
    out = [jnp.full_like(x, C0)]
    if degree >= 1:
        out += [-C1 * y, C1 * z, -C1 * x]
    if degree >= 2:
        xx, yy, zz, xy, yz, xz = x * x, y * y, z * z, x * y, y * z, x * z
        out += [C2[0] * xy, C2[1] * yz, C2[2] * (2 * zz - xx - yy), C2[3] * xz, C2[4] * (xx - yy)]
    if degree >= 3:
        out += [
            C3[0] * y * (3 * xx - yy),
            C3[1] * xy * z,
            C3[2] * y * (4 * zz - xx - yy),
            C3[3] * z * (2 * zz - 3 * xx - 3 * yy),
            C3[4] * x * (4 * zz - xx - yy),
            C3[5] * z * (xx - yy),
            C3[6] * x * (xx - 3 * yy),
        ]
    return jnp.stack(out, axis=-1)


def eval_sh(sh: jax.Array, dirs: jax.Array, active_degree: jax.Array | int) -> jax.Array:
    """RGB of each Gaussian seen along `dirs`, using bands ≤ active_degree.

    Args:
      sh: (N, K, 3) coefficients, K = (max_degree + 1)².
      dirs: (N, 3) directions (normalised here; zero vectors give the DC colour).
      active_degree: scalar int (may be traced), ≤ max_degree.
    Returns:
      (N, 3) colours, clamped below at 0 as in 3DGS.
    """
    k = sh.shape[1]
    max_degree = math.isqrt(k) - 1
    if num_coeffs(max_degree) != k:
        raise ValueError(f"sh must have (degree + 1)² coefficients, got {k}")
    norm = jnp.linalg.norm(dirs, axis=-1, keepdims=True)
    unit = dirs / jnp.maximum(norm, 1e-12)
    basis = sh_basis(unit, max_degree)
    band = jnp.floor(jnp.sqrt(jnp.arange(k, dtype=jnp.float32)))  # degree of each coefficient
    basis = jnp.where(band[None, :] <= active_degree, basis, 0.0)
    return jnp.maximum(jnp.einsum("nk,nkc->nc", basis, sh) + 0.5, 0.0)
