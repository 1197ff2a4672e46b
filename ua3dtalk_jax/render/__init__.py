"""Gaussian rasterization: `rasterize(...)` with interchangeable backends.

  backend="reference"  pure JAX (`render/reference.py`), autodiff, any platform;
  backend="ffi"        tiled C++ (CPU) / CUDA kernels behind the XLA FFI
                       (`render/ffi.py`, built from csrc/), custom_vjp;
  backend="auto"       the kernel of the current platform when it is built,
                       else the reference.

Projection to screen space (`render/projection.py`) is JAX in every backend;
only tile binning, depth sorting and compositing (and its backward) differ.
Depth is composited as one extra channel, so depth = Σ wᵢ zᵢ exactly as colour.

NaN policy: a Gaussian with any non-finite parameter is culled (it contributes
nothing and receives zero gradient). A non-finite `viewmat`, `K` or background
is an error only where it can be checked eagerly; under jit it yields a
non-finite image rather than a crash or a hang.
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from ua3dtalk_jax.render import reference
from ua3dtalk_jax.render.projection import EPS2D, NEAR_PLANE, Projected, project

BACKENDS = ("auto", "reference", "ffi")


@flax.struct.dataclass
class RenderOutput:
    """Result of `rasterize`.

    Attributes:
      rgb: (H, W, C) colour, background included.
      alpha: (H, W) accumulated opacity, 1 - T_final.
      depth: (H, W) Σ wᵢ zᵢ (not divided by alpha).
      means2d: (N, 2) screen-space centres (after `means2d_offset`).
      radii: (N, 2) int32 footprints; 0 marks a culled Gaussian.
    """

    rgb: jax.Array
    alpha: jax.Array
    depth: jax.Array
    means2d: jax.Array
    radii: jax.Array


def _ffi_module():
    from ua3dtalk_jax.render import ffi

    return ffi


def available_backends() -> dict[str, bool]:
    """Which kernels are built: {"reference": True, "cpu": bool, "cuda": bool}."""
    try:
        kernels = _ffi_module().available_platforms()
    except ImportError:
        kernels = {"cpu": False, "cuda": False}
    return {"reference": True, **kernels}


def resolve_backend(backend: str, dtype=jnp.float32) -> str:
    """Maps "auto" to "ffi" or "reference" for the current default platform and `dtype`.

    The CUDA kernel is float32 only: float64 on a GPU resolves "auto" to the reference and
    refuses an explicit "ffi" (the CPU kernel takes both).
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    platform = jax.default_backend()
    f64_off_cpu = jnp.dtype(dtype) == jnp.float64 and platform != "cpu"
    if backend == "ffi" and f64_off_cpu:
        raise ValueError(
            f"backend='ffi' on {platform} takes float32 inputs (the CUDA kernel "
            "has no float64 version); got float64: use backend='reference' or "
            "'auto'"
        )
    if backend != "auto":
        return backend
    built = available_backends()
    if f64_off_cpu:
        return "reference"
    if (platform == "cpu" and built["cpu"]) or (platform in ("gpu", "cuda") and built["cuda"]):
        return "ffi"
    return "reference"


def _check(name: str, x, shape: tuple, dtypes) -> None:
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        raise ValueError(f"{name} must be an array, got {type(x).__name__}")
    if len(x.shape) != len(shape) or any(s is not None and a != s for a, s in zip(x.shape, shape)):
        want = "(" + ", ".join("N" if s is None else str(s) for s in shape) + ")"
        raise ValueError(f"{name} must have shape {want}, got {tuple(x.shape)}")
    if jnp.dtype(x.dtype) not in dtypes:
        raise ValueError(f"{name} must be float32 (or float64 with x64), got dtype {x.dtype}")


