"""Adaptive density control of 3DGS (clone, split, prune, opacity reset) on fixed-capacity buffers.

Rules (3DGS, as configured by TalkingGaussian/UA-3DTalk, reference §2):
  * statistics: per visible Gaussian and view, the norm of the screen-space mean gradient in NDC
    units (pixel gradient · (W/2, H/2), the convention the 3DGS thresholds are tuned for) is
    accumulated; avg = accumulated / number of views in which it was visible;
  * candidates: active Gaussians with avg ≥ grad_threshold (face 0.0005, mouth 0.0002);
  * clone if max scale ≤ percent_dense · extent (a copy goes to a free slot), else split: the
    Gaussian is replaced by two samples from itself, each with scale / 1.6 (one stays in the
    parent's slot, one goes to a free slot);
  * prune: opacity < min_opacity + ramp · iteration / densify_until, and after `size_prune_from`
    iterations also screen radius > max_screen_radius px or world max scale > max_world_scale ·
    extent; pruned slots are freed;
  * opacity reset: opacity = min(opacity, 0.01) (3DGS; the authors never call it).
  * green-background clean-up (`background_cleanup`; the training background is pure green): at
    every densification interval (the face's also after densify_until, to the end of training)
    the Gaussians whose colour seen from the current training camera is background green
    (R < red_max, G > green_min, B < blue_max; face 30/225/30, mouth 20/235/20, /255) are pruned
    ("prune", face) or faded ("fade", mouth: gradient accumulator halved, opacity reset to 0.1,
    scale divided by 10). The colour is the view-dependent SH colour of the static centres
    (the authors evaluate it on the un-deformed `get_xyz`).
Every candidate needs one free slot. Shapes never change: when the buffer runs out, the remaining
candidates are skipped and `DensifyInfo.n_overflow` counts them; `check_capacity` (host side,
outside jit) turns that into a `CapacityError`. After densification the statistics restart
(`init_grad_stats`), and `DensifyInfo.changed` marks the slots whose optimiser moments to zero.
"""

from __future__ import annotations

import dataclasses
import functools

import flax.struct
import jax
import jax.numpy as jnp

from ua3dtalk_jax.gaussians.params import (
    INACTIVE_LOGIT,
    CapacityError,
    GaussianState,
    empty_gaussians,
    inverse_sigmoid,
    inverse_softplus,
)
from ua3dtalk_jax.gaussians.sh import eval_sh

RESET_OPACITY = 0.01  # 3DGS's reset target
CLEANUP_MODES = ("off", "prune", "fade")


@dataclasses.dataclass(frozen=True)
class DensifyConfig:
    """Thresholds (hashable: a static argument of the jitted transitions)."""

    grad_threshold: float = 5e-4
    percent_dense: float = 0.005
    split_factor: float = 1.6
    min_opacity: float = 0.05
    min_opacity_ramp: float = 0.25
    densify_from: int = 500
    densify_until: int = 49_000
    densify_every: int = 100
    size_prune_from: int = 3000
    max_screen_radius: float = 20.0
    max_world_scale: float = 0.1
    bg_cleanup: str = "off"  # "off", "prune" (face) or "fade" (mouth)
    bg_red_max: float = 30 / 255
    bg_green_min: float = 225 / 255
    bg_blue_max: float = 30 / 255
    bg_cleanup_past_until: bool = False  # also after densify_until (the face's)
    bg_fade_opacity: float = 0.1
    bg_fade_scale: float = 10.0
    # False: the activated scale is divided (softplus⁻¹(softplus(raw) / 10)). True: the authors'
    # literal `_scaling /= 10` on the raw value, which under their softplus activation *grows*
    # every Gaussian whose raw value is below 0 (all small ones: raw ≈ log d at init).
    bg_fade_raw: bool = False

    def __post_init__(self):
        if self.bg_cleanup not in CLEANUP_MODES:
            raise ValueError(
                f"model.gaussians.<part>.bg_cleanup = {self.bg_cleanup!r}; choose "
                f"one of {CLEANUP_MODES}"
            )
        if self.bg_fade_scale <= 0:
            raise ValueError(
                f"model.gaussians.<part>.bg_fade_scale = {self.bg_fade_scale}: must be > 0"
            )


