"""Optimisers and learning-rate schedules of 3DGS and the authors' deformation code.

Gaussians (3DGS / TalkingGaussian, reference §2): Adam (eps 1e-15) with a
per-parameter-group learning rate; the position rate decays log-linearly from
`lr_init` to `lr_final` over `max_steps` (3DGS `get_expon_lr_func`).

Deformation networks (reference §3): AdamW (betas 0.9/0.99, eps 1e-8, weight
decay 0.01 unless a group sets its own) with the motion schedule
  factor(it) = 0.5^(it / S)  for it < S,   0.1^(it / B)  afterwards,
S = "mouth_select_iter" and B = "bg_iter" of the authors' scripts (the jump at S
is theirs). Parameter groups are chosen by a function of the parameter path, so
one `optax.multi_transform` serves every branch.

The schedule counts every iteration, the static warm-up included: the authors call
`scheduler.step()` each iteration while `optimizer.step()` skips the network's parameters (no
gradients before the deformation starts). `advance_schedules` is that warm-up step here: the
schedule's count moves on, Adam's moments and its bias-correction count do not.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import optax


def exponential_lr(lr_init: float, lr_final: float, max_steps: int) -> optax.Schedule:
    """Log-linear interpolation from lr_init (step 0) to lr_final (step >= max_steps)."""
    if lr_init <= 0 or lr_final <= 0 or max_steps <= 0:
        raise ValueError(f"need positive rates and steps, got {lr_init}, {lr_final}, {max_steps}")

    def schedule(step):
        t = jnp.clip(step / max_steps, 0.0, 1.0)
        return jnp.exp((1.0 - t) * jnp.log(lr_init) + t * jnp.log(lr_final))

    return schedule


def motion_factor(select_iter: int, bg_iter: int) -> optax.Schedule:
    """The authors' multiplicative schedule of the deformation-network rates."""

    def schedule(step):
        step = jnp.asarray(step, jnp.float32)
        return jnp.where(step < select_iter, 0.5 ** (step / select_iter), 0.1 ** (step / bg_iter))

    return schedule


def advance_schedules(opt_state):
    """`opt_state` with every learning-rate schedule count (optax `ScaleByScheduleState`) one
    step further and everything else (Adam's moments and count, the parameters' own state) as is.

    Args:
      opt_state: the state of an optax transformation (any nesting: chains, multi_transform).
    Returns:
      the same structure.
    """

    def one(x):
        if isinstance(x, optax.ScaleByScheduleState):
            return x._replace(count=optax.safe_increment(x.count))
        return x

    is_schedule = lambda x: isinstance(x, optax.ScaleByScheduleState)
    return jax.tree.map(one, opt_state, is_leaf=is_schedule)


def scaled(base_lr: float, factor: optax.Schedule) -> optax.Schedule:
    return lambda step: base_lr * factor(step)


def path_labels(params, label_of: Callable[[str], str]):
    """A pytree of group labels: `label_of('/'.join(path keys))` for every leaf."""

    def one(path, _):
        keys = [str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path]
        return label_of("/".join(keys))

    return jax.tree_util.tree_map_with_path(one, params)


def grouped(
    transforms: Mapping[str, optax.GradientTransformation],
    params,
    label_of: Callable[[str], str],
) -> optax.GradientTransformation:
    """`optax.multi_transform` with labels from parameter paths; unknown labels are an error."""
    labels = path_labels(params, label_of)
    missing = {l for l in jax.tree.leaves(labels)} - set(transforms)
    if missing:
        raise ValueError(f"no optimiser for parameter groups {sorted(missing)}")
    return optax.multi_transform(dict(transforms), labels)


def adamw_network(lr: optax.ScalarOrSchedule, weight_decay: float = 0.01):
    """AdamW as the authors configure it for the deformation networks."""
    return optax.adamw(lr, b1=0.9, b2=0.99, eps=1e-8, weight_decay=weight_decay)
