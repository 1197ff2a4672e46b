"""Stage-2 training state of one branch and its optimisers (paper §2.4; reference §2–§4).

A branch (face or mouth) is its fixed-capacity Gaussians H plus one `MotionNetwork`; the fuse step
trains both branches' colours and the face opacity. `BranchState` is one pytree (checkpointed as
is):

    gaussians  GaussianState (N slots)      net        MotionNetwork params
    g_opt      optax state of the Gaussians n_opt      optax state of the network
    stats      GradStats (densification)    step       () int32 iterations done
    key        (2,) uint32 run key (member draws and splits use fold_in(key, step))

Optimisers (reference §2, §3):
  * Gaussians: Adam (eps 1e-15) with one learning rate per field — positions decay log-linearly from
    lr_xyz_init·extent to lr_xyz_final·extent; SH DC and the higher bands have their own rates, so the
    per-field rate of `sh` is a (1, K, 1) array. The fuse step reuses this with the frozen fields at
    rate 0.
  * Network: AdamW (betas 0.9/0.99) per parameter group — the xyz hexplane ("grid"), the AudioAttNet
    ("audio_att", weight decay 1e-4), AudioNet ("audio_net") and the rest ("net") — times the authors'
    schedule 0.5^(it/S) then 0.1^(it/B).
`extent` is 3DGS's scene extent: 1.1 × the largest camera-centre distance from their mean, floored at
EXTENT_FLOOR × the mean camera distance from the head (the origin) so that a static camera (the
synthetic subject) still gets the scale of its scene rather than 0.
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ua3dtalk_jax.gaussians import GaussianState, GradStats, init_gaussians, init_grad_stats
from ua3dtalk_jax.gaussians.params import trainable
from ua3dtalk_jax.head.stage2_model import NET_INIT_POINTS, build_network, dummy_inputs
from ua3dtalk_jax.models.init import init_params
from ua3dtalk_jax.train.optim import (
    adamw_network,
    exponential_lr,
    grouped,
    motion_factor,
    scaled,
)
from ua3dtalk_jax.train.stage2.init import INIT_MODES, image_points

EXTENT_FLOOR = 0.2  # × mean camera distance (a static camera has no spread)
AUDIO_ATT_WEIGHT_DECAY = 1e-4


@flax.struct.dataclass
class BranchState:
    gaussians: GaussianState
    net: dict
    g_opt: optax.OptState
    n_opt: optax.OptState
    stats: GradStats
    step: jax.Array
    key: jax.Array


def scene_extent(viewmats: np.ndarray) -> float:
    """3DGS's camera extent of (M, 4, 4) world-to-camera matrices (see module docstring)."""
    r = viewmats[:, :3, :3]
    centres = -np.einsum("mji,mj->mi", r, viewmats[:, :3, 3])
    spread = np.linalg.norm(centres - centres.mean(0), axis=-1).max()
    floor = EXTENT_FLOOR * float(np.linalg.norm(centres, axis=-1).mean())
    return float(max(1.1 * spread, floor))


def field_lr(rates: dict) -> optax.GradientTransformation:
    """Multiplies each field's update by −rate (a float, a schedule of the step, or an array)."""

    def init(params):
        del params
        return optax.ScaleByScheduleState(count=jnp.zeros([], jnp.int32))

    def update(updates, state, params=None):
        del params
        out = {}
        for name, u in updates.items():
            r = rates[name]
            r = r(state.count) if callable(r) else jnp.asarray(r, u.dtype)
            out[name] = -r * u
        return out, optax.ScaleByScheduleState(count=optax.safe_increment(state.count))

    return optax.GradientTransformation(init, update)


def gaussian_optimizer(bcfg, extent: float, num_coeffs: int, *, fuse=None, part="face"):
    """Adam over the Gaussian fields of one branch.

    Args:
      bcfg: `train.face` / `train.mouth` (learning rates).
      extent: scene extent (scales the position rate).
      num_coeffs: K, SH coefficients per channel.
      fuse: the `train.fuse` config for the fuse step (colours; face opacity), else None.
      part: "face" or "mouth" (the fuse step freezes the mouth opacity).
    """
    sh_rate = np.full((1, num_coeffs, 1), bcfg.lr_f_rest, np.float32)
    sh_rate[0, 0, 0] = bcfg.lr_f_dc
    rates = {
        "means": scaled(
            extent, exponential_lr(bcfg.lr_xyz_init, bcfg.lr_xyz_final, bcfg.lr_xyz_steps)
        ),
        "scales_raw": bcfg.lr_scaling,
        "quats": bcfg.lr_rotation,
        "opacity_logits": bcfg.lr_opacity,
        "sh": sh_rate,
    }
    if fuse is not None:
        sh_rate = np.full((1, num_coeffs, 1), fuse.lr_f_rest, np.float32)
        sh_rate[0, 0, 0] = fuse.lr_f_dc
        rates = {
            "means": 0.0,
            "scales_raw": 0.0,
            "quats": 0.0,
            "sh": sh_rate,
            "opacity_logits": fuse.lr_opacity if part == "face" else 0.0,
        }
    return optax.chain(optax.scale_by_adam(b1=0.9, b2=0.999, eps=1e-15), field_lr(rates))