# The schedule fields of DensifyConfig: read from the training config (`train.<part>`), the
# thresholds from the model config (`model.gaussians.<part>`); each value lives in one place.
SCHEDULE_KEYS = ("densify_from", "densify_every", "densify_until", "size_prune_from")


def densify_config(gaussians_cfg, schedule_cfg) -> DensifyConfig:
    """DensifyConfig of one branch.

    Args:
      gaussians_cfg: `cfg.model.gaussians.<part>` (thresholds; extra keys are ignored).
      schedule_cfg: `cfg.train.<part>` (the `SCHEDULE_KEYS`; extra keys are ignored).
    """
    names = {f.name for f in dataclasses.fields(DensifyConfig)} - set(SCHEDULE_KEYS)
    kw = {k: v for k, v in gaussians_cfg.items() if k in names}
    kw.update({k: schedule_cfg[k] for k in SCHEDULE_KEYS})
    return DensifyConfig(**kw)


def should_densify(cfg: DensifyConfig, iteration: int) -> bool:
    """Host-side schedule: every `densify_every` its strictly between from and until."""
    return cfg.densify_from < iteration < cfg.densify_until and iteration % cfg.densify_every == 0


def should_clean(cfg: DensifyConfig, iteration: int) -> bool:
    """Host-side schedule of `background_cleanup`: the densification intervals (past
    densify_until too when `bg_cleanup_past_until`)."""
    if cfg.bg_cleanup == "off":
        return False
    until = cfg.bg_cleanup_past_until or iteration < cfg.densify_until
    return cfg.densify_from < iteration and iteration % cfg.densify_every == 0 and until


@flax.struct.dataclass
class GradStats:
    """Densification statistics. grad_accum, count, max_radii: (N,) each."""

    grad_accum: jax.Array
    count: jax.Array
    max_radii: jax.Array


@flax.struct.dataclass
class DensifyInfo:
    """Counts (int32 scalars) and the (N,) bool mask of slots whose contents changed."""

    n_clone: jax.Array
    n_split: jax.Array
    n_prune: jax.Array
    n_overflow: jax.Array
    n_active: jax.Array
    changed: jax.Array


def init_grad_stats(capacity: int) -> GradStats:
    z = jnp.zeros((capacity,), jnp.float32)
    return GradStats(grad_accum=z, count=z, max_radii=z)


def accumulate_grad_stats(
    stats: GradStats, means2d_grad: jax.Array, radii: jax.Array, *, width: int, height: int
) -> GradStats:
    """Adds one view's statistics.

    Args:
      stats: running statistics.
      means2d_grad: (N, 2) gradient of the loss w.r.t. the screen-space means in pixels (the
        gradient w.r.t. `rasterize(..., means2d_offset=zeros)`).
      radii: (N, 2) the render's footprints; 0 marks a Gaussian not visible in this view.
      width, height: image size, to convert the gradient to NDC units.
    Returns:
      updated statistics.
    """
    visible = jnp.any(radii > 0, axis=-1)
    ndc = means2d_grad * jnp.asarray([0.5 * width, 0.5 * height], means2d_grad.dtype)
    norm = jnp.linalg.norm(ndc, axis=-1)
    return GradStats(
        grad_accum=stats.grad_accum + jnp.where(visible, norm, 0.0),
        count=stats.count + visible,
        max_radii=jnp.where(
            visible, jnp.maximum(stats.max_radii, jnp.max(radii, axis=-1)), stats.max_radii
        ),
    )


def _quat_to_rotmat(q: jax.Array) -> jax.Array:
    """(N, 4) (w, x, y, z) → (N, 3, 3), after normalisation."""
    w, x, y, z = jnp.moveaxis(q / jnp.linalg.norm(q, axis=-1, keepdims=True), -1, 0)
    return jnp.stack(
        [
            jnp.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
            jnp.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
            jnp.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
        ],
        axis=-2,
    )


