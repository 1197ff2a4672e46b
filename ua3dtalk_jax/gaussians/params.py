"""Gaussian head state (paper §2: centre μ, scale s, rotation r, opacity α, colour c), fixed buffers.

`GaussianState` holds N = capacity slots; `active` marks the live ones, so densification and
pruning never change an array shape (no recompilation). Inactive slots hold benign values
(centre 0, identity rotation, tiny scale) and render with opacity exactly 0.

Parametrisation and activations (the authors' `gaussian_model.py`, reference §2):
  means           (N, 3)    world centres, no activation
  scales_raw      (N, 3)    scale = softplus(scales_raw). The issue speaks of log-scales; we
                            keep the authors' softplus so their checkpoints and learning rates
                            carry over. The init is log(d) (d = RMS distance to the 3 nearest
                            neighbours), so at init softplus(log d) = log(1 + d) ≈ d: the raw
                            values *start* as log-scales. The deformation adds Δs to the raw
                            value, then the activation applies (deform.py).
  quats           (N, 4)    (w, x, y, z), L2-normalised on activation
  opacity_logits  (N,)      opacity = sigmoid(logit) · active
  sh              (N, K, 3) colour SH (K = (max_degree + 1)²), degree 2 in the paper, the active
                            degree `sh_degree` grows during training
"""

from __future__ import annotations

import math

import flax.struct
import jax
import jax.numpy as jnp

from ua3dtalk_jax.gaussians.sh import eval_sh, num_coeffs, rgb_to_sh

KNN_NEIGHBOURS = 3  # distCUDA2: mean squared distance to the 3 nearest neighbours
MIN_SQ_DIST = 1e-7  # clamp of distCUDA2's output, so coincident points still get a scale
INACTIVE_SCALE = 1e-4  # linear scale stored in free slots (harmless if ever drawn)
INACTIVE_LOGIT = -20.0  # opacity logit stored in free slots (and masked to 0 anyway)
KNN_CHUNK = 512  # rows per block of the brute-force neighbour search (memory ≈ chunk · M)


class CapacityError(RuntimeError):
    """The fixed Gaussian buffer is full: raise `capacity` in the model config."""


@flax.struct.dataclass
class GaussianState:
    """Fixed-capacity Gaussian buffers (see module docstring for activations).

    Attributes:
      means: (N, 3). scales_raw: (N, 3). quats: (N, 4). opacity_logits: (N,). sh: (N, K, 3).
      active: (N,) bool, live slots. sh_degree: () int32, the active SH degree.
    """

    means: jax.Array
    scales_raw: jax.Array
    quats: jax.Array
    opacity_logits: jax.Array
    sh: jax.Array
    active: jax.Array
    sh_degree: jax.Array

    @property
    def capacity(self) -> int:
        return self.means.shape[0]

    @property
    def max_sh_degree(self) -> int:
        return math.isqrt(self.sh.shape[1]) - 1


# The optimisable fields (active and sh_degree are bookkeeping, not differentiable).
TRAINABLE = ("means", "scales_raw", "quats", "opacity_logits", "sh")


def trainable(state: GaussianState) -> dict[str, jax.Array]:
    """The optimisable fields as a dict of float arrays (differentiate / optimise this; put it
    back with `state.replace(**params)`)."""
    return {name: getattr(state, name) for name in TRAINABLE}


def inverse_softplus(y: jax.Array) -> jax.Array:
    """x with softplus(x) = y > 0 (stable: y + log(−expm1(−y)))."""
    return y + jnp.log(-jnp.expm1(-y))


def inverse_sigmoid(p: jax.Array) -> jax.Array:
    return jnp.log(p) - jnp.log1p(-p)


def knn_mean_sq_dist(points: jax.Array, k: int = KNN_NEIGHBOURS) -> jax.Array:
    """Mean squared distance of each point to its k nearest other points (brute force, chunked).

    Args:
      points: (M, 3), M > k.
    Returns:
      (M,) mean squared distances, clamped below at MIN_SQ_DIST.
    """
    m = points.shape[0]
    pad = (-m) % KNN_CHUNK
    rows = jnp.concatenate([points, jnp.zeros((pad, 3), points.dtype)]).reshape(-1, KNN_CHUNK, 3)

    def block(r):
        d2 = jnp.sum((r[:, None, :] - points[None, :, :]) ** 2, axis=-1)
        nearest = -jax.lax.top_k(-d2, k + 1)[0]  # includes the point itself at distance 0
        return jnp.mean(nearest[:, 1:], axis=-1)

    out = jax.lax.map(block, rows).reshape(-1)[:m]
    return jnp.maximum(out, MIN_SQ_DIST)


