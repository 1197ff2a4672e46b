"""The tiled rasterizer kernels (csrc/) behind the XLA FFI: registration, ffi_call, custom_vjp.

`rasterize_to_pixels` has the name, arguments and results of `render/reference.py` (its
executable spec). The C++ (`_raster_cpu`, platform "cpu", F32 and F64) and CUDA
(`_raster_cuda`, platform "CUDA", F32) handlers are registered under the same target names,
so XLA picks the kernel of the platform the computation runs on:

  ua3d_rasterize_to_pixels_fwd_{f32,f64}: (means2d, conics, colors, opacities, depths, radii,
      background; width, height, keep_bins) -> (render [..,H,W,C], transmittance [..,H,W],
      last [..,H,W], bins_token [..,2] int32)
  ua3d_rasterize_to_pixels_bwd_{f32,f64}: (the same, transmittance, last, v_render, v_alpha,
      bins_token; width, height, use_token) -> (v_means2d, v_conics, v_colors, v_opacities)

Binning once a step: under differentiation the forward keeps its depth-sorted tile lists in
the kernel module (keep_bins=1; their size is data-dependent, so they cannot be an XLA
output) and returns a token that JAX keeps as a residual; the backward takes the lists back by
that token and bins again only if they are gone or were made for other shapes
(csrc/include/ua3d/bins_cache.h). Results are bitwise the same either way.

alpha = 1 - transmittance is taken here, so the backward receives T_final exactly. The
background gradient Σ_pixels T_final · v_render is computed in JAX; depths and radii
(sort key and footprint) get zero cotangents. The kernels are natively batched: every
leading dimension is a view, and both calls declare vmap_method="broadcast_all", so
jax.vmap (nested too) of the forward and of its gradient becomes one kernel call.
("expand_dims" would hand the kernel size-1 axes for unmapped arguments, which nested
vmaps turn into partially broadcast batch shapes; broadcast_all copies only per-Gaussian
arrays.)
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

try:
    from ua3dtalk_jax.render import _raster_cpu
except ImportError:  # extension not built: available_platforms()["cpu"] is False
    _raster_cpu = None
try:
    from ua3dtalk_jax.render import _raster_cuda
except ImportError:  # built only where nvcc was found
    _raster_cuda = None

_REGISTERED = {"cpu": False, "cuda": False}
if _raster_cpu is not None:
    for _name, _capsule in _raster_cpu.registrations().items():
        jax.ffi.register_ffi_target(_name, _capsule, platform="cpu")
    _REGISTERED["cpu"] = True
if _raster_cuda is not None:
    try:
        for _name, _capsule in _raster_cuda.registrations().items():
            jax.ffi.register_ffi_target(_name, _capsule, platform="CUDA")
        _REGISTERED["cuda"] = True
    except Exception:  # noqa: BLE001 - a jaxlib without CUDA support cannot take CUDA targets
        _REGISTERED["cuda"] = False


def available_platforms() -> dict[str, bool]:
    """Which kernels are built and registered: {"cpu": bool, "cuda": bool}."""
    return dict(_REGISTERED)


def kept_bins(platform: str = "cpu") -> int:
    """Tile lists the forward kept on `platform` ("cpu" or "cuda") for a backward that has not
    taken them yet (0 when that kernel is not built)."""
    module = {"cpu": _raster_cpu, "cuda": _raster_cuda}[platform]
    return 0 if module is None else int(module.kept_bins())


def _target(direction: str, dtype) -> str:
    suffix = {jnp.dtype(jnp.float32): "f32", jnp.dtype(jnp.float64): "f64"}.get(jnp.dtype(dtype))
    if suffix is None:
        raise ValueError(f"rasterize_to_pixels kernels take float32 or float64, got {dtype}")
    if not any(_REGISTERED.values()):
        raise RuntimeError("rasterizer kernels are not built; run `pip install -e .`")
    return f"ua3d_rasterize_to_pixels_{direction}_{suffix}"


def _same_varying_axes(operands):
    """Under shard_map, ffi_call needs operands that vary over the same manual mesh axes.

    Returns (operands cast to the union of their varying axes, that union).
    """
    varying = [jax.typeof(x).mat.varying for x in operands]
    union = frozenset().union(*varying)
    operands = [
        jax.lax.pcast(x, tuple(sorted(union - v)), to="varying") if union - v else x
        for x, v in zip(operands, varying)
    ]
    return operands, tuple(sorted(union))


def _call(target, out_types, operands, width, height, **flags):
    """One ffi_call. Its results are typed from `out_types`, which carry no varying
    axes, so under shard_map they are cast to the operands' (each device computed its
    own values: a type-level cast, no communication)."""
    operands, varying = _same_varying_axes(operands)
    call = jax.ffi.ffi_call(target, out_types, vmap_method="broadcast_all")
    attrs = {k: np.int64(v) for k, v in flags.items()}
    results = call(*operands, width=np.int64(width), height=np.int64(height), **attrs)
    if varying:
        results = [jax.lax.pcast(r, varying, to="varying") for r in results]
    return results


def _forward_call(
    means2d, conics, colors, opacities, depths, radii, background, width, height, keep_bins=False
):
    batch, dtype = means2d.shape[:-2], means2d.dtype
    out_types = (
        jax.ShapeDtypeStruct((*batch, height, width, colors.shape[-1]), dtype),  # render
        jax.ShapeDtypeStruct((*batch, height, width), dtype),  # transmittance
        jax.ShapeDtypeStruct((*batch, height, width), jnp.int32),  # last
        jax.ShapeDtypeStruct((*batch, 2), jnp.int32),  # bins_token
    )
    operands = (means2d, conics, colors, opacities, depths, radii, background)
    return _call(
        _target("fwd", dtype), out_types, operands, width, height, keep_bins=int(keep_bins)
    )


def _backward_call(inputs, transmittance, last, v_render, v_alpha, bins_token, width, height):
    means2d, conics, colors, opacities = inputs[:4]
    out_types = tuple(
        jax.ShapeDtypeStruct(x.shape, x.dtype) for x in (means2d, conics, colors, opacities)
    )
    use_token = bins_token is not None
    if bins_token is None:
        bins_token = jnp.zeros((*means2d.shape[:-2], 2), jnp.int32)
    operands = (*inputs, transmittance, last, v_render, v_alpha, bins_token)
    return _call(
        _target("bwd", means2d.dtype), out_types, operands, width, height, use_token=int(use_token)
    )


@functools.partial(jax.custom_vjp, nondiff_argnums=(7, 8))
def _rasterize(means2d, conics, colors, opacities, depths, radii, background, width, height):
    render, transmittance, _, _ = _forward_call(
        means2d, conics, colors, opacities, depths, radii, background, width, height
    )
    return render, 1.0 - transmittance


def _rasterize_fwd(means2d, conics, colors, opacities, depths, radii, background, width, height):
    inputs = (means2d, conics, colors, opacities, depths, radii, background)
    render, transmittance, last, token = _forward_call(*inputs, width, height, keep_bins=True)
    return (render, 1.0 - transmittance), (inputs, transmittance, last, token)


def _rasterize_bwd(width, height, residuals, cotangents):
    inputs, transmittance, last, token = residuals
    means2d, conics, colors, opacities, depths, _, _ = inputs
    v_render, v_alpha = cotangents
    grads = _backward_call(inputs, transmittance, last, v_render, v_alpha, token, width, height)
    # Cotangents carry exactly their primal's varying axes (a replicated input's is summed).
    v_means2d, v_conics, v_colors, v_opacities = (
        _like_primal(ct, x) for ct, x in zip(grads, (means2d, conics, colors, opacities))
    )
    v_background = jnp.sum(transmittance[..., None] * v_render, axis=(-3, -2))
    v_background = _like_primal(v_background, inputs[-1])
    return (v_means2d, v_conics, v_colors, v_opacities, jnp.zeros_like(depths), None, v_background)


def _like_primal(ct, primal):
    extra = jax.typeof(ct).mat.varying - jax.typeof(primal).mat.varying
    return jax.lax.psum(ct, tuple(sorted(extra))) if extra else ct


_rasterize.defvjp(_rasterize_fwd, _rasterize_bwd)


def kernel_forward(
    means2d, conics, colors, opacities, depths, radii, background, *, width, height, keep_bins=False
):
    """The forward kernel of the current platform, called directly (no custom_vjp).

    Any leading dimensions are views. Args as `rasterize_to_pixels`, already of one float dtype
    (radii int32); keep_bins: keep the tile lists for `kernel_backward`.
    Returns (render (..., H, W, C), transmittance (..., H, W), last (..., H, W) int32: the
    position in its tile's list of each pixel's last blended Gaussian, -1 for none,
    bins_token (..., 2) int32: the kept lists' token, zeros without keep_bins).
    """
    return tuple(
        _forward_call(
            means2d, conics, colors, opacities, depths, radii, background, width, height, keep_bins
        )
    )


def kernel_backward(
    means2d,
    conics,
    colors,
    opacities,
    depths,
    radii,
    background,
    transmittance,
    last,
    v_render,
    v_alpha,
    *,
    width,
    height,
    bins_token=None,
):
    """The backward kernel of the current platform, called directly.

    Args: the forward's inputs, its transmittance and last, the cotangents of render
    (..., H, W, C) and of alpha (..., H, W), and optionally the forward's bins_token (the
    lists are then taken, not binned again; taken once). Returns (v_means2d, v_conics,
    v_colors, v_opacities), each shaped like its input.
    """
    inputs = (means2d, conics, colors, opacities, depths, radii, background)
    return tuple(
        _backward_call(inputs, transmittance, last, v_render, v_alpha, bins_token, width, height)
    )


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
    """Composites projected Gaussians front to back with the tiled kernel.

    Same contract as `reference.rasterize_to_pixels`; any leading dimensions are views.

    Args:
      means2d: (N, 2) pixel-space centres.
      conics: (N, 3) inverse 2D covariances (a, b, c).
      colors: (N, C) per-Gaussian values to blend.
      opacities: (N,) opacities; 0 for culled Gaussians.
      depths: (N,) camera z, the sort key.
      radii: (N, 2) int32 footprint; Gaussians with a zero radius are skipped.
      background: (C,) added with weight T_final.
      width, height: image size.

    Returns:
      (render (H, W, C), alpha (H, W)) with alpha = 1 - T_final.
    """
    dtype = jnp.result_type(means2d, conics, colors, opacities, depths, background)
    means2d, conics, colors, opacities, depths, background = (
        jnp.asarray(x, dtype) for x in (means2d, conics, colors, opacities, depths, background)
    )
    radii = jnp.asarray(radii, jnp.int32)
    if means2d.shape[-2] == 0:  # nothing to bin: the background, as in the reference
        shape = (*means2d.shape[:-2], height, width, colors.shape[-1])
        render = jnp.broadcast_to(background[..., None, None, :], shape)
        return render, jnp.zeros(shape[:-1], dtype)
    return _rasterize(
        means2d, conics, colors, opacities, depths, radii, background, int(width), int(height)
    )


__all__ = [
    "available_platforms",
    "kept_bins",
    "kernel_backward",
    "kernel_forward",
    "rasterize_to_pixels",
]