@functools.partial(jax.jit, static_argnames=("cfg",))
def densify_and_prune(
    cfg: DensifyConfig,
    state: GaussianState,
    stats: GradStats,
    key: jax.Array,
    *,
    extent: jax.Array | float,
    iteration: jax.Array | int,
) -> tuple[GaussianState, DensifyInfo]:
    """One densification step: clone/split the high-gradient Gaussians, then prune.

    Args:
      cfg: thresholds (static).
      state: Gaussians, N slots.
      stats: statistics accumulated since the last step.
      key: PRNG key for the split samples.
      extent: scene extent (1.1 × max camera distance from their mean centre).
      iteration: current training iteration (ramps the opacity threshold, gates the size prune).
    Returns:
      the new state (same shapes) and a `DensifyInfo`; check it with `check_capacity`.
    """
    n = state.capacity
    active = state.active
    scales = jax.nn.softplus(state.scales_raw)
    avg_grad = stats.grad_accum / jnp.maximum(stats.count, 1.0)
    cand = active & (avg_grad >= cfg.grad_threshold)
    small = jnp.max(scales, axis=-1) <= cfg.percent_dense * extent
    free_slots = jnp.nonzero(~active, size=n, fill_value=n)[0]
    rank = jnp.cumsum(cand) - 1
    dest = jnp.where(cand, free_slots[jnp.clip(rank, 0, n - 1)], n)  # n = no slot
    placed = cand & (dest < n)
    clone = placed & small
    split = placed & ~small

    # Split: two samples N(μ, R diag(s)² Rᵀ), both with scale / split_factor.
    eps = jax.random.normal(key, (2, n, 3), state.means.dtype)
    rot = _quat_to_rotmat(state.quats)
    samples = state.means + jnp.einsum("nij,knj->kni", rot, eps * scales)
    split_raw = inverse_softplus(scales / cfg.split_factor)
    child_means = jnp.where(split[:, None], samples[1], state.means)
    child_raw = jnp.where(split[:, None], split_raw, state.scales_raw)
    parent_means = jnp.where(split[:, None], samples[0], state.means)
    parent_raw = jnp.where(split[:, None], split_raw, state.scales_raw)

    def put(buf, values):
        return buf.at[dest].set(values, mode="drop")

    new = state.replace(
        means=put(parent_means, child_means),
        scales_raw=put(parent_raw, child_raw),
        quats=put(state.quats, state.quats),
        opacity_logits=put(state.opacity_logits, state.opacity_logits),
        sh=put(state.sh, state.sh),
        active=put(active, placed),
    )
    born = jnp.zeros((n,), bool).at[dest].set(placed, mode="drop")
    # Fresh Gaussians (children, split parents) have no screen-size history yet.
    radii = jnp.where(born | split, 0.0, stats.max_radii)

    opacity = jax.nn.sigmoid(new.opacity_logits)
    min_opacity = cfg.min_opacity + cfg.min_opacity_ramp * iteration / cfg.densify_until
    too_big = (radii > cfg.max_screen_radius) | (
        jnp.max(jax.nn.softplus(new.scales_raw), axis=-1) > cfg.max_world_scale * extent
    )
    prune = new.active & ((opacity < min_opacity) | ((iteration > cfg.size_prune_from) & too_big))
    new = free(new, prune)

    info = DensifyInfo(
        n_clone=jnp.sum(clone, dtype=jnp.int32),
        n_split=jnp.sum(split, dtype=jnp.int32),
        n_prune=jnp.sum(prune, dtype=jnp.int32),
        n_overflow=jnp.sum(cand & ~placed, dtype=jnp.int32),
        n_active=jnp.sum(new.active, dtype=jnp.int32),
        changed=born | split | prune,
    )
    return new, info


