"""Shapes, batch independence and options of the Prior Extraction modules (paper §2.1), tiny
preset sizes."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ua3dtalk_jax.configs.stage1 import stage1_config, wav2lip_audio_specs, wav2lip_face_specs
from ua3dtalk_jax.models.prior.expression_prior import ExpressionPrior
from ua3dtalk_jax.models.prior.fuse import FuseNet
from ua3dtalk_jax.models.prior.lip_expert import LipExpert, mask_lower_half
from ua3dtalk_jax.models.prior.stylenet import StyleNet, sequence_apply
from ua3dtalk_jax.models.prior.syncnet import (
    SyncNet,
    info_nce,
    roc_auc,
    stack_lower_halves,
    sync_bce,
)

CFG = stage1_config("tiny")
S = CFG.data.face_size


# The last example run alone against the same example inside the batch: the same per-example
# arithmetic, but XLA may tile the convolutions and matmuls of another batch size differently.
BATCH_TOL = 1e-5


def _det(model, *args, **kw):
    """init + apply; returns (output, params) after checking that every example's output depends
    on that example only (no statistic over the batch, e.g. a BatchNorm left in train mode or a
    norm over the wrong axis): the last example alone gives what it gives inside the batch."""
    params = model.init(jax.random.PRNGKey(0), *args, **kw)
    out = model.apply(params, *args, **kw)
    alone = model.apply(params, *(a[-1:] for a in args), **kw)
    jax.tree.map(
        lambda x, y: np.testing.assert_allclose(x[-1:], y, rtol=BATCH_TOL, atol=BATCH_TOL),
        out,
        alone,
    )
    return out, params


def test_the_batch_check_catches_a_statistic_over_the_batch():
    class Coupled(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Dense(2)(x - x.mean(0))  # BatchNorm-like: each example sees the others

    x = jax.random.normal(jax.random.PRNGKey(0), (3, 4))
    with pytest.raises(AssertionError):
        _det(Coupled(), x)
    _det(nn.Dense(2), x)


def test_syncnet_shapes_range_and_batch_independence():
    model = SyncNet(tuple(CFG.syncnet.face_specs), tuple(CFG.syncnet.audio_specs))
    mel = jax.random.normal(jax.random.PRNGKey(1), (3, 80, 16))
    faces = jax.random.uniform(jax.random.PRNGKey(2), (3, S // 2, S, 15))
    (sim, emb), _ = _det(model, mel, faces)
    assert sim.shape == (3,)
    assert emb["audio"].shape == emb["face"].shape == (3, CFG.syncnet.face_specs[-1][0])
    assert np.all(sim >= 0) and np.all(sim <= 1 + 1e-6)  # ReLU'd unit vectors
    np.testing.assert_allclose(np.linalg.norm(emb["audio"], axis=-1), 1.0, rtol=1e-5)


def test_centred_syncnet_embeddings_are_signed_unit_vectors():
    specs = tuple(CFG.syncnet.face_specs), tuple(CFG.syncnet.audio_specs)
    mel = jax.random.normal(jax.random.PRNGKey(1), (6, 80, 16))
    faces = jax.random.uniform(jax.random.PRNGKey(2), (6, S // 2, S, 15))
    (cos, emb), _ = _det(SyncNet(*specs, centre=True), mel, faces)
    for e in (emb["audio"], emb["face"]):
        np.testing.assert_allclose(np.mean(e, axis=-1), 0.0, atol=1e-6)  # channel mean removed
        np.testing.assert_allclose(np.linalg.norm(e, axis=-1), 1.0, rtol=1e-5)
        assert np.any(e < 0)
    np.testing.assert_allclose(cos, np.sum(emb["audio"] * emb["face"], -1), rtol=1e-5)
    (p, aux), params = _det(SyncNet(*specs, calibrated=True, centre=True), mel, faces)
    assert float(params["params"]["logit_bias"]) == 0.0  # cos 0 ↦ p ½ for signed embeddings
    np.testing.assert_allclose(p, jax.nn.sigmoid(10.0 * aux["cos"]), rtol=1e-5)


def test_info_nce_matches_its_formula_and_rewards_alignment():
    a = jax.random.normal(jax.random.PRNGKey(5), (8, 16))
    a = a / jnp.linalg.norm(a, axis=-1, keepdims=True)
    f = jnp.roll(a, 1, axis=0)
    z = 10.0 * np.asarray(a) @ np.asarray(f).T
    lsm = lambda x: x - np.log(np.exp(x).sum(-1, keepdims=True))
    want = -0.5 * (np.mean(np.diag(lsm(z))) + np.mean(np.diag(lsm(z.T))))
    assert float(info_nce(a, f, 10.0)) == pytest.approx(want, rel=1e-5)
    assert float(info_nce(a, a, 10.0)) < float(info_nce(a, f, 10.0))  # matched pairs score better
    assert float(info_nce(a, a, 10.0)) < np.log(8)  # below chance (ln B) when pairs are aligned


def test_paper_syncnet_is_wav2lip_sized():
    """The paper preset's encoders reduce Wav2Lip's 48×96×15 faces and 80×16 mels to 1×1×512."""
    model = SyncNet(
        wav2lip_face_specs((32, 64, 128, 256, 512)), wav2lip_audio_specs((32, 64, 128, 256, 512))
    )
    shapes = jax.eval_shape(
        lambda: model.init(
            jax.random.PRNGKey(0), jnp.zeros((1, 80, 16)), jnp.zeros((1, 48, 96, 15))
        )
    )
    face = jax.eval_shape(
        lambda p: model.apply(p, jnp.zeros((1, 48, 96, 15)), method=lambda m, x: m.face_encoder(x)),
        shapes,
    )
    audio = jax.eval_shape(
        lambda p: model.apply(p, jnp.zeros((1, 80, 16, 1)), method=lambda m, x: m.audio_encoder(x)),
        shapes,
    )
    assert face.shape == (1, 1, 1, 512) and audio.shape == (1, 1, 1, 512)


def test_sync_bce_and_auc():
    assert float(sync_bce(jnp.array([0.9, 0.1]), jnp.array([1.0, 0.0]))) == pytest.approx(
        -np.log(0.9), rel=1e-5
    )
    assert roc_auc(jnp.array([3.0, 4.0]), jnp.array([1.0, 2.0])) == 1.0
    assert roc_auc(jnp.array([1.0]), jnp.array([1.0])) == 0.5
    assert roc_auc(jnp.array([1.0, 3.0]), jnp.array([2.0])) == 0.5


def test_stack_lower_halves_layout():
    frames = jnp.arange(2 * 5 * 4 * 4 * 3, dtype=jnp.float32).reshape(2, 5, 4, 4, 3)
    out = stack_lower_halves(frames)
    assert out.shape == (2, 2, 4, 15)
    np.testing.assert_array_equal(out[1, 0, 3, 6:9], frames[1, 2, 2, 3])  # frame 2's channels


def test_lip_expert_shapes_and_mask():
    model = LipExpert(tuple(CFG.lip_expert.channels), tuple(CFG.lip_expert.audio_specs))
    faces = jax.random.uniform(jax.random.PRNGKey(3), (2, S, S, 6))
    (out, _inter), _ = _det(model, faces, jnp.zeros((2, 80, 16)))
    assert out.shape == (2, S, S, 3) and np.all((out >= 0) & (out <= 1))
    m = mask_lower_half(jnp.ones((S, S, 3)))
    assert float(m[: S // 2].min()) == 1.0 and float(m[S // 2 :].max()) == 0.0


@pytest.mark.parametrize("audio_norm", ["group", "none"])
def test_lip_expert_options_feed_the_audio_to_every_decoder_stage(audio_norm):
    ch, spec = tuple(CFG.lip_expert.channels), tuple(CFG.lip_expert.audio_specs)
    faces = jax.random.uniform(jax.random.PRNGKey(3), (2, S, S, 6))
    mel = jax.random.normal(jax.random.PRNGKey(4), (2, 80, 16))
    base = LipExpert(ch, spec, audio_norm=audio_norm)
    wide = LipExpert(ch, spec, audio_norm=audio_norm, audio_all_stages=True)
    (out, inter), p_wide = _det(wide, faces, mel)
    assert out.shape == (2, S, S, 3) and np.all((out >= 0) & (out <= 1))
    a_dim = inter["audio"].shape[-1]
    p_base = base.init(jax.random.PRNGKey(0), faces, mel)
    # every decoder stage's first conv takes a_dim more input channels; nothing else changes
    assert len(jax.tree.leaves(p_wide)) == len(jax.tree.leaves(p_base))
    n_extra = sum(x.size for x in jax.tree.leaves(p_wide)) - sum(
        x.size for x in jax.tree.leaves(p_base)
    )
    assert n_extra == a_dim * 9 * sum(ch)  # 3×3 kernels, one per decoder stage of width c
    norms = lambda p: [k for k in p["params"]["ConvStack_0"]["ConvBlock_0"]]
    assert ("GroupNorm_0" in norms(p_wide)) == (audio_norm == "group")
    louder, _ = wide.apply(p_wide, faces, mel + 2.0)
    assert float(jnp.abs(louder - out).max()) > 1e-4  # the generated face depends on the audio


def test_lip_expert_audio_projection_per_decoder_stage():
    ch, spec = tuple(CFG.lip_expert.channels), tuple(CFG.lip_expert.audio_specs)
    faces = jax.random.uniform(jax.random.PRNGKey(3), (2, S, S, 6))
    mel = jax.random.normal(jax.random.PRNGKey(4), (2, 80, 16))
    model = LipExpert(ch, spec, audio_norm="none", audio_all_stages=True, audio_proj=True)
    (out, inter), params = _det(model, faces, mel)
    assert out.shape == (2, S, S, 3)
    a_dim = inter["audio"].shape[-1]
    for i, c in enumerate(ch):  # one Dense a_dim → width of stage i, tiled over that stage
        assert params["params"][f"audio_proj_{i}"]["kernel"].shape == (a_dim, c)
    louder, _ = model.apply(params, faces, mel + 2.0)
    assert float(jnp.abs(louder - out).max()) > 1e-4


def test_expression_prior_shapes():
    model = ExpressionPrior(tuple(CFG.expr_prior.channels), exp_dim=11)
    (coeffs, inter), _ = _det(model, jnp.full((4, S, S, 3), 0.5))
    assert coeffs.shape == (4, 11) and inter["f_exp"].shape == (4, 64)


def test_stylenet_and_fuse_shapes():
    style = StyleNet(16, 2, (32, 24), 64, dropout=0.5)
    mel = jax.random.normal(jax.random.PRNGKey(4), (2, 7, 80, 16))
    (tone, inter), params = _det(style, mel)
    assert tone.shape == (2, 7, 64) and inter["lstm"].shape == (2, 7, 32)
    # dropout is active only in training, and then depends on the rng
    t1, _ = style.apply(params, mel, train=True, rngs={"dropout": jax.random.PRNGKey(0)})
    t2, _ = style.apply(params, mel, train=True, rngs={"dropout": jax.random.PRNGKey(1)})
    assert not np.allclose(t1, t2)
    fuse = FuseNet(32, 9)
    (gen, parts), _ = _det(fuse, tone[0], tone[1])
    assert gen.shape == (7, 9)
    np.testing.assert_allclose(gen, parts["content"] + parts["style"], rtol=1e-6)


def test_stylenet_out_scale_fixes_the_magnitude_of_f_tone():
    mel = 3.0 * jax.random.normal(jax.random.PRNGKey(5), (2, 7, 80, 16))
    (tone, _), params = _det(StyleNet(16, 1, (32,), 64, dropout=0.0, out_scale=0.1), mel)
    np.testing.assert_allclose(np.asarray(tone).mean(-1), 0.0, atol=1e-5)
    np.testing.assert_allclose(np.asarray(tone).std(-1), 0.1, rtol=1e-3)
    assert set(params["params"]) == {"BiLSTM_0", "Dense_0", "Dense_1"}  # no new parameters
    (plain, _), _ = _det(StyleNet(16, 1, (32,), 64, dropout=0.0), mel)
    assert np.asarray(plain).min() < 0 < np.asarray(plain).max()  # LeakyReLU output, unnormalised


def test_stylenet_frame_encoder_keeps_the_original_layer_names():
    """The per-frame encoder adds `frame_i` layers in front; every other parameter keeps its name
    and shape, so stage-1 checkpoints saved without it still load."""
    mel = jax.random.normal(jax.random.PRNGKey(4), (2, 7, 80, 16))
    plain = StyleNet(16, 1, (32, 24), 64, dropout=0.3)
    framed = StyleNet(16, 1, (32, 24), 64, dropout=0.3, frame_mlp=(40,), frame_dropout=0.3)
    (tone, inter), params = _det(framed, mel)
    assert tone.shape == (2, 7, 64) and inter["lstm"].shape == (2, 7, 32)
    p_plain = plain.init(jax.random.PRNGKey(0), mel)["params"]
    p_framed = params["params"]
    assert p_framed["frame_0"]["kernel"].shape == (80 * 16, 40)
    assert set(p_framed) - {"frame_0"} == set(p_plain)
    for name in ("Dense_0", "Dense_1", "Dense_2"):
        assert p_framed[name]["kernel"].shape == p_plain[name]["kernel"].shape
    # the LSTM now reads 40-wide frame codes instead of 1280-wide chunks
    lstm_in = lambda p: [x.shape for x in jax.tree.leaves(p["BiLSTM_0"])]
    assert lstm_in(p_framed) != lstm_in(p_plain)
    t1, _ = framed.apply(params, mel, train=True, rngs={"dropout": jax.random.PRNGKey(0)})
    t2, _ = framed.apply(params, mel, train=True, rngs={"dropout": jax.random.PRNGKey(1)})
    assert not np.allclose(t1, t2)


def test_sequence_apply_covers_every_frame_from_a_centred_window():
    def fn(x):  # (1, L, 80, 16) → (1, L, 2): [global frame id via a marker, position in window]
        return jnp.stack([x[0, :, 0, 0], jnp.arange(x.shape[1], dtype=jnp.float32)], -1)[None]

    n, window = 23, 8
    mel = jnp.zeros((n, 80, 16)).at[:, 0, 0].set(jnp.arange(n, dtype=jnp.float32))
    out = sequence_apply(fn, mel, window)
    np.testing.assert_array_equal(out[:, 0], np.arange(n))  # each frame came from itself
    inner = out[window // 2 : n - window // 2, 1]
    assert np.all(np.abs(inner - (window - 1) / 2) <= window / 4)  # interior frames near centre
    np.testing.assert_array_equal(sequence_apply(fn, mel[:5], window)[:, 1], np.arange(5))