def empty_gaussians(capacity: int, sh_degree: int = 2, dtype=jnp.float32) -> GaussianState:
    """A state with every slot free."""
    quats = jnp.zeros((capacity, 4), dtype).at[:, 0].set(1.0)
    return GaussianState(
        means=jnp.zeros((capacity, 3), dtype),
        scales_raw=jnp.full((capacity, 3), inverse_softplus(jnp.asarray(INACTIVE_SCALE, dtype))),
        quats=quats,
        opacity_logits=jnp.full((capacity,), INACTIVE_LOGIT, dtype),
        sh=jnp.zeros((capacity, num_coeffs(sh_degree), 3), dtype),
        active=jnp.zeros((capacity,), bool),
        sh_degree=jnp.zeros((), jnp.int32),
    )


def init_gaussians(
    key: jax.Array,
    capacity: int,
    *,
    points: jax.Array | None = None,
    num_points: int | None = None,
    box: float = 0.1,
    sh_degree: int = 2,
    init_opacity: float = 0.1,
    colors: jax.Array | None = None,
    max_scale: float | None = None,
) -> GaussianState:
    """Gaussians at `points`, or at `num_points` uniform random points in [−box, box]³.

    As the authors: grey colour (0.5 + U(0, 1)/255) in the SH DC unless `colors` are given, higher
    bands 0; opacity `init_opacity`; identity rotation; raw scale log(sqrt(mean sq. distance to 3
    neighbours)).

    Args:
      key: PRNG key (random points and colour noise).
      capacity: N, the buffer size.
      points: optional (M, 3) initial centres (e.g. tracked face points).
      num_points: M when `points` is None (face 2000, mouth 10,000 in the paper).
      box, sh_degree, init_opacity: see above.
      colors: optional (M, 3) RGB in [0, 1] of the initial points (with `points`).
      max_scale: optional upper bound of the initial scales (an isolated point would otherwise
        start as one huge blob).
    Returns:
      a `GaussianState` with the first M slots active.
    Raises:
      CapacityError: M > capacity. ValueError: neither or both of points/num_points.
    """
    if (points is None) == (num_points is None):
        raise ValueError("pass exactly one of points= or num_points=")
    k_pts, k_col = jax.random.split(key)
    if points is None:
        points = jax.random.uniform(k_pts, (num_points, 3), minval=-box, maxval=box)
    points = jnp.asarray(points, jnp.float32)
    m = points.shape[0]
    if m > capacity:
        raise CapacityError(f"{m} initial points exceed the capacity {capacity}")
    if m <= KNN_NEIGHBOURS:
        raise ValueError(f"need more than {KNN_NEIGHBOURS} initial points, got {m}")
    state = empty_gaussians(capacity, sh_degree)
    rgb = 0.5 + jax.random.uniform(k_col, (m, 3)) / 255.0
    if colors is not None:
        if colors.shape != (m, 3):
            raise ValueError(f"colors has shape {colors.shape}, expected ({m}, 3) like points")
        rgb = jnp.asarray(colors, jnp.float32)
    log_scale = 0.5 * jnp.log(knn_mean_sq_dist(points))
    if max_scale is not None:
        log_scale = jnp.minimum(log_scale, math.log(max_scale))
    return state.replace(
        means=state.means.at[:m].set(points),
        scales_raw=state.scales_raw.at[:m].set(jnp.repeat(log_scale[:, None], 3, axis=1)),
        opacity_logits=state.opacity_logits.at[:m].set(inverse_sigmoid(init_opacity)),
        sh=state.sh.at[:m, 0, :].set(rgb_to_sh(rgb)),
        active=state.active.at[:m].set(True),
    )


def activated(
    state: GaussianState, campos: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array, jax.Array]:
    """Rasterizer inputs of the (possibly deformed) state seen from `campos`.

    Args:
      state: the Gaussians.
      campos: (3,) camera centre in world coordinates (for the view-dependent SH colour).
    Returns:
      means (N, 3), quats (N, 4) unit, scales (N, 3) linear, opacities (N,) (0 where inactive),
      colors (N, 3).
    """
    quats = state.quats / jnp.maximum(jnp.linalg.norm(state.quats, axis=-1, keepdims=True), 1e-12)
    scales = jax.nn.softplus(state.scales_raw)
    opacities = jnp.where(state.active, jax.nn.sigmoid(state.opacity_logits), 0.0)
    colors = eval_sh(state.sh, state.means - campos, state.sh_degree)
    return state.means, quats, scales, opacities, colors


def camera_center(viewmat: jax.Array) -> jax.Array:
    """(3,) world position of the camera of a (4, 4) world-to-camera matrix: −Rᵀ t."""
    return -viewmat[:3, :3].T @ viewmat[:3, 3]


def grow_sh_degree(state: GaussianState, iteration: jax.Array, every: int) -> GaussianState:
    """Active SH degree = min(max_degree, iteration // every) (3DGS: +1 every 1000 iterations)."""
    degree = jnp.minimum(jnp.asarray(iteration) // every, state.max_sh_degree).astype(jnp.int32)
    return state.replace(sh_degree=degree)
