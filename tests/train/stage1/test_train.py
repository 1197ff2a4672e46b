"""Stage-1 training steps (paper §2.1 Eq. 4, §2.2 Eq. 5): each lowers its loss on a fixed batch.

Every step samples its batch from its key, so repeating one key repeats one batch: an overfit test
whose loss only falls if the gradients are right. The data is a small procedural talking face
(`procedural_subject`) whose mouth opens with the audio envelope and whose brows and voice pitch
follow the emotion label — enough structure for every stage-1 loss.
"""

import cv2
import jax
import numpy as np
import pytest

from ua3dtalk_jax.configs.io import saved_stage1
from ua3dtalk_jax.configs.stage1 import stage1_config
from ua3dtalk_jax.head import emotion as head_emotion
from ua3dtalk_jax.head import prior as head_prior
from ua3dtalk_jax.head.crops import face_crops
from ua3dtalk_jax.head.stage1_model import Stage1Model, prior_stats
from ua3dtalk_jax.train.stage1 import emotion as emo
from ua3dtalk_jax.train.stage1 import prior
from ua3dtalk_jax.train.stage1.data import Stage1Data
from ua3dtalk_jax.train.stage1.loop import init_state

OVERFIT_STEPS = 40  # the lip expert plateaus for ~20 steps before it drops
OVERFIT_FACTOR = 0.8  # final loss on the repeated batch ≤ this × the first