@functools.partial(jax.jit, static_argnames=("cfg",))
def background_cleanup(
    cfg: DensifyConfig, state: GaussianState, stats: GradStats, campos: jax.Array
) -> tuple[GaussianState, GradStats, jax.Array]:
    """The green-background clean-up (module docstring) seen from the camera at `campos`.

    Args:
      cfg: thresholds and mode (static; "off" returns the inputs).
      state: Gaussians, N slots.
      stats: densification statistics ("fade" halves their gradient accumulator; "prune" clears
        the pruned slots'). The authors clean up right after `densify_and_prune`, whose
        statistics restart, so in the training loop the halving meets an empty accumulator.
      campos: (3,) world position of the current training camera.
    Returns:
      (state, stats, hit) with the same shapes; hit: (N,) bool, the active Gaussians of
      background colour (pruned or faded). "prune" frees them (zero their optimiser moments, as
      after a prune); "fade" keeps their moments (the authors edit the parameters in place).
    """
    colours = eval_sh(state.sh, state.means - campos, state.sh_degree)
    hit = (
        state.active
        & (colours[:, 0] < cfg.bg_red_max)
        & (colours[:, 1] > cfg.bg_green_min)
        & (colours[:, 2] < cfg.bg_blue_max)
    )
    if cfg.bg_cleanup == "off":
        return state, stats, jnp.zeros_like(hit)
    if cfg.bg_cleanup == "prune":
        keep = lambda x: jnp.where(hit, 0.0, x)
        stats = GradStats(
            grad_accum=keep(stats.grad_accum),
            count=keep(stats.count),
            max_radii=keep(stats.max_radii),
        )
        return free(state, hit), stats, hit
    if cfg.bg_fade_raw:
        raw = state.scales_raw / cfg.bg_fade_scale
    else:
        raw = inverse_softplus(jax.nn.softplus(state.scales_raw) / cfg.bg_fade_scale)
    fade_logit = inverse_sigmoid(jnp.asarray(cfg.bg_fade_opacity, state.opacity_logits.dtype))
    state = state.replace(
        opacity_logits=jnp.where(hit, fade_logit, state.opacity_logits),
        scales_raw=jnp.where(hit[:, None], raw, state.scales_raw),
    )
    stats = stats.replace(grad_accum=jnp.where(hit, stats.grad_accum / 2, stats.grad_accum))
    return state, stats, hit


def free(state: GaussianState, mask: jax.Array) -> GaussianState:
    """Frees the slots in `mask` (N,): inactive, with the benign values of `empty_gaussians`."""
    empty = empty_gaussians(state.capacity, state.max_sh_degree, state.means.dtype)

    def pick(e, s):
        m = mask.reshape(mask.shape + (1,) * (s.ndim - 1))
        return jnp.where(m, e, s)

    fields = ("means", "scales_raw", "quats", "opacity_logits", "sh", "active")
    return state.replace(**{f: pick(getattr(empty, f), getattr(state, f)) for f in fields})


@jax.jit
def reset_opacity(state: GaussianState, value: float = RESET_OPACITY) -> GaussianState:
    """opacity ← min(opacity, value) on active slots (3DGS's periodic reset)."""
    cap = inverse_sigmoid(jnp.asarray(value, state.opacity_logits.dtype))
    logits = jnp.where(state.active, jnp.minimum(state.opacity_logits, cap), INACTIVE_LOGIT)
    return state.replace(opacity_logits=logits)


def check_capacity(info: DensifyInfo, capacity: int | None = None) -> None:
    """Host-side check after `densify_and_prune` (blocks on the device values).

    Raises:
      CapacityError: some candidates found no free slot.
    """
    overflow = int(info.n_overflow)
    if overflow > 0:
        cap = f" of {capacity}" if capacity is not None else ""
        raise CapacityError(
            f"Gaussian capacity{cap} exhausted: {overflow} densification candidates found no "
            f"free slot ({int(info.n_active)} active). Raise gaussians.<part>.capacity."
        )
