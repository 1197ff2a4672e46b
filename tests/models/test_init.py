"""`models.init.init_params` (the jitted init) gives exactly the eager `module.init`'s values, for
every module the project initialises: the stage-1 prior models and emotion encoder (marked long),
and the stage-2 motion networks (the face's in tests/train/test_paper_preset.py), so jitting the
init changed no trained result."""

import jax
import numpy as np
import pytest

from ua3dtalk_jax.configs import get_config
from ua3dtalk_jax.gaussians import init_gaussians
from ua3dtalk_jax.head import emotion as head_emotion
from ua3dtalk_jax.head import prior as head_prior
from ua3dtalk_jax.head.stage2_model import NET_INIT_POINTS, build_network, dummy_inputs
from ua3dtalk_jax.models.init import init_params
from ua3dtalk_jax.types import EMOTIONS

pytestmark = pytest.mark.optimized  # as users run: the init compiled with XLA's optimisations


def _same(eager, jitted):
    assert jax.tree.structure(eager) == jax.tree.structure(jitted)
    for a, b in zip(jax.tree.leaves(eager), jax.tree.leaves(jitted)):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.long  # ~50 s: the eager inits of every stage-1 module (the default suite's budget)
def test_stage1_modules():
    cfg = get_config("tiny").stage1
    models = head_prior.build_models(cfg, 64)
    key = jax.random.PRNGKey(3)
    jitted = head_prior.init_params(models, cfg, key, 64)
    s, t = cfg.data.face_size, cfg.data.sync_frames
    mel = np.zeros((1, 80, 16), np.float32)
    ks = jax.random.split(key, 5)
    eager = {
        "syncnet": models["syncnet"].init(ks[0], mel, np.zeros((1, s - s // 2, s, 3 * t))),
        "lip_expert": models["lip_expert"].init(ks[1], np.zeros((1, s, s, 6)), mel),
        "expr_prior": models["expr_prior"].init(ks[2], np.zeros((1, s, s, 3))),
        "stylenet": models["stylenet"].init(ks[3], np.zeros((1, 2, 80, 16))),
        "fuse": models["fuse"].init(ks[4], np.zeros((1, 64)), np.zeros((1, 64))),
    }
    _same({k: v["params"] for k, v in eager.items()}, jitted)
    enc = head_emotion.build_encoder(cfg.emotion, len(EMOTIONS), 64)
    inputs = head_emotion.example_inputs(cfg.emotion)
    _same(enc.init(key, *inputs)["params"], init_params(enc, key, *inputs))


@pytest.mark.parametrize("part", ["mouth"])  # the face's: test_paper_preset's buffer-size test
def test_stage2_motion_networks(part):
    cfg = get_config("tiny")
    net = build_network(cfg.model, part)
    xyz = init_gaussians(jax.random.PRNGKey(0), 64, num_points=64).means[:NET_INIT_POINTS]
    key = jax.random.PRNGKey(5)
    inputs = dummy_inputs(cfg.model)
    eager = net.init(key, xyz, inputs, mode="eval")["params"]
    _same(eager, init_params(net, key, xyz, inputs, mode="eval"))
