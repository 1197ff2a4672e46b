"""Slow stage-1 checks: SyncNet separation, emotion accuracy, and the whole stage 1 end to end.

Data: the procedural talking face of `test_stage1_train.py` (30 s), held-out = its val tail.
"""

import dataclasses
import shutil

import jax
import numpy as np
import pytest

from tests.train.test_stage1_train import make_data, procedural_subject
from ua3dtalk_jax.configs.stage1 import stage1_config
from ua3dtalk_jax.data import Subject
from ua3dtalk_jax.train import stage1_emotion as emo
from ua3dtalk_jax.train import stage1_prior as prior
from ua3dtalk_jax.train.features import checkpoint_digest, stage1_features
from ua3dtalk_jax.train.stage1 import load_stage1, save_stage1
from ua3dtalk_jax.train.stage1_loop import init_state, run_steps

MIN_AUC = 0.8  # the bar for in-sync vs 5-frame-shifted windows
CHANCE = 1.0 / 8
SYNC_STEPS = 150
EMO_STEPS = 60


@pytest.fixture(scope="module")
def data_cfg():
    cfg = stage1_config("tiny")
    return cfg, make_data(cfg, seconds=30.0)


@pytest.mark.slow
def test_syncnet_separates_shifted_windows(data_cfg):
    cfg, data = data_cfg
    models = prior.build_models(cfg, data.exp_dim)
    params = prior.init_params(models, cfg, jax.random.PRNGKey(0), data.exp_dim)
    arrays = {"crops": data.crops, "mel": data.mel}
    step, tx = prior.make_syncnet_step(cfg, models["syncnet"], data.n_train)
    st, h = run_steps(step, init_state(params["syncnet"], tx), arrays, jax.random.PRNGKey(1),
                      SYNC_STEPS)  # fmt: skip
    auc = prior.sync_auc(models["syncnet"], st.params, arrays, data.n_train, data.n, 5, 5)
    print(f"syncnet {SYNC_STEPS} steps {h['seconds']:.1f}s loss {h['loss'][-10:].mean():.3f} "
          f"held-out AUC(5-frame shift) {auc:.3f}")  # fmt: skip
    assert auc >= MIN_AUC


@pytest.mark.slow
def test_emotion_pretraining_beats_chance(data_cfg):
    cfg, data = data_cfg
    e = cfg.emotion
    model = emo.build_encoder(e, 8, data.exp_dim)
    params, _ = emo.init_encoder(model, e, jax.random.PRNGKey(0))
    corpus = emo.corpus_from_frames(data, np.arange(data.n_train), with_exp=False)
    step, tx = emo.make_emotion_step(e, model, finetune=False)
    st, h = run_steps(step, init_state(params, tx), corpus, jax.random.PRNGKey(1), EMO_STEPS)
    val = np.arange(data.n_train, data.n)
    out = emo.emotion_features(model, st.params, data.stream, np.asarray(data.centres)[val], e)
    acc = emo.accuracy(out["logits"], np.asarray(data.emotion)[val])
    print(f"emotion pretrain {EMO_STEPS} steps {h['seconds']:.1f}s held-out acc {acc:.3f}")
    assert acc >= 2 * CHANCE


@pytest.mark.slow
def test_stage1_end_to_end_checkpoint_and_features(tiny_trained, tmp_path):
    """Stage 1 of the shared tiny `--stage=all` run: its metrics, a save/load round trip, features
    of novel audio, and the subject feature cache with an emotion override."""
    metrics = tiny_trained["out"]["stage1"]["metrics"]
    assert metrics["emotion"]["alexnet_imagenet"]
    for part in ("syncnet", "lip_expert", "expr_prior", "stylenet_fuse"):
        assert np.isfinite(metrics[part]["loss_last"]), part
    model = load_stage1(tiny_trained["workdir"])
    save_stage1(model, str(tmp_path / "run"))
    restored = load_stage1(str(tmp_path / "run"))
    jax.tree.map(np.testing.assert_array_equal, restored.params, model.params)
    np.testing.assert_array_equal(restored.class_means, model.class_means)
    np.testing.assert_array_equal(restored.prior_std, model.prior_std)
    assert model.cfg.features.standardise and model.prior_mean.shape == (128,)
    # novel audio: another clip, no frames of it anywhere
    novel = procedural_subject(seconds=2.0, seed=5)["wav"]
    f = stage1_features(novel, restored, fps=25)
    assert f["f_exp"].shape == (50, 64) and f["f_tone"].shape == (50, 64)
    assert f["f_emo"].shape == (50, 128) and all(np.isfinite(v).all() for v in f.values())
    # subject path: cached in the subject dir, and an emotion override replaces f_emo-attn
    subj_dir = tmp_path / "subject"
    shutil.copytree(tiny_trained["subject"], subj_dir)
    (subj_dir / "stage1_features.npy").unlink(missing_ok=True)
    subj = Subject.open(str(subj_dir))
    a = stage1_features(subj, str(tmp_path / "run"))
    assert (subj_dir / "stage1_features.npy").exists()
    assert a["f_exp"].shape == (len(subj), 64)
    # f_exp and f_tone standardised with the train frames' statistics, × features.scale
    train = subj.split("train")
    for k in ("f_exp", "f_tone"):
        np.testing.assert_allclose(a[k][train].mean(0), 0.0, atol=1e-3)
        np.testing.assert_allclose(a[k][train].std(0), model.cfg.features.scale, rtol=1e-2)
    # the cache is keyed by the checkpoint's content: a copy reuses it, another stage 1 does not
    cache = subj_dir / "stage1_features.npy"
    written = cache.stat().st_mtime_ns
    shutil.copytree(tmp_path / "run", tmp_path / "copy")
    np.testing.assert_array_equal(
        stage1_features(subj, str(tmp_path / "copy"))["f_exp"], a["f_exp"]
    )
    assert cache.stat().st_mtime_ns == written
    other = dataclasses.replace(restored, class_means=restored.class_means + 1.0)
    save_stage1(other, str(tmp_path / "other"))
    assert checkpoint_digest(str(tmp_path / "other")) != checkpoint_digest(str(tmp_path / "run"))
    stage1_features(subj, str(tmp_path / "other"))
    assert cache.stat().st_mtime_ns != written
    b = stage1_features(subj, str(tmp_path / "run"), emotion="happy:1")
    np.testing.assert_array_equal(a["f_exp"], b["f_exp"])
    np.testing.assert_allclose(
        b["f_emo"], np.broadcast_to(model.class_means[5], b["f_emo"].shape), rtol=1e-5
    )
