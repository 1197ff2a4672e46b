"""The notebook API on the tiny trained subject: one code path with training, uncertainty readout,
pose sources. The subject's own aud.wav fed through `audio_features` must give exactly the inputs
training used (Subject.frame's audio windows, the cached stage-1 features), and `render` the same
image as the training code's validation render."""

from __future__ import annotations

import json
import os

import cv2
import numpy as np
import pytest

from ua3dtalk_jax import api
from ua3dtalk_jax.data.cameras import c2w_gl_from_viewmat
from ua3dtalk_jax.head.features import KEYS
from ua3dtalk_jax.head.workdir import Workdir

# Same float32 programs on the same inputs; only XLA fusion differences remain.
FEATURE_ATOL = 1e-5
# The validation PNG is rounded to 8 bits; one level covers rounding of values a few ulp apart.
PNG_LEVELS_TOL = 1
# Fusion weights are precision shares: they sum to 1 over the views up to float32 rounding.
WEIGHT_SUM_ATOL = 1e-4


@pytest.fixture(scope="module")
def model(tiny_trained):
    return api.load(tiny_trained["workdir"], tiny_trained["subject"])


@pytest.fixture(scope="module")
def own(model):
    """`audio_features` of the subject's own aud.wav, and the subject's training-time features."""
    return api.audio_features(model, f"{model.subject.path}/aud.wav"), Workdir(
        model.workdir
    ).stage1_features(model.subject)


def test_audio_features_equal_training_inputs(model, own):
    feats, train = own
    s = model.subject
    n = min(len(feats["aud"]), len(s))
    assert feats["aud"].shape[1:] == (s.audio_window, s.audio_dim)
    pose = api.subject_pose(model, 0)
    for i in sorted({0, 1, 3, n // 2, n - 2, n - 1}):
        frame = api.frame_conditioning(model, feats, i, pose)
        np.testing.assert_allclose(frame["aud"], s.frame(i, keys=("aud",))["aud"], atol=0)
    # Stage-1 features: the last frames' mel chunks depend on the clip length; compare the rest.
    for k in ("f_exp", "f_tone", "f_emo"):
        np.testing.assert_allclose(feats[k][: n - 4], train[k][: n - 4], atol=FEATURE_ATOL)


def test_render_is_the_training_render(model, own):
    """`render` of the first held-out frame equals the fuse step's last validation render (the
    left third of workdir/val/fuse_<last>.png, written by training's `render_fused`)."""
    _, train = own
    s = model.subject
    i = int(s.split("val")[0])
    last = model.cfg.train.fuse.iterations
    png = cv2.imread(os.path.join(model.workdir, "val", f"fuse_{last:06d}.png"))
    assert png is not None, "training wrote no final fuse validation strip"
    h, w = s.size
    want = cv2.cvtColor(png, cv2.COLOR_BGR2RGB)[:, :w].astype(np.int32)
    feats = {**train, "aud": s.audio}
    frame = api.frame_conditioning(model, feats, i, api.subject_pose(model, i))
    ref = s.frame(i, keys=KEYS)
    for k in ("aud", "viewmat", "K", "au_exp", "background"):
        np.testing.assert_array_equal(frame[k], ref[k])
    got = np.asarray(api.render(model, frame))
    assert got.shape == (h, w, 3)
    diff = np.abs((np.clip(got, 0, 1) * 255).round().astype(np.int32) - want)
    assert diff.max() <= PNG_LEVELS_TOL, diff.max()
    assert got.std() > 0.02, "blank render"


def test_deform_and_uncertainty(model, own):
    feats, _ = own
    frame = api.frame_conditioning(model, feats, 5, api.subject_pose(model, 5))
    views = model.view_names("face")
    assert views == ("audio", "exp", "tone", "emotion")
    d = api.deform(model, "face", frame)
    n = d.gaussians.capacity
    for k in ("aleatoric", "epistemic", "view_weights"):
        assert d.aux[k].shape == (len(views), n)
    live = np.asarray(d.gaussians.active)
    w = np.asarray(d.aux["view_weights"])[:, live]
    np.testing.assert_allclose(w.sum(0), 1.0, atol=WEIGHT_SUM_ATOL)
    static = model.heads["face"][2]
    moved = np.abs(np.asarray(d.gaussians.means - static.means))[live]
    assert moved.max() > 0, "the deformation did nothing"
    u = api.read_uncertainty(model, "mouth", frame)
    m = int(np.sum(np.asarray(model.heads["mouth"][2].active)))
    assert u["views"] == ("audio", "exp", "tone")
    assert u["means"].shape == (m, 3) and u["aleatoric"].shape == (3, m)
    assert np.all(u["aleatoric"] > 0) and np.all(u["epistemic"] >= 0)
    assert np.all(np.isfinite(u["fused_var"]))


def test_emotion_override(model, own):
    feats, _ = own
    means = model.stage1.class_means
    happy = api.with_emotion(model, feats, "happy@1:1")
    np.testing.assert_allclose(
        happy["f_emo"], np.broadcast_to(means[5], happy["f_emo"].shape), atol=1e-6
    )
    half = api.with_emotion(model, feats, "happy@1:0.5+audio:0.5")
    np.testing.assert_allclose(
        half["f_emo"], 0.5 * happy["f_emo"] + 0.5 * feats["f_emo"], atol=1e-6
    )
    np.testing.assert_array_equal(api.with_emotion(model, happy, None)["f_emo"], feats["f_emo"])
    for k in ("aud", "f_exp", "f_tone", "f_emo_audio"):
        np.testing.assert_array_equal(happy[k], feats[k])


def test_pose_sources(model, tmp_path):
    s = model.subject
    val = s.split("val")
    assert [api.pingpong(t, 3) for t in range(7)] == [0, 1, 2, 1, 0, 1, 2]
    assert [api.pingpong(t, 1) for t in range(3)] == [0, 0, 0]
    sched = api.pose_schedule(s, "val")
    m = len(val)
    np.testing.assert_array_equal(sched(s, 2 * m - 2)["viewmat"], s.viewmat(int(val[0])))
    np.testing.assert_array_equal(sched(s, m)["viewmat"], s.viewmat(int(val[m - 2])))
    static = api.pose_schedule(s, "static")
    np.testing.assert_array_equal(static(s, 7)["background"], static(s, 0)["background"])
    mats = np.stack([s.viewmat(int(i)) for i in val[:4]])
    np.save(tmp_path / "p.npy", mats)
    doc = {"frames": [{"transform_matrix": c2w_gl_from_viewmat(v).tolist()} for v in mats]}
    (tmp_path / "p.json").write_text(json.dumps(doc))
    for name in ("p.npy", "p.json"):
        got = api.pose_schedule(s, str(tmp_path / name))
        np.testing.assert_allclose(got(s, 5)["viewmat"], mats[1], atol=1e-5)  # 0 1 2 3 2 [1]
    np.save(tmp_path / "bad.npy", np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match=r"bad.npy: shape \(2, 3, 4\)"):
        api.pose_schedule(s, str(tmp_path / "bad.npy"))
    skew = np.eye(4)[None].copy()
    skew[0, :3, :3] *= 2.0
    np.save(tmp_path / "skew.npy", skew)
    with pytest.raises(ValueError, match="skew.npy: .*not a rigid"):
        api.pose_schedule(s, str(tmp_path / "skew.npy"))
    (tmp_path / "bad.json").write_text('{"frames": [{"pose": 1}]}')
    with pytest.raises(ValueError, match="bad.json: not a transforms file"):
        api.pose_schedule(s, str(tmp_path / "bad.json"))
