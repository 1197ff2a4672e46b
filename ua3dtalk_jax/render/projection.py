"""EWA projection of 3D Gaussians to screen space (3DGS / gsplat "classic" rules).

This is the differentiable first half of every backend: the pure-JAX reference
and the C++/CUDA kernels both consume its output, so the conventions live here
once.

Conventions (DESIGN.md §3 "Rasterizer"):
  * world -> camera with `viewmat` (OpenCV: x right, y down, z forward);
  * Gaussians with camera depth z <= NEAR_PLANE (0.01), or any non-finite
    input, are culled (radius 0, opacity 0);
  * the perspective Jacobian J is evaluated at the camera point whose x/z (y/z)
    is clamped to [-(cx/fx + 0.3 W/(2 fx)), (W - cx)/fx + 0.3 W/(2 fx)]
    (likewise with cy, fy, H) — the 1.3x half-field-of-view clamp — while the
    2D mean itself is never clamped; a point exactly at the limit counts as inside
    (full gradient through x/z, as in gsplat), likewise opacities of exactly 0 or 1;
  * Σ2d = J W Σ Wᵀ Jᵀ + EPS2D·I (EPS2D = 0.3 px² low-pass dilation);
  * conic = Σ2d⁻¹ stored as (a, b, c) = (inv00, inv01, inv11);
  * footprint: the opacity-aware box of half-size
    ceil(sqrt(2 ln(255·o)) · sqrt(Σ2d_kk)) per axis, exactly the region where
    alpha can reach 1/255, so tiling never changes the image. Gaussians with
    o < 1/255 or a box entirely off-screen get radius 0.

Culled Gaussians keep finite values everywhere (the "double where" trick:
a safe depth of 1 is substituted before dividing) so gradients never carry NaN.

Naming: `means` (N,3) world centres, `quats` (N,4) (w,x,y,z) unnormalised,
`scales` (N,3) linear standard deviations, `opacities` (N,).
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp

NEAR_PLANE = 0.01
EPS2D = 0.3
FOV_CLAMP = 0.3  # J is evaluated at most 30 % of the half field of view past the edge
ALPHA_MIN = 1.0 / 255.0
RADIUS_CAP = float(1 << 30)


@flax.struct.dataclass
class Projected:
    """Screen-space Gaussians for one view.

    Attributes:
      means2d: (N, 2) pixel coordinates (x = column, y = row) of the centres.
      conics: (N, 3) inverse 2D covariance (a, b, c) = (inv00, inv01, inv11).
      depths: (N,) camera-space z.
      radii: (N, 2) int32 half-extent of the footprint box in pixels; 0 = culled.
      opacities: (N,) opacities with culled Gaussians set to 0.
    """

    means2d: jax.Array
    conics: jax.Array
    depths: jax.Array
    radii: jax.Array
    opacities: jax.Array


def clamp(x: jax.Array, lo, hi) -> jax.Array:
    """x clamped to [lo, hi], with the full gradient of x at the ends.

    jnp.clip (max then min) splits the gradient in half at a tie, so an opacity of exactly
    1.0 (legal, and what sigmoid returns in float32 for logits above ~17) got half its
    gradient. Here values in [lo, hi], ends included, pass x's gradient; values outside pass
    the bound's.
    """
    return jnp.where(x < lo, lo, jnp.where(x > hi, hi, x))


def quat_to_rotmat(quats: jax.Array) -> jax.Array:
    """(N, 4) (w, x, y, z) quaternions, any norm -> (N, 3, 3) rotation matrices."""
    norm = jnp.sqrt(jnp.sum(quats * quats, axis=-1, keepdims=True))
    safe = norm > 1e-12
    q = jnp.where(safe, quats / jnp.where(safe, norm, 1.0), jnp.array([1.0, 0.0, 0.0, 0.0]))
    w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    rows = [
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ]
    return jnp.stack([jnp.stack(r, axis=-1) for r in rows], axis=-2)


def covariance_3d(quats: jax.Array, scales: jax.Array) -> jax.Array:
    """Σ = R S Sᵀ Rᵀ. quats (N,4), scales (N,3) -> (N,3,3)."""
    m = quat_to_rotmat(quats) * scales[..., None, :]
    return m @ jnp.swapaxes(m, -1, -2)


def _finite_inputs(means, quats, scales, opacities):
    """(N,) mask of Gaussians with all-finite parameters, and the parameters with the others
    replaced by harmless values before any arithmetic, so that no NaN leaks into outputs or
    gradients (`project` culls them)."""
    finite = (
        jnp.all(jnp.isfinite(means), -1)
        & jnp.all(jnp.isfinite(quats), -1)
        & jnp.all(jnp.isfinite(scales), -1)
        & jnp.isfinite(opacities)
    )
    unit_quat = jnp.array([1.0, 0.0, 0.0, 0.0], means.dtype)
    return finite, (
        jnp.where(finite[:, None], means, 0.0),
        jnp.where(finite[:, None], quats, unit_quat),
        jnp.where(finite[:, None], scales, 1.0),
        jnp.where(finite, opacities, 0.0),
    )


def _ewa_jacobian(x, y, z_safe, K, width: int, height: int) -> jax.Array:
    """(N, 2, 3) Jacobian of the pinhole projection at camera points (x, y, z_safe), with x / z and
    y / z clamped at FOV_CLAMP of the half field of view past the image edge (3DGS)."""
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    lim_x_pos = (width - cx) / fx + FOV_CLAMP * width / (2.0 * fx)
    lim_x_neg = cx / fx + FOV_CLAMP * width / (2.0 * fx)
    lim_y_pos = (height - cy) / fy + FOV_CLAMP * height / (2.0 * fy)
    lim_y_neg = cy / fy + FOV_CLAMP * height / (2.0 * fy)
    tx = z_safe * clamp(x / z_safe, -lim_x_neg, lim_x_pos)
    ty = z_safe * clamp(y / z_safe, -lim_y_neg, lim_y_pos)
    zero = jnp.zeros_like(z_safe)
    return jnp.stack(
        [
            jnp.stack([fx / z_safe, zero, -fx * tx / (z_safe * z_safe)], -1),
            jnp.stack([zero, fy / z_safe, -fy * ty / (z_safe * z_safe)], -1),
        ],
        axis=-2,
    )


def project(
    means: jax.Array,
    quats: jax.Array,
    scales: jax.Array,
    opacities: jax.Array,
    viewmat: jax.Array,
    K: jax.Array,
    *,
    width: int,
    height: int,
    near_plane: float = NEAR_PLANE,
    eps2d: float = EPS2D,
) -> Projected:
    """Projects N Gaussians into one camera.

    Args:
      means: (N, 3) world centres.
      quats: (N, 4) rotations (w, x, y, z), not necessarily normalised.
      scales: (N, 3) positive linear standard deviations.
      opacities: (N,) in [0, 1].
      viewmat: (4, 4) world-to-camera, OpenCV convention.
      K: (3, 3) pixel intrinsics.
      width, height: image size in pixels.
      near_plane: Gaussians with camera z <= near_plane are culled.
      eps2d: dilation added to the 2D covariance diagonal.

    Returns:
      A `Projected` with culled Gaussians at opacity 0 and radii 0.
    """
    dtype = means.dtype
    finite, (means, quats, scales, opacities) = _finite_inputs(means, quats, scales, opacities)

    R = viewmat[:3, :3]
    t = viewmat[:3, 3]
    p_cam = means @ R.T + t
    z = p_cam[:, 2]
    in_front = z > near_plane
    z_safe = jnp.where(in_front, z, 1.0)
    x, y = p_cam[:, 0], p_cam[:, 1]

    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    means2d = jnp.stack([fx * x / z_safe + cx, fy * y / z_safe + cy], axis=-1)
    J = _ewa_jacobian(x, y, z_safe, K, width, height)

    cov_cam = R @ covariance_3d(quats, scales) @ R.T
    cov2d = J @ cov_cam @ jnp.swapaxes(J, -1, -2)
    c00 = cov2d[:, 0, 0] + eps2d
    c01 = cov2d[:, 0, 1]
    c11 = cov2d[:, 1, 1] + eps2d
    det = c00 * c11 - c01 * c01
    det_ok = det > 0.0
    det_safe = jnp.where(det_ok, det, 1.0)
    conics = jnp.stack([c11 / det_safe, -c01 / det_safe, c00 / det_safe], axis=-1)

    opac = clamp(opacities, 0.0, 1.0)
    op_ok = opac >= ALPHA_MIN
    extend = jnp.sqrt(2.0 * jnp.log(jnp.maximum(255.0 * opac, 1.0)))
    # Capped so the int32 cast cannot overflow; a box that large covers any image.
    rx = jnp.minimum(jnp.ceil(extend * jnp.sqrt(jnp.maximum(c00, 0.0))), RADIUS_CAP)
    ry = jnp.minimum(jnp.ceil(extend * jnp.sqrt(jnp.maximum(c11, 0.0))), RADIUS_CAP)
    mx, my = means2d[:, 0], means2d[:, 1]
    on_screen = (mx + rx > 0) & (mx - rx < width) & (my + ry > 0) & (my - ry < height)

    keep = finite & in_front & det_ok & op_ok & on_screen & (rx > 0) & (ry > 0)
    keep = keep & jnp.all(jnp.isfinite(means2d), -1) & jnp.all(jnp.isfinite(conics), -1)
    radii = jax.lax.stop_gradient(
        jnp.where(keep[:, None], jnp.stack([rx, ry], -1), 0.0).astype(jnp.int32)
    )
    keep_f = keep.astype(dtype)
    return Projected(
        means2d=jnp.where(keep[:, None], means2d, 0.0),
        conics=jnp.where(keep[:, None], conics, 0.0),
        depths=jnp.where(keep, z, 0.0),
        radii=radii,
        opacities=opac * keep_f,
    )
