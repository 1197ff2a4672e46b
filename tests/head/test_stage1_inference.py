"""The frozen stage 1 on new audio (`head.prior` / `head.emotion`): cached
programs over padded buckets give what the direct computation gives, for clips of any length."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ua3dtalk_jax.audio import emotion_inputs
from ua3dtalk_jax.configs import get_config
from ua3dtalk_jax.head import emotion as head_emotion
from ua3dtalk_jax.head import prior as head_prior
from ua3dtalk_jax.models.prior.lip_expert import mask_lower_half
from ua3dtalk_jax.models.prior.stylenet import sequence_apply
from ua3dtalk_jax.train.stage1 import emotion as emo

EXP = 8
# Padding changes nothing but the shapes XLA compiles for: equal up to float reassociation.
PAD_TOL = 1e-5


@pytest.fixture(scope="module")
def tiny():
    cfg = get_config("tiny").stage1
    models = head_prior.build_models(cfg, EXP)
    params = head_prior.init_params(models, cfg, jax.random.PRNGKey(0), EXP)
    return cfg, models, params


@pytest.mark.parametrize("n", [5, 13, 40])
def test_windowed_tone_equals_sequence_apply(tiny, n):
    cfg, models, params = tiny
    mel = jax.random.normal(jax.random.PRNGKey(n), (n, 80, 16))
    f_exp = jnp.zeros((n, 64))
    got = head_prior.tone_features(models, params, mel, f_exp, cfg.stylenet.seq_len)["f_tone"]
    style = lambda x: models["stylenet"].apply({"params": params["stylenet"]}, x)[0]
    want = jax.jit(lambda m: sequence_apply(style, m, cfg.stylenet.seq_len))(mel)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=PAD_TOL)


def test_lipwav_images_ignore_the_mel_padding(tiny):
    cfg, models, params = tiny
    s = cfg.data.face_size
    refs = jax.random.uniform(jax.random.PRNGKey(1), (3, s, s, 3))
    mel = jax.random.normal(jax.random.PRNGKey(2), (70, 80, 16))
    got = head_prior.lipwav_images(models["lip_expert"], params["lip_expert"], refs, mel)
    idx = np.arange(70)
    want = models["lip_expert"].apply(
        {"params": params["lip_expert"]},
        jnp.concatenate([mask_lower_half(refs[idx % 3]), refs[idx % 3]], -1),
        head_prior.generator_mel(mel, idx),
    )[0]
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=PAD_TOL)


@pytest.mark.slow
def test_emotion_features_ignore_the_stream_padding():
    e = get_config("tiny").stage1.emotion
    model = head_emotion.build_encoder(e, 8, EXP)
    params, _ = emo.init_encoder(model, e, jax.random.PRNGKey(3))
    wav = np.random.default_rng(0).normal(0, 0.1, 16000 * 3).astype(np.float32)
    stream = emotion_inputs.emotion_stream(wav, e)
    centres = emotion_inputs.frame_centres(40, 25.0)
    got = head_emotion.emotion_features(model, params, stream, centres, e)
    x = emotion_inputs.window_inputs(
        {k: jnp.asarray(v) for k, v in stream.items()}, jnp.asarray(centres), e
    )
    _, _, inter = model.apply({"params": params}, x["spec"], x["mfcc"], x["wav"])
    np.testing.assert_allclose(np.asarray(got["f_emo"]), np.asarray(inter["f_emo"]), atol=PAD_TOL)