def network_group(path: str) -> str:
    """Parameter group of a MotionNetwork parameter path ("xyz_grid/plane_0_0", ...)."""
    if path.startswith("xyz_grid/"):
        return "grid"
    if path.startswith("audio/audio_att"):
        return "audio_att"
    if path.startswith("audio/audio_net"):
        return "audio_net"
    return "net"


def network_optimizer(bcfg, params) -> optax.GradientTransformation:
    """AdamW per group (module docstring) with the authors' motion schedule."""
    factor = motion_factor(bcfg.lr_select_iter, bcfg.lr_bg_iter)
    groups = {
        "grid": adamw_network(scaled(bcfg.lr_grid, factor)),
        "audio_att": adamw_network(scaled(bcfg.lr_audio_att, factor), AUDIO_ATT_WEIGHT_DECAY),
        "audio_net": adamw_network(scaled(bcfg.lr_audio_net, factor)),
        "net": adamw_network(scaled(bcfg.lr_net, factor)),
    }
    present = {network_group(p) for p in _paths(params)}
    return grouped({k: v for k, v in groups.items() if k in present}, params, network_group)


def _paths(params) -> list[str]:
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    return ["/".join(str(getattr(k, "key", k)) for k in path) for path, _ in leaves]


def init_branch(cfg, part: str, key: jax.Array, extent: float, subject=None):
    """A fresh branch: Gaussians at their initial points (`train.stage2.init`), a new network.

    Args:
      cfg: the whole run config (`configs.get_config`).
      part: "face" or "mouth".
      key: PRNG key.
      extent: scene extent.
      subject: the `data.Subject` the "image" initialisation lifts its points from (None: random
        box points whatever the config says — enough for shapes, as when restoring a checkpoint).
    Returns:
      (BranchState, MotionNetwork, gaussian optimiser, network optimiser).
    """
    g = cfg.model.gaussians[part]
    bcfg = cfg.train[part]
    k_g, k_n, k_run = jax.random.split(key, 3)
    if g.init not in INIT_MODES:
        raise ValueError(f"model.gaussians.{part}.init = {g.init!r}; choose one of {INIT_MODES}")
    kw = {"sh_degree": g.sh_degree, "init_opacity": g.init_opacity}
    if g.init == "image" and subject is not None:
        pts, cols, spacing = image_points(subject, part, g.init_num, cfg.seed, frames=g.init_frames)
        gaussians = init_gaussians(
            k_g, g.capacity, points=pts, colors=jnp.asarray(cols), max_scale=2.0 * spacing, **kw
        )
    else:
        gaussians = init_gaussians(k_g, g.capacity, num_points=g.init_num, box=g.init_box, **kw)
    net = build_network(cfg.model, part)
    # The parameters do not depend on the number of points: initialise on a few (the whole
    # buffer ran a full-ensemble forward over every slot, op by op: at the paper's 65,536 slots
    # that held > 6 GB and took minutes). Same keys, so the same values as before.
    xyz = gaussians.means[:NET_INIT_POINTS]
    params = init_params(net, k_n, xyz, dummy_inputs(cfg.model), mode="eval")
    g_tx = gaussian_optimizer(bcfg, extent, gaussians.sh.shape[1], part=part)
    n_tx = network_optimizer(bcfg, params)
    state = BranchState(
        gaussians=gaussians,
        net=params,
        g_opt=g_tx.init(trainable(gaussians)),
        n_opt=n_tx.init(params),
        stats=init_grad_stats(g.capacity),
        step=jnp.zeros((), jnp.int32),
        key=k_run,
    )
    return state, net, g_tx, n_tx


def zero_moments(opt_state, changed: jax.Array):
    """Zeroes the Adam moments of the slots in `changed` (N,) (new, split or pruned Gaussians)."""
    n = changed.shape[0]

    def one(x):
        if not hasattr(x, "ndim") or x.ndim == 0 or x.shape[0] != n:
            return x
        return jnp.where(changed.reshape((n,) + (1,) * (x.ndim - 1)), 0, x)

    return jax.tree.map(one, opt_state)
