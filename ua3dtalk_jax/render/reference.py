"""Pure-JAX reference compositor: the executable specification of the kernels.

`rasterize_to_pixels` has the same name, arguments and results as the FFI
kernel in `render/ffi.py` (C++ `csrc/cpu`, CUDA `csrc/cuda`). It evaluates every
Gaussian at every pixel (O(H·W·N), no tiles), so it is only for small images,
but it is differentiable by autodiff, jit-able and vmap-able.

Blending rules (3DGS / gsplat, DESIGN.md §3), per pixel centre p = (i+0.5, j+0.5):
  d = mean2d - p,  σ = ½(a dx² + c dy²) + b dx dy
  α = min(0.99, o·exp(-σ)); a Gaussian with σ < 0 or α < 1/255 is skipped;
  the gradient passes the clamp where o·exp(-σ) <= 0.99 (the tie included);
  Gaussians are taken front to back by camera depth (ties by index);
  Gaussian i is blended only while T_i·(1-α_i) > 1e-4 (exclusive stop);
  C = Σ cᵢ αᵢ Tᵢ + T_final · background.
Because T is non-increasing, "blended while T·(1-α) > 1e-4" equals the mask
[∏_{j≤i}(1-α_j) > 1e-4], so the sequential loop becomes a cumulative product.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ua3dtalk_jax.render.projection import ALPHA_MIN

ALPHA_MAX = 0.99
T_MIN = 1e-4
# Pixels per chunk are chosen so one chunk's (pixels x Gaussians) arrays stay
# near this many elements; each chunk is rematerialised in the backward pass,
# so memory under jax.grad stays bounded by a few chunks.
CHUNK_ELEMENTS = 1 << 21


def _chunk_size(num_pixels: int, n: int) -> int:
    size = max(16, CHUNK_ELEMENTS // max(n, 1))
    return int(min(num_pixels, size))


def rasterize_to_pixels(
    means2d: jax.Array,
    conics: jax.Array,
    colors: jax.Array,
    opacities: jax.Array,
    depths: jax.Array,
    radii: jax.Array,
    background: jax.Array,
    *,
    width: int,
    height: int,
) -> tuple[jax.Array, jax.Array]:
    """Composites projected Gaussians front to back.

    Args:
      means2d: (N, 2) pixel-space centres.
      conics: (N, 3) inverse 2D covariances (a, b, c).
      colors: (N, C) per-Gaussian values to blend (RGB, plus depth if wanted).
      opacities: (N,) opacities; 0 for culled Gaussians.
      depths: (N,) camera z, the sort key.
      radii: (N, 2) int32 footprint; Gaussians with a zero radius are skipped.
      background: (C,) added with weight T_final.
      width, height: image size.

    Returns:
      (render (H, W, C), alpha (H, W)) with alpha = 1 - T_final.
    """
    n = means2d.shape[0]
    c = colors.shape[-1]
    num_pixels = width * height
    if n == 0:
        render = jnp.broadcast_to(background.astype(colors.dtype), (height, width, c))
        return render, jnp.zeros((height, width), colors.dtype)

    live = jnp.all(radii > 0, axis=-1)
    key = jnp.where(live, depths, jnp.inf)
    order = jnp.argsort(key, stable=True)
    means2d, conics, colors = means2d[order], conics[order], colors[order]
    opac = jnp.where(live, opacities, 0.0)[order]

    chunk = _chunk_size(num_pixels, n)
    num_chunks = -(-num_pixels // chunk)
    pix = jnp.arange(num_chunks * chunk)
    px = (pix % width).astype(means2d.dtype) + 0.5
    py = (pix // width).astype(means2d.dtype) + 0.5

    @jax.checkpoint
    def one_chunk(xy):
        x, y = xy
        dx = means2d[None, :, 0] - x[:, None]
        dy = means2d[None, :, 1] - y[:, None]
        sigma = 0.5 * (conics[None, :, 0] * dx * dx + conics[None, :, 2] * dy * dy)
        sigma = sigma + conics[None, :, 1] * dx * dy
        # where, not minimum/maximum: those split the gradient at a tie, and o·exp(-σ) = 0.99
        # exactly (o = 0.99 at the Gaussian's centre pixel) must pass all of it, as the
        # kernels do (their clamp is active only above 0.99); σ = 0 likewise.
        raw = opac[None, :] * jnp.exp(-jnp.where(sigma >= 0.0, sigma, 0.0))
        alpha = jnp.where(raw <= ALPHA_MAX, raw, ALPHA_MAX)
        valid = (sigma >= 0.0) & (alpha >= ALPHA_MIN)
        alpha = jnp.where(valid, alpha, 0.0)
        log_keep = jnp.log1p(-alpha)
        log_t_incl = jnp.cumsum(log_keep, axis=-1)
        blended = jnp.exp(log_t_incl) > T_MIN
        t_excl = jnp.exp(log_t_incl - log_keep)
        weights = jnp.where(blended, alpha * t_excl, 0.0)
        t_final = jnp.exp(jnp.sum(jnp.where(blended, log_keep, 0.0), axis=-1))
        out = weights @ colors + t_final[:, None] * background[None, :]
        return out, 1.0 - t_final

    xs = (px.reshape(num_chunks, chunk), py.reshape(num_chunks, chunk))
    out, alpha = jax.lax.map(one_chunk, xs)
    out = out.reshape(-1, c)[:num_pixels].reshape(height, width, c)
    alpha = alpha.reshape(-1)[:num_pixels].reshape(height, width)
    return out, alpha
