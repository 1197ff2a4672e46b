"""Regularisers of the authors' stage-2 schedule (reference §4).

  deformation:  w · (mean|Δμ| + mean|Δr| + mean|Δs|)          (face, w = 1e-5)
  alpha mask:   w · [mean((1−α)·region) + mean(α·¬region)]      (face: head, 1e-3;
                                                                mouth: lips rect, 1e-3)
  attention:    w · mean(attention map over a region)          (eye attention in the
                                                                lips rect, audio/eye
                                                                attention over hair; 1e-4)
Arrays: Δ's (N, k) over active Gaussians (`active` (N,) bool), images (H, W).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def masked_mean_abs(x: jax.Array, active: jax.Array | None = None) -> jax.Array:
    """mean |x| over the rows where `active` is True (all rows if None). x: (N, k)."""
    a = jnp.abs(x)
    if active is None:
        return jnp.mean(a)
    m = active[:, None].astype(a.dtype)
    return jnp.sum(a * m) / jnp.maximum(jnp.sum(m) * a.shape[-1], 1.0)


def deformation_l1(d_xyz, d_rot, d_scale, active=None) -> jax.Array:
    """mean|Δμ| + mean|Δr| + mean|Δs| (terms that are None are skipped)."""
    terms = [masked_mean_abs(d, active) for d in (d_xyz, d_rot, d_scale) if d is not None]
    return sum(terms)


def alpha_mask(alpha: jax.Array, region: jax.Array) -> jax.Array:
    """mean((1−α)·region) + mean(α·¬region): opaque inside the region, clear outside."""
    r = region.astype(alpha.dtype)
    return jnp.mean((1.0 - alpha) * r) + jnp.mean(alpha * (1.0 - r))


def masked_map_mean(values: jax.Array, region: jax.Array) -> jax.Array:
    """mean(values·region) over the whole image, as the authors' attention terms."""
    return jnp.mean(values * region.astype(values.dtype))


def rect_mask(rect: jax.Array, height: int, width: int) -> jax.Array:
    """(H, W) bool mask of rect = [rmin, rmax, cmin, cmax] (inclusive-exclusive)."""
    rows = jnp.arange(height)[:, None]
    cols = jnp.arange(width)[None, :]
    return (rows >= rect[0]) & (rows < rect[1]) & (cols >= rect[2]) & (cols < rect[3])
