"""The authors' schedule in the branch step's optimiser update (`train.stage2.step.updated_state`, the
mouth branch of the tiny preset, fixed random gradients) and in its loss:

  * the network's learning-rate schedule counts the static warm-up iterations, while the warm-up
    leaves the network's weights, Adam moments and bias-correction count untouched;
  * the mouth's final phase (flag "final"): black background, the motion network and the
    geometry frozen, the colours still train.
The update is tested without rendering (only the optimisers compile: seconds); the jitted branch
step calls `updated_state` with its variant's `deform` and the step's "final" flag, and the tiny
end-to-end run (tests/train/stage2/test_train.py) goes through both phases.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ua3dtalk_jax.configs import get_config
from ua3dtalk_jax.gaussians import init_gaussians, init_grad_stats
from ua3dtalk_jax.gaussians.params import trainable
from ua3dtalk_jax.head.stage2_model import build_network, dummy_inputs
from ua3dtalk_jax.losses.branches import Variant, mouth_loss
from ua3dtalk_jax.train.optim import motion_factor
from ua3dtalk_jax.train.stage2.loop import flags
from ua3dtalk_jax.train.stage2.state import (
    AUDIO_ATT_WEIGHT_DECAY,
    BranchState,
    gaussian_optimizer,
    network_group,
    network_optimizer,
)
from ua3dtalk_jax.train.stage2.step import FINAL_FROZEN, updated_state

S = 64  # image side (the tiny subject's)
WARMUP = 4  # static steps before the first deformed one
EXTENT = 0.2  # scene extent (scales the position learning rate only)
ADAMW_EPS = 1e-8
LR_RTOL = 1e-4  # float32 round-off of one AdamW update recomputed from its moments
NO_FLAGS = {
    "hair": np.bool_(False),
    "erode": np.bool_(False),
    "late": np.bool_(False),
    "final": np.bool_(False),
}


def _frame() -> dict:
    """One frame: a camera 0.95 in front of the box of initial points, a mouth in the middle."""
    rng = np.random.default_rng(0)
    view = np.eye(4, dtype=np.float32)
    view[2, 3] = 0.95
    mouth = np.zeros((S, S), bool)
    mouth[30:40, 22:42] = True
    return {
        "image": rng.integers(0, 255, (S, S, 3)).astype(np.uint8),
        "viewmat": view,
        "K": np.asarray([[153.6, 0, 32], [0, 153.6, 32], [0, 0, 1]], np.float32),
        "aud": rng.standard_normal((8, 16, 32)).astype(np.float32),
        "au_exp": np.zeros(6, np.float32),
        "head_mask": np.ones((S, S), bool),
        "mouth_mask": mouth,
        "teeth_mask": np.zeros((S, S), bool),
        "hair_mask": np.zeros((S, S), bool),
        "lips_rect": np.asarray([26, 44, 18, 46], np.int32),
        "background": np.zeros((S, S, 3), np.uint8),
        "f_exp": rng.standard_normal(64).astype(np.float32),
        "f_tone": rng.standard_normal(64).astype(np.float32),
        "f_emo": rng.standard_normal(128).astype(np.float32),
    }


def _random_like(tree, seed: int, scale: float = 1.0):
    """Normal values of the leaves' shapes (NumPy: no per-shape compilation)."""
    rng = np.random.default_rng(seed)
    return jax.tree.map(
        lambda x: jnp.asarray(scale * rng.standard_normal(x.shape), jnp.float32), tree
    )


def _mouth_branch(cfg):
    """A mouth branch as `init_branch` builds it (its Gaussians, optimisers and state), with random
    network weights of the real shapes: the network's eager init takes ~30 s on 2 shared cores,
    its shapes (`jax.eval_shape`) under a second, and the update does not care about the values."""
    b, g = cfg.train.mouth, cfg.model.gaussians.mouth
    gaussians = init_gaussians(
        jax.random.PRNGKey(1),
        g.capacity,
        num_points=g.init_num,
        box=g.init_box,
        sh_degree=g.sh_degree,
        init_opacity=g.init_opacity,
    )
    net = build_network(cfg.model, "mouth")
    shapes = jax.eval_shape(
        functools.partial(net.init, mode="eval"),
        jax.random.PRNGKey(0),
        gaussians.means,
        dummy_inputs(cfg.model),
    )["params"]
    params = _random_like(shapes, 3, scale=0.1)
    g_tx = gaussian_optimizer(b, EXTENT, gaussians.sh.shape[1], part="mouth")
    n_tx = network_optimizer(b, params)
    state = BranchState(
        gaussians=gaussians,
        net=params,
        g_opt=g_tx.init(trainable(gaussians)),
        n_opt=n_tx.init(params),
        stats=init_grad_stats(g.capacity),
        step=jnp.zeros((), jnp.int32),
        key=jax.random.PRNGKey(2),
    )
    return state, g_tx, n_tx


@pytest.fixture(scope="module")
def mouth():
    cfg = get_config("tiny")
    state, g_tx, n_tx = _mouth_branch(cfg)
    g_grad = _random_like(trainable(state.gaussians), 1)
    n_grad = _random_like(state.net, 2)

    @functools.partial(jax.jit, static_argnums=1)
    def step(s, deform: bool, final):
        return updated_state(s, g_grad, n_grad, g_tx, n_tx, deform, final)

    s = state
    for _ in range(WARMUP):
        s = step(s, False, np.bool_(False))
    return {"cfg": cfg, "init": state, "warm": s, "step": step}


def _adam(opt_state):
    return [
        x
        for x in jax.tree.leaves(opt_state, is_leaf=lambda x: isinstance(x, optax.ScaleByAdamState))
        if isinstance(x, optax.ScaleByAdamState)
    ]


