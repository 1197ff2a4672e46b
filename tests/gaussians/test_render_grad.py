"""End to end: deformation (tiny face MotionNetwork) → Gaussians → reference rasterizer → loss.

jit + grad gives finite gradients for every network and Gaussian parameter, the screen-space mean
gradient feeds the densification statistics, and a fixed seed reproduces everything bit for bit.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ua3dtalk_jax.configs.model import model_config
from ua3dtalk_jax.gaussians import (
    accumulate_grad_stats,
    activated,
    apply_deformation,
    init_gaussians,
    init_grad_stats,
    trainable,
)
from ua3dtalk_jax.models.motion import FrameInputs, MotionNetwork, motion_spec
from ua3dtalk_jax.render import rasterize

# the bit-for-bit check and the rasterizer's gradient with XLA's optimisations, as users run
pytestmark = pytest.mark.optimized

CFG = model_config("tiny")
W = H = 20
VIEWMAT = jnp.eye(4).at[2, 3].set(0.5)
K = jnp.asarray([[50.0, 0.0, W / 2], [0.0, 50.0, H / 2], [0.0, 0.0, 1.0]])
CAMPOS = jnp.asarray([0.0, 0.0, -0.5])
NET = MotionNetwork(motion_spec(CFG, "face"))
CAP = CFG.gaussians.face.capacity


def _inputs(key):
    k = jax.random.split(key, 5)
    return FrameInputs(
        aud=jax.random.normal(k[0], (8, 16, CFG.audio.in_dim)),
        au_exp=jax.random.uniform(k[1], (6,)),
        f_exp=jax.random.normal(k[2], (64,)),
        f_tone=jax.random.normal(k[3], (64,)),
        f_emo=jax.random.normal(k[4], (128,)),
    )


@jax.jit
def _setup(seed):
    k_g, k_n = jax.random.split(jax.random.PRNGKey(seed))
    gauss = init_gaussians(k_g, CAP, num_points=CFG.gaussians.face.init_num)
    params = NET.init(k_n, gauss.means, _inputs(jax.random.PRNGKey(1)))
    return gauss, params


@jax.jit
def _loss_and_grads(params, state, inputs, target, rng):
    def loss_fn(params, gauss_params, offset):
        gauss = state.replace(**gauss_params)
        deform, _ = NET.apply(params, gauss.means, inputs, mode="eval", rng=rng)
        means, quats, scales, opac, colors = activated(apply_deformation(gauss, deform), CAMPOS)
        out = rasterize(
            means,
            quats,
            scales,
            opac,
            colors,
            VIEWMAT,
            K,
            width=W,
            height=H,
            background=jnp.asarray([0.0, 1.0, 0.0]),
            backend="reference",
            means2d_offset=offset,
        )
        return jnp.mean(jnp.abs(out.rgb - target)), out.radii

    offset = jnp.zeros((CAP, 2))
    (loss, radii), grads = jax.value_and_grad(loss_fn, argnums=(0, 1, 2), has_aux=True)(
        params, trainable(state), offset
    )
    return loss, grads, radii


@pytest.fixture(scope="module")
def step():
    gauss, params = _setup(0)
    target = jax.random.uniform(jax.random.PRNGKey(2), (H, W, 3))
    inputs = _inputs(jax.random.PRNGKey(3))
    return (
        gauss,
        params,
        inputs,
        target,
        _loss_and_grads(params, gauss, inputs, target, jax.random.PRNGKey(4)),
    )


def test_gradients_are_finite_for_every_parameter(step):
    gauss, _, _, _, (loss, (g_net, g_gauss, g_offset), radii) = step
    assert np.isfinite(loss)
    flat = jax.tree_util.tree_flatten_with_path(g_net)[0]
    for path, g in flat:
        assert np.all(np.isfinite(g)), jax.tree_util.keystr(path)
    # Every top-level module of the network receives signal.
    for name, sub in g_net["params"].items():
        assert any(np.any(g != 0) for g in jax.tree.leaves(sub)), name
    for name in ("means", "scales_raw", "quats", "opacity_logits", "sh"):
        g = g_gauss[name]
        assert np.all(np.isfinite(g)) and np.any(g != 0), name
        # Free slots get exactly zero gradient.
        np.testing.assert_array_equal(np.asarray(g)[~np.asarray(gauss.active)], 0.0)
    visible = np.any(np.asarray(radii) > 0, -1)
    assert visible.sum() > 0 and np.all(np.isfinite(g_offset))
    stats = accumulate_grad_stats(init_grad_stats(CAP), g_offset, radii, width=W, height=H)
    np.testing.assert_array_equal(np.asarray(stats.count) > 0, visible)
    assert np.all(np.asarray(stats.grad_accum)[visible] >= 0) and stats.grad_accum.max() > 0


def test_fixed_seed_is_deterministic(step):
    gauss, params, inputs, target, (loss, grads, _) = step
    gauss2, params2 = _setup(0)
    jax.tree.map(np.testing.assert_array_equal, (gauss, params), (gauss2, params2))
    loss2, grads2, _ = _loss_and_grads(params2, gauss2, inputs, target, jax.random.PRNGKey(4))
    np.testing.assert_array_equal(loss, loss2)
    jax.tree.map(np.testing.assert_array_equal, grads, grads2)
    gauss3, _ = _setup(1)
    assert not np.array_equal(gauss.means, gauss3.means)