def _check_inputs(
    means, quats, scales, opacities, colors, viewmat, K, background, means2d_offset, width, height
) -> int:
    """`rasterize`'s argument checks (each error names the argument); returns C."""
    if not (isinstance(width, (int, np.integer)) and isinstance(height, (int, np.integer))):
        raise ValueError(f"width and height must be ints, got {width!r}, {height!r}")
    if width < 1 or height < 1:
        raise ValueError(f"width and height must be >= 1, got width={width}, height={height}")
    float_types = {jnp.dtype(jnp.float32), jnp.dtype(jnp.float64)}
    _check("means", means, (None, 3), float_types)
    n = means.shape[0]
    _check("quats", quats, (n, 4), float_types)
    _check("scales", scales, (n, 3), float_types)
    _check("opacities", opacities, (n,), float_types)
    if not hasattr(colors, "shape") or len(colors.shape) != 2 or colors.shape[0] != n:
        raise ValueError(f"colors must have shape (N={n}, C), got {getattr(colors, 'shape', None)}")
    num_channels = colors.shape[1]
    _check("colors", colors, (n, num_channels), float_types)
    _check("viewmat", viewmat, (4, 4), float_types)
    _check("K", K, (3, 3), float_types)
    if background is not None:
        _check("background", background, (num_channels,), float_types)
    if means2d_offset is not None:
        _check("means2d_offset", means2d_offset, (n, 2), float_types)
    return num_channels


def rasterize(
    means,
    quats,
    scales,
    opacities,
    colors,
    viewmat,
    K,
    *,
    width: int,
    height: int,
    background=None,
    backend: str = "auto",
    means2d_offset=None,
    near_plane: float = NEAR_PLANE,
    eps2d: float = EPS2D,
) -> RenderOutput:
    """Renders N 3D Gaussians into one pinhole view.

    Args:
      means: (N, 3) world centres.
      quats: (N, 4) rotations (w, x, y, z), not necessarily normalised.
      scales: (N, 3) positive linear standard deviations.
      opacities: (N,) in [0, 1]; 0 marks an inactive slot, which costs ~nothing.
      colors: (N, C) values to blend (RGB after SH evaluation).
      viewmat: (4, 4) world-to-camera, OpenCV convention.
      K: (3, 3) pixel intrinsics; pixel (i, j) has its centre at (i+0.5, j+0.5).
      width, height: image size in pixels (static).
      background: (C,) colour behind the Gaussians; default zeros.
      backend: "auto", "reference" or "ffi".
      means2d_offset: optional (N, 2) zeros added to the screen-space means;
        the gradient with respect to it is the screen-space mean gradient that
        densification accumulates.
      near_plane: camera z at or below which Gaussians are culled.
      eps2d: dilation of the 2D covariance diagonal.

    Returns:
      `RenderOutput` with rgb (H, W, C), alpha (H, W), depth (H, W).

    Raises:
      ValueError: an argument has the wrong shape or dtype, or width/height < 1.
    """
    num_channels = _check_inputs(
        means,
        quats,
        scales,
        opacities,
        colors,
        viewmat,
        K,
        background,
        means2d_offset,
        width,
        height,
    )
    if background is None:
        background = jnp.zeros((num_channels,), means.dtype)
    backend = resolve_backend(backend, means.dtype)

    proj: Projected = project(
        means,
        quats,
        scales,
        opacities,
        viewmat,
        K,
        width=width,
        height=height,
        near_plane=near_plane,
        eps2d=eps2d,
    )
    return _composite(proj, colors, background, means2d_offset, backend, width, height)


def _composite(proj: Projected, colors, background, means2d_offset, backend, width, height):
    """Blends the projected Gaussians' colours and depths front to back with `backend`'s kernel.

    Depth rides along as one extra channel (a zero background), so depth = Σ wᵢ zᵢ exactly as
    colour. Returns the `RenderOutput`.
    """
    num_channels = colors.shape[1]
    means2d = proj.means2d
    if means2d_offset is not None:
        means2d = means2d + means2d_offset
    values = jnp.concatenate([colors, proj.depths[:, None]], axis=-1)
    bg = jnp.concatenate([background, jnp.zeros((1,), background.dtype)])
    impl = reference if backend == "reference" else _ffi_module()
    out, alpha = impl.rasterize_to_pixels(
        means2d,
        proj.conics,
        values,
        proj.opacities,
        proj.depths,
        proj.radii,
        bg,
        width=width,
        height=height,
    )
    return RenderOutput(
        rgb=out[..., :num_channels],
        alpha=alpha,
        depth=out[..., num_channels],
        means2d=means2d,
        radii=proj.radii,
    )


__all__ = ["RenderOutput", "available_backends", "project", "rasterize", "resolve_backend"]