def _schedule_counts(opt_state):
    kind = optax.ScaleByScheduleState
    return [
        int(x.count)
        for x in jax.tree.leaves(opt_state, is_leaf=lambda x: isinstance(x, kind))
        if isinstance(x, kind)
    ]


def _equal(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _paths(tree):
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {"/".join(str(getattr(k, "key", k)) for k in p): np.asarray(x) for p, x in flat}


def test_warmup_advances_only_the_network_schedule(mouth):
    init, warm = mouth["init"], mouth["warm"]
    _equal(warm.net, init.net)
    assert set(_schedule_counts(warm.n_opt)) == {WARMUP}
    for a, b in zip(_adam(warm.n_opt), _adam(init.n_opt), strict=True):
        assert int(a.count) == 0
        _equal((a.mu, a.nu), (b.mu, b.nu))


def test_first_deformed_step_uses_the_rate_of_its_iteration(mouth):
    """After WARMUP static steps the AdamW update of every network weight is −lr·f(WARMUP)·
    (m̂/(√v̂ + eps) + wd·p), recomputed from the moments the step left (f(0) would be 5 % off)."""
    b, warm = mouth["cfg"].train.mouth, mouth["warm"]
    new = mouth["step"](warm, True, np.bool_(False))
    factor = float(motion_factor(b.lr_select_iter, b.lr_bg_iter)(WARMUP))
    assert abs(factor - 1.0) > 0.05
    base = {
        "grid": b.lr_grid,
        "audio_att": b.lr_audio_att,
        "audio_net": b.lr_audio_net,
        "net": b.lr_net,
    }
    old, now = _paths(warm.net), _paths(new.net)
    moments = {}
    for adam in _adam(new.n_opt):
        assert int(adam.count) == 1
        moments.update({p: (mu, _paths(adam.nu)[p]) for p, mu in _paths(adam.mu).items()})
    assert set(moments) == set(old)
    for path, (mu, nu) in moments.items():
        group = network_group(path)
        wd = AUDIO_ATT_WEIGHT_DECAY if group == "audio_att" else 0.01
        lr = base[group] * factor
        adam_dir = (mu / 0.1) / (np.sqrt(nu / 0.01) + ADAMW_EPS)  # bias-corrected, count 1
        want = old[path] - lr * (adam_dir + wd * old[path])
        np.testing.assert_allclose(now[path], want, rtol=LR_RTOL, atol=LR_RTOL * lr, err_msg=path)


def test_final_phase_freezes_motion_and_geometry_and_trains_colours(mouth):
    warm, step = mouth["warm"], mouth["step"]
    before = step(warm, True, np.bool_(False))  # a deformed step: moments to keep
    after = step(before, True, np.bool_(True))
    _equal(after.net, before.net)
    for a, b in zip(_adam(after.n_opt), _adam(before.n_opt), strict=True):
        assert int(a.count) == int(b.count)
        _equal((a.mu, a.nu), (b.mu, b.nu))
    assert set(_schedule_counts(after.n_opt)) == {WARMUP + 2}
    for name in FINAL_FROZEN:
        now, then = (np.asarray(getattr(s.gaussians, name)) for s in (after, before))
        np.testing.assert_array_equal(now, then, err_msg=name)
        for a, b in zip(_adam(after.g_opt), _adam(before.g_opt)):
            np.testing.assert_array_equal(np.asarray(a.mu[name]), np.asarray(b.mu[name]))
    sh_moved = np.abs(np.asarray(after.gaussians.sh) - np.asarray(before.gaussians.sh))
    assert sh_moved.max() > 1e-4  # the colours train
    # the same step without the flag moves the geometry (the freeze is the flag's doing)
    free = step(before, True, np.bool_(False))
    assert np.abs(np.asarray(free.gaussians.means - before.gaussians.means)).max() > 0


def test_final_phase_trains_over_black_and_the_loop_sets_it_for_the_mouth_only():
    cfg = get_config("tiny")
    b = cfg.train.mouth
    assert [bool(flags(b, "mouth", it)["final"]) for it in (b.final_from - 1, b.final_from)] == [
        False,
        True,
    ]
    assert not any(bool(flags(cfg.train.face, "face", it)["final"]) for it in range(30))
    frame = {k: jnp.asarray(v) for k, v in _frame().items()}
    frame["mouth_mask"] = jnp.zeros((S, S), bool)  # nothing of the mouth: the target is all bg
    r = {"rgb": jnp.zeros((S, S, 3)), "alpha": jnp.zeros((S, S))}
    final = dict(NO_FLAGS, final=jnp.asarray(True))
    black, _ = mouth_loss(cfg, r, frame, final, Variant(False, "eval"), None)
    green, _ = mouth_loss(cfg, r, frame, NO_FLAGS, Variant(False, "eval"), None)
    assert float(black) == pytest.approx(0.0, abs=1e-6) and float(green) > 0.3


def test_patch_sizes_larger_than_the_frames_name_the_field():
    cfg = get_config("tiny")
    cfg.train.patch_sizes_mouth = (32, 80)  # 80 px patches on the 64² frame
    frame = {k: jnp.asarray(v) for k, v in _frame().items()}
    r = {"rgb": jnp.zeros((S, S, 3)), "alpha": jnp.zeros((S, S))}
    late = dict(NO_FLAGS, late=jnp.asarray(True))
    with pytest.raises(ValueError, match=r"train\.patch_sizes_mouth = \(32, 80\).*64×64"):
        mouth_loss(cfg, r, frame, late, Variant(True, "eval"), jax.random.PRNGKey(0))
