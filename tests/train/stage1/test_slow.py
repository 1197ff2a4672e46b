"""Slow stage-1 checks: SyncNet separation, emotion accuracy, and the whole stage 1 end to end.

Data: SyncNet trains on a synthetic subject from the project's generator (the photo face driven by
espeak speech, `SYNC_SUBJECT`), held-out = its test sentences; the emotion check uses the
procedural talking face of `test_stage1_train.py` (30 s), held-out = its val tail.
"""

import dataclasses
import shutil
import time

import jax
import numpy as np
import pytest

from tests.train.stage1.test_train import make_data, procedural_subject
from ua3dtalk_jax.configs.stage1 import stage1_config
from ua3dtalk_jax.data import Subject
from ua3dtalk_jax.data.synthetic.generate import generate_subject
from ua3dtalk_jax.head import emotion as head_emotion
from ua3dtalk_jax.head import prior as head_prior
from ua3dtalk_jax.head.features import checkpoint_digest, stage1_features
from ua3dtalk_jax.head.stage1_model import load_stage1, save_stage1
from ua3dtalk_jax.head.workdir import Workdir
from ua3dtalk_jax.train.stage1 import emotion as emo
from ua3dtalk_jax.train.stage1 import prior
from ua3dtalk_jax.train.stage1.data import Stage1Data
from ua3dtalk_jax.train.stage1.loop import init_state, run_steps

# The bar for in-sync vs 5-frame-shifted windows, and where it holds for every init seed
# measured, not only the one used here: held-out AUC after SYNC_STEPS optimised steps with init
# seeds 0 / 1 / 2 (the init key below, PRNGKey(seed)) = 0.880 / 0.831 / 0.829 (2026-12-07). Longer
# training does not buy a wider margin for all three (300 + 200 more steps: 0.911 / 0.888 / 0.850).
MIN_AUC = 0.8
SHIFT = 5  # frames
CHANCE = 1.0 / 8
EMO_STEPS = 60
# SyncNet on the synthetic subject: 128² frames, 60 s of train sentences (with 30 s it over-fits:
# held-out AUC 0.78–0.85 over init seeds 0–3 at 350 steps), 8 s of test sentences; ~12 s to make.
SYNC_SUBJECT = {"size": 128, "seconds_train": 60.0, "seconds_test": 8.0, "seed": 0}
# The tiny SyncNet, fed the cpu preset's 48² crops cut at the landmark box (crop_scale 1): the tiny
# preset's 32² crops at 1.15 leave a mouth of a few pixels, and the net sat at chance (loss
# ln 2 + ln 32) for 150–300+ steps on some seeds (held-out AUC 0.83 / 0.58 / 0.70 at 300 steps with
# init seeds 0 / 1 / 2). With these crops, held-out AUC at 250 / 300 / 350 steps was 0.905 / 0.907 /
# 0.917 with the keys used here (init 0, steps 1), and 0.785 / 0.820 / 0.840 and 0.827 / 0.830 /
# 0.832 with init seeds 1 and 2, all compiled without optimisations; with them (as the test runs)
# see MIN_AUC; 0.12 s a step on 2 idle cores.
SYNC_DATA = {"face_size": 48, "crop_scale": 1.0}
SYNC_STEPS = 300


@pytest.fixture(scope="module")
def data_cfg():
    cfg = stage1_config("tiny")
    return cfg, make_data(cfg, seconds=30.0)


@pytest.mark.long
@pytest.mark.slow
@pytest.mark.optimized  # 300 steps of one program: optimised, a step takes about half the time
def test_syncnet_separates_shifted_windows(tmp_path_factory):
    """The issue's check on the project's synthetic subject: after a short training, the held-out
    in-sync windows score above the same windows paired with audio 5 frames away (AUC ≥ 0.8)."""
    t0 = time.perf_counter()
    path = generate_subject(str(tmp_path_factory.mktemp("syn") / "sync"), workers=1, **SYNC_SUBJECT)
    gen_s = time.perf_counter() - t0
    cfg = stage1_config("tiny").copy_and_resolve_references()
    cfg.data.update(SYNC_DATA)
    data = Stage1Data.from_subject(Subject.open(path), cfg)
    syncnet = head_prior.build_models(cfg, data.exp_dim)["syncnet"]
    # init_params' SyncNet alone (its key, its dummy shapes): the other four modules take ~9 s
    s, frames = cfg.data.face_size, cfg.data.sync_frames
    key = jax.random.split(jax.random.PRNGKey(0), 5)[0]
    params = syncnet.init(key, np.zeros((1, 80, 16)), np.zeros((1, s - s // 2, s, 3 * frames)))
    arrays = {"crops": data.crops, "mel": data.mel}
    step, tx = prior.make_syncnet_step(cfg, syncnet, data.n_train)
    st, h = run_steps(
        step, init_state(params["params"], tx), arrays, jax.random.PRNGKey(1), SYNC_STEPS
    )
    auc = prior.sync_auc(syncnet, st.params, arrays, data.n_train, data.n, frames, SHIFT)
    print(
        f"syncnet on the synthetic subject ({data.n_train}+{data.n - data.n_train} frames, "
        f"generated in {gen_s:.1f}s): {SYNC_STEPS} steps {h['seconds']:.1f}s loss "
        f"{h['loss'][-10:].mean():.3f} held-out AUC({SHIFT}-frame shift) {auc:.3f}, "
        f"{time.perf_counter() - t0:.1f}s in all"
    )
    assert auc >= MIN_AUC


@pytest.mark.slow
def test_emotion_pretraining_beats_chance(data_cfg):
    cfg, data = data_cfg
    e = cfg.emotion
    model = head_emotion.build_encoder(e, 8, data.exp_dim)
    params, _ = emo.init_encoder(model, e, jax.random.PRNGKey(0))
    corpus = emo.corpus_from_frames(data, np.arange(data.n_train), with_exp=False)
    step, tx = emo.make_emotion_step(e, model, finetune=False)
    st, h = run_steps(step, init_state(params, tx), corpus, jax.random.PRNGKey(1), EMO_STEPS)
    val = np.arange(data.n_train, data.n)
    out = head_emotion.emotion_features(
        model, st.params, data.stream, np.asarray(data.centres)[val], e
    )
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
    model = Workdir(tiny_trained["workdir"]).load_stage1()
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
