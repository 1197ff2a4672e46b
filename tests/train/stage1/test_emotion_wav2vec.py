"""`stage1.emotion.wav2vec_weights` (paper §2.2, CA-MSER): a user's wav2vec 2.0 folder switches the
emotion encoder to the complete pretrained model, frozen, with CA-MSER's classifier on [s ‖ m ‖ f].
End to end on the tiny synthetic subject with the small fixture model (tests/fixtures/wav2vec2,
made by transformers); without weights the encoder computes what it computed before the switch."""

import json
from pathlib import Path

import jax
import numpy as np
import pytest

from ua3dtalk_jax.audio import emotion_inputs
from ua3dtalk_jax.configs.io import stage1_from_dict
from ua3dtalk_jax.configs.stage1 import stage1_config
from ua3dtalk_jax.head import emotion as head_emotion
from ua3dtalk_jax.models.emotion.wav2vec import load_wav2vec2
from ua3dtalk_jax.train.stage1 import emotion as emo
from ua3dtalk_jax.train.stage1.data import Stage1Data
from ua3dtalk_jax.train.stage1.driver import train_emotion
from ua3dtalk_jax.types import EMOTIONS

W2V = Path(__file__).resolve().parents[2] / "fixtures" / "wav2vec2" / "small_group"
EXP_DIM = 8
STEPS = 3  # pre-training and fine-tuning steps each: the switch is tested, not the training
# The scratch encoder (tiny preset, init key 3, the inputs of `_scratch_inputs`, dropout on), as
# computed before the wav2vec 2.0 switch (commit d9cf4cf): Σ f_emo and logits[0, :3].
SCRATCH_F_EMO_SUM = 25.033096
SCRATCH_LOGITS = (0.08924597, -0.23726822, 0.00189388)
SCRATCH_RTOL = 1e-5  # float32; the test suite compiles without XLA's optimisations


def wav2vec_cfg(path=str(W2V)):
    cfg = stage1_config("tiny").copy_and_resolve_references()
    e = cfg.emotion
    e.wav2vec_weights = path
    e.corpus = "subject"  # the subject's own labelled frames: no corpus to synthesise
    e.pretrain_steps = e.finetune_steps = STEPS
    return cfg


@pytest.fixture(scope="module")
def tiny_subject_data(tmp_path_factory):
    """Stage-1 data of the tiny synthetic subject (64², ~6 s; the generator's "tiny" preset)."""
    from ua3dtalk_jax.data import Subject
    from ua3dtalk_jax.data.synthetic.generate import generate_preset

    path = generate_preset(str(tmp_path_factory.mktemp("subject") / "tiny"), "tiny", seed=0)
    return Stage1Data.from_subject(Subject.open(path), stage1_config("tiny"))


@pytest.mark.slow  # the tiny subject is generated first (~20-40 s on 2 busy cores)
def test_emotion_distillation_with_a_pretrained_wav2vec_end_to_end(tiny_subject_data):
    data = tiny_subject_data
    cfg = wav2vec_cfg()
    lines = []
    model, params, means, m = train_emotion(data, cfg, jax.random.PRNGKey(0), log=lines.append)
    w2v, want = load_wav2vec2(str(W2V))
    assert model.wav2vec == w2v.config and m["wav2vec_pretrained"]
    assert any(line.startswith("emotion_finetune step 3/3") for line in lines), lines
    assert model.n_wav_frames == w2v.config.n_frames(emotion_inputs.window_samples(cfg.emotion))
    # frozen through pre-training and fine-tuning: bit for bit the folder's weights
    jax.tree.map(np.testing.assert_array_equal, params["wav2vec2"], want["params"])
    assert "wav_encoder" not in params and params["fusion_1"]["kernel"].shape == (3 * 128, 128)
    assert params["classifier"]["kernel"].shape == (128, len(EMOTIONS))
    assert np.isfinite(m["finetune"]["loss_last"]) and means.shape == (len(EMOTIONS), 128)
    centres = np.asarray(data.centres)[:5]
    out = head_emotion.emotion_features(model, params, data.stream, centres, cfg.emotion)
    assert out["f_emo"].shape == (5, 128) and np.all(np.isfinite(out["f_emo"]))
    # load_stage1 rebuilds the encoder from the checkpoint's JSON config: the same tree
    saved = stage1_from_dict(json.loads(json.dumps(cfg.to_dict())))
    again = head_emotion.build_encoder(saved.emotion, len(EMOTIONS), data.exp_dim)
    assert again == model
    x = emotion_inputs.window_inputs(data.stream, data.centres[:1], saved.emotion)
    shapes = jax.eval_shape(again.init, jax.random.PRNGKey(0), x["spec"], x["mfcc"], x["wav"])
    assert jax.tree.structure(shapes["params"]) == jax.tree.structure(params)


def test_the_optimiser_leaves_the_pretrained_wav2vec_untouched():
    cfg = wav2vec_cfg()
    model = head_emotion.build_encoder(cfg.emotion, 4, EXP_DIM)
    params = {name: {"w": np.ones(3, np.float32)} for name in ("wav2vec2", "classifier")}
    tx = emo.emotion_optimizer(cfg.emotion, model)
    grads = jax.tree.map(np.ones_like, params)
    updates, _ = tx.update(grads, tx.init(params), params)
    np.testing.assert_array_equal(updates["wav2vec2"]["w"], 0.0)
    assert float(np.abs(updates["classifier"]["w"]).min()) > 0
    plain = stage1_config("tiny").emotion
    assert head_emotion.build_encoder(plain, 4, EXP_DIM).wav2vec is None


def test_a_broken_wav2vec_folder_is_named(tmp_path):
    (tmp_path / "config.json").write_text((W2V / "config.json").read_text())
    cfg = wav2vec_cfg(str(tmp_path))
    model = head_emotion.build_encoder(cfg.emotion, 4, EXP_DIM)  # the config alone builds
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        emo.init_encoder(model, cfg.emotion, jax.random.PRNGKey(0))
    with pytest.raises(FileNotFoundError, match="/nowhere: no such wav2vec 2.0 folder"):
        head_emotion.build_encoder(wav2vec_cfg("/nowhere").emotion, 4, EXP_DIM)


def _scratch_inputs(e):
    k = jax.random.split(jax.random.PRNGKey(1), 3)
    wt = emotion_inputs.window_frames(e)
    return (
        jax.random.normal(k[0], (2, *e.image_hw, 3)),
        jax.random.normal(k[1], (2, -(-wt // e.mfcc_stride), 40)),
        jax.random.normal(k[2], (2, emotion_inputs.window_samples(e))),
        k[0],
    )


def test_without_weights_the_encoder_computes_what_it_did_before():
    e = stage1_config("tiny").emotion
    model = head_emotion.build_encoder(e, 8, 5)
    params, _ = emo.init_encoder(model, e, jax.random.PRNGKey(3))
    assert "wav_encoder" in params and "wav2vec2" not in params and "fusion_1" not in params
    spec, mfcc, wav, key = _scratch_inputs(e)
    logits, _, inter = model.apply(
        {"params": params}, spec, mfcc, wav, train=True, rngs={"dropout": key}
    )
    assert float(np.sum(inter["f_emo"])) == pytest.approx(SCRATCH_F_EMO_SUM, rel=SCRATCH_RTOL)
    np.testing.assert_allclose(logits[0, :3], SCRATCH_LOGITS, rtol=SCRATCH_RTOL, atol=1e-6)
