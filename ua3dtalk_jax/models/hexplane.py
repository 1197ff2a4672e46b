"""Multi-resolution hexplane field (K-planes style) used by both xyz encoders and Eq. 6.

A point p in the AABB [−bound, bound]³ is encoded by sampling three axis-aligned feature planes
(XY, XZ, YZ) at several resolutions: bilinear with `align_corners=True` and border padding, the
three samples multiplied within a scale (Hadamard product, K-planes) and the scales concatenated.
Output width = channels · len(multires).

Conventions (ported from the authors' `hexplane.py` so their weights map one-to-one):
  * the AABB is stored as [[+b]*3, [−b]*3], so the normalised coordinate is u = −p / bound;
  * planes are (res, res, C) here (row = second plane axis, column = first), where the authors
    store [1, C, res, res] — a transpose when porting;
  * plane values are initialised uniform(0.1, 0.5).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

# Plane pairs (column axis, row axis), in the authors' order.
PLANE_AXES = ((0, 1), (0, 2), (1, 2))


def uniform_init(low: float, high: float):
    """Initializer drawing uniform(low, high) values, as torch's `nn.init.uniform_(a, b)`."""

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, low, high)

    return init


def sample_plane(plane: jax.Array, uv: jax.Array) -> jax.Array:
    """Bilinear lookup, align_corners=True, border padding (torch `grid_sample` semantics).

    Args:
      plane: (R, R, C) feature plane; plane[row, col].
      uv: (N, 2) coordinates in [−1, 1]; uv[:, 0] indexes columns, uv[:, 1] rows. Values outside
        are clamped to the border.
    Returns:
      (N, C) interpolated features.
    """
    rows, cols = plane.shape[0], plane.shape[1]
    x = jnp.clip((uv[:, 0] + 1.0) * 0.5 * (cols - 1), 0.0, cols - 1)
    y = jnp.clip((uv[:, 1] + 1.0) * 0.5 * (rows - 1), 0.0, rows - 1)
    x0 = jnp.clip(jnp.floor(x), 0, cols - 2).astype(jnp.int32)
    y0 = jnp.clip(jnp.floor(y), 0, rows - 2).astype(jnp.int32)
    wx = (x - x0)[:, None]
    wy = (y - y0)[:, None]
    top = plane[y0, x0] * (1 - wx) + plane[y0, x0 + 1] * wx
    bottom = plane[y0 + 1, x0] * (1 - wx) + plane[y0 + 1, x0 + 1] * wx
    return top * (1 - wy) + bottom * wy


class HexPlaneField(nn.Module):
    """xyz → concatenation over scales of the product over the three planes.

    Attributes:
      bound: half-width of the AABB (0.15 head units in the paper).
      base_res: plane resolution at scale 1 (64).
      multires: resolution multipliers ((1, 2, 4, 8) for xyz, (1, 2, 4) for emotion).
      channels: features per plane (16 for xyz, 64 for emotion).
    """

    bound: float = 0.15
    base_res: int = 64
    multires: tuple[int, ...] = (1, 2, 4, 8)
    channels: int = 16

    @property
    def out_dim(self) -> int:
        return self.channels * len(self.multires)

    @nn.compact
    def __call__(self, xyz: jax.Array) -> tuple[jax.Array, dict]:
        """Encodes points.

        Args:
          xyz: (N, 3) points in world (head) units.
        Returns:
          (N, channels · len(multires)) features and {"per_scale": list of (N, channels)}.
        """
        if xyz.ndim != 2 or xyz.shape[-1] != 3:
            raise ValueError(f"xyz must be (N, 3), got {xyz.shape}")
        u = -xyz / self.bound
        per_scale = []
        for s_idx, mult in enumerate(self.multires):
            res = self.base_res * mult
            feat = 1.0
            for p_idx, (a, b) in enumerate(PLANE_AXES):
                plane = self.param(
                    f"plane_{s_idx}_{p_idx}",
                    uniform_init(0.1, 0.5),
                    (res, res, self.channels),
                )
                feat = feat * sample_plane(plane, u[:, (a, b)])
            per_scale.append(feat)
        return jnp.concatenate(per_scale, axis=-1), {"per_scale": per_scale}