def procedural_subject(seconds=8.0, fps=25, size=64, seed=0, exp_dim=8):
    """Frames, landmarks, 16 kHz speech-like audio, f_gt-exp and 8-class labels (2 s blocks)."""
    rng = np.random.default_rng(seed)
    sr, n = 16000, int(seconds * fps)
    block = int(2 * fps)
    emo_f = np.repeat(rng.integers(0, 8, size=n // block + 1), block)[:n].astype(np.int32)
    t = np.arange(int(seconds * sr)) / sr
    env, pos = np.zeros_like(t), 0.05
    while pos < seconds:  # syllables: raised-sine envelopes of 0.1–0.3 s with pauses
        d, a = rng.uniform(0.1, 0.3), rng.uniform(0.4, 1.0)
        m = (t >= pos) & (t < pos + d)
        env[m] = a * np.sin(np.pi * (t[m] - pos) / d)
        pos += d + rng.uniform(0.05, 0.25)
    e_s = emo_f[np.minimum((t * fps).astype(int), n - 1)]
    phase = 2 * np.pi * np.cumsum(110.0 + 30.0 * e_s) / sr  # pitch per emotion
    wav = sum(np.sin(k * phase) / k for k in range(1, 6)) * env * (0.5 + 0.1 * (e_s % 4))
    wav = (0.3 * wav + 0.001 * rng.standard_normal(len(t))).astype(np.float32)
    opening = env[np.minimum((np.arange(n) * sr / fps).astype(int), len(env) - 1)]
    images = np.zeros((n, size, size, 3), np.uint8)
    lms, c = [], size / 2
    ang = np.linspace(0, 2 * np.pi, 68, endpoint=False)
    for i in range(n):
        im = np.full((size, size, 3), 40, np.uint8)
        cx = c + 2 * np.sin(i / 17)
        cv2.ellipse(
            im,
            (int(cx), int(c)),
            (int(size * 0.3), int(size * 0.4)),
            0,
            0,
            360,
            (200, 160, 140),
            -1,
        )
        brow = int(c - size * 0.18 - 2 * (emo_f[i] % 3))
        cv2.line(im, (int(cx - 10), brow), (int(cx - 3), brow), (60, 40, 30), 2)
        cv2.line(im, (int(cx + 3), brow), (int(cx + 10), brow), (60, 40, 30), 2)
        mouth = (int(size * 0.12), 1 + int(opening[i] * size * 0.12))
        cv2.ellipse(im, (int(cx), int(c + size * 0.2)), mouth, 0, 0, 360, (80, 20, 30), -1)
        images[i] = im
        lms.append(np.stack([cx + size * 0.3 * np.cos(ang), c + size * 0.4 * np.sin(ang)], 1))
    exp = np.zeros((n, exp_dim), np.float32)
    exp[:, 0], exp[:, 1] = opening, emo_f % 3
    exp[:, 2:] = 0.5 * np.eye(8)[emo_f][:, : exp_dim - 2]
    return {
        "images": images,
        "landmarks": np.asarray(lms, np.float32),
        "wav": wav,
        "fps": fps,
        "exp": exp,
        "emotion": emo_f,
        "n_train": int(n * 10 / 11),
    }


def make_data(cfg, **kw) -> Stage1Data:
    s = procedural_subject(**kw)
    crops = face_crops(s["images"], s["landmarks"], cfg.data)
    return Stage1Data.from_arrays(
        crops, s["wav"], s["fps"], s["exp"], s["emotion"], s["n_train"], cfg.emotion
    )


@pytest.fixture(scope="module")
def setup():
    cfg = stage1_config("tiny")
    data = make_data(cfg)
    models = head_prior.build_models(cfg, data.exp_dim)
    params = head_prior.init_params(models, cfg, jax.random.PRNGKey(0), data.exp_dim)
    arrays = {"crops": data.crops, "mel": data.mel, "exp": data.exp}
    return cfg, data, models, params, arrays


def overfit(step, state, data, n=OVERFIT_STEPS):
    key = jax.random.PRNGKey(7)
    losses = []
    for _ in range(n):
        state, m = step(state, data, key)
        losses.append(float(m["loss"]))
    assert np.all(np.isfinite(losses))
    assert losses[-1] <= OVERFIT_FACTOR * losses[0], losses
    return state, losses


def test_face_crops_follow_the_landmarks():
    cfg = stage1_config("tiny")
    s = procedural_subject(seconds=0.4)
    crops = face_crops(s["images"], s["landmarks"], cfg.data)
    assert crops.shape == (10, cfg.data.face_size, cfg.data.face_size, 3)
    centre = crops[:, cfg.data.face_size // 2, cfg.data.face_size // 2]
    np.testing.assert_array_equal(centre[0], [200, 160, 140])  # the face colour sits in the middle


@pytest.mark.optimized  # one training step as users compile it
def test_syncnet_step_overfits(setup):
    cfg, data, models, params, arrays = setup
    step, tx = prior.make_syncnet_step(cfg, models["syncnet"], data.n_train)
    overfit(step, init_state(params["syncnet"], tx), arrays)


def test_lip_expert_step_overfits(setup):
    cfg, data, models, params, arrays = setup
    step, tx = prior.make_lip_step(cfg, models["lip_expert"], models["syncnet"], data.n_train)
    overfit(step, init_state(params["lip_expert"], tx), dict(arrays, syncnet=params["syncnet"]))


def test_lip_expert_step_with_the_cpu_options_overfits(setup):
    cfg, data, _, params, arrays = setup
    cfg = cfg.copy_and_resolve_references()
    cfg.lip_expert.update(audio_norm="none", audio_all_stages=True, mouth_weight=10.0)
    models = head_prior.build_models(cfg, data.exp_dim)
    s = cfg.data.face_size
    lp = models["lip_expert"].init(
        jax.random.PRNGKey(1), np.zeros((1, s, s, 6)), np.zeros((1, 80, 16))
    )
    step, tx = prior.make_lip_step(cfg, models["lip_expert"], models["syncnet"], data.n_train)
    overfit(step, init_state(lp["params"], tx), dict(arrays, syncnet=params["syncnet"]))


def test_mouth_weight_map_and_generator_mel():
    w = np.asarray(prior.mouth_weight_map(40, 10.0))[..., 0]
    assert w.shape == (40, 40) and abs(w.mean() - 1.0) < 1e-6
    assert (
        w[30, 20] / w[0, 0] == pytest.approx(10.0) and w[30, 5] == w[0, 0]
    )  # box rows 20–31, cols 10–29
    assert w[19, 20] == w[0, 0] and w[20, 10] > w[0, 0] and w[32, 20] == w[0, 0]
    np.testing.assert_array_equal(prior.mouth_weight_map(8, 1.0), np.ones((8, 8, 1)))
    mel = np.arange(10)[:, None, None] * np.ones((10, 80, 16))
    got = np.asarray(head_prior.generator_mel(mel, np.array([0, 1, 2, 5, 9])))[:, 0, 0]
    np.testing.assert_array_equal(got, [0, 0, 0, 3, 7])  # frame i reads the chunk of i − 2, clamped


def test_expression_prior_step_overfits(setup):
    cfg, data, models, params, arrays = setup
    step, tx = prior.make_prior_step(cfg, models["expr_prior"], data.n_train)
    overfit(step, init_state(params["expr_prior"], tx), arrays)


def test_stylenet_fuse_step_overfits(setup):
    cfg, data, models, params, arrays = setup
    f_exp = jax.random.normal(jax.random.PRNGKey(1), (data.n, 64))
    step, tx = prior.make_style_step(cfg, models["stylenet"], models["fuse"], data.n_train)
    sp = {"stylenet": params["stylenet"], "fuse": params["fuse"]}
    overfit(step, init_state(sp, tx), dict(arrays, f_exp=f_exp))


@pytest.mark.optimized  # an exact equality, under XLA's optimisations
@pytest.mark.parametrize("exp_dropout", [0.0, 1.0])
def test_fuse_exp_dropout_hides_f_exp(setup, exp_dropout):
    """fuse.exp_dropout = 1 zeroes every sequence's f_exp before FuseNet: the loss no longer
    depends on f_exp; at 0 (the paper's Eq. 4) it does."""
    cfg, data, models, params, arrays = setup
    cfg = cfg.copy_and_resolve_references()
    cfg.fuse.exp_dropout = exp_dropout
    step, tx = prior.make_style_step(cfg, models["stylenet"], models["fuse"], data.n_train)
    state = init_state({"stylenet": params["stylenet"], "fuse": params["fuse"]}, tx)
    losses = []
    for seed in (1, 2):
        f_exp = jax.random.normal(jax.random.PRNGKey(seed), (data.n, 64))
        _, out = step(state, dict(arrays, f_exp=f_exp), jax.random.PRNGKey(0))
        losses.append(float(out["loss"]))
    assert (losses[0] == losses[1]) == (exp_dropout == 1.0), losses


def test_prior_features_standardised_with_train_statistics():
    rng = np.random.default_rng(0)
    f_exp, f_tone = 0.6 + 0.07 * rng.standard_normal((50, 64)), rng.standard_normal((50, 64))
    mean, std = prior_stats(f_exp, f_tone, 40)  # train frames: the first 40
    cfg = stage1_config("cpu")
    model = Stage1Model(cfg, {}, {}, None, None, None, None, mean, std)
    e, t = model.prior_out(f_exp, f_tone)
    for z in (e[:40], t[:40]):
        np.testing.assert_allclose(z.mean(0), 0.0, atol=1e-5)
        np.testing.assert_allclose(z.std(0), cfg.features.scale, rtol=1e-4)
    np.testing.assert_allclose(
        e[40:], (f_exp[40:] - mean[:64]) / std[:64] * cfg.features.scale, rtol=1e-5
    )
    # the paper preset, and checkpoints written before the statistics, pass them on unchanged
    for m in (
        Stage1Model(stage1_config("paper"), {}, {}, None, None, None, None, mean, std),
        Stage1Model(cfg, {}, {}, None, None, None, None),
    ):
        assert m.prior_out(f_exp, f_tone)[0] is f_exp


def test_stage1_configs_without_the_style_fields_build():
    """Stage-1 checkpoints saved before fuse.exp_dropout / stylenet.frame_* (config version 0)
    rebuild unchanged: the migration supplies what their absence meant."""
    d = stage1_config("tiny").to_dict()
    del d["stylenet"]["frame_mlp"], d["stylenet"]["frame_dropout"], d["fuse"]["exp_dropout"]
    cfg = saved_stage1(d, 0)
    assert cfg.fuse.exp_dropout == 0.0
    style = head_prior.build_models(cfg, 9)["stylenet"]
    assert style.frame_mlp == () and style.frame_dropout == 0.0


@pytest.mark.parametrize("finetune", [False, True])
def test_emotion_steps_overfit(setup, finetune):
    cfg, data, *_ = setup
    model = head_emotion.build_encoder(cfg.emotion, 8, data.exp_dim)
    params, imagenet = emo.init_encoder(model, cfg.emotion, jax.random.PRNGKey(2))
    assert imagenet
    corpus = emo.corpus_from_frames(data, np.arange(data.n_train), with_exp=finetune)
    step, tx = emo.make_emotion_step(cfg.emotion, model, finetune=finetune)
    overfit(step, init_state(params, tx), corpus)
