"""`stage1.features.source=subject`: stage 2's f_exp, f_tone, f_emo from UA-3DTalk's precomputed
.pth extras in the subject folder instead of this project's stage 1 (the CLI run without a stage 1
is in test_talkinggaussian_subject.py)."""

import numpy as np
import pytest

from tests.data import tg_layout
from ua3dtalk_jax.configs import get_config
from ua3dtalk_jax.data import Subject
from ua3dtalk_jax.eval.evaluation import HeldoutFrames, sync_own
from ua3dtalk_jax.head.features import feature_source
from ua3dtalk_jax.head.workdir import Stage1Missing, Workdir

N = 12  # 10 train, 2 val
SCALE = 0.3


@pytest.fixture(scope="module")
def ua_subject(tmp_path_factory):
    root = tmp_path_factory.mktemp("ua")
    tg_layout.write_tg_subject(str(root), N, aud_ds=False)
    return root, tg_layout.write_ua_extras(str(root), N)


def _cfg(preset="tiny", source="subject"):
    cfg = get_config(preset)
    cfg.stage1.features.source = source
    return cfg


def test_features_are_the_extras_standardised_on_the_train_rows(ua_subject, tmp_path):
    root, want = ua_subject
    subject = Subject.open(str(root))
    cfg = _cfg()
    assert cfg.stage1.features.standardise and cfg.stage1.features.scale == SCALE
    got = Workdir(str(tmp_path / "no_stage1")).stage1_features(subject, cfg)  # no checkpoint needed
    train = int(N * 10 / 11)
    for k in ("f_exp", "f_tone"):
        mu, sd = want[k][:train].mean(0), want[k][:train].std(0)
        np.testing.assert_allclose(got[k], (want[k] - mu) / sd * SCALE, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(got[k][:train].mean(0), 0.0, atol=1e-5)
        np.testing.assert_allclose(got[k][:train].std(0), SCALE, rtol=1e-4)
    np.testing.assert_array_equal(got["f_emo"], want["f_emo"])  # passed on as it is
    raw = Workdir(str(tmp_path)).stage1_features(subject, _cfg("paper"))  # the paper preset: as is
    for k in want:
        assert raw[k].dtype == np.float32 and raw[k].shape == want[k].shape
        np.testing.assert_array_equal(raw[k], want[k])


def test_the_default_source_still_needs_stage_1(ua_subject, tmp_path):
    root, _ = ua_subject
    subject = Subject.open(str(root))
    assert feature_source(get_config("cpu").stage1.features) == feature_source(None) == "stage1"
    with pytest.raises(Stage1Missing, match="--stage=1"):
        Workdir(str(tmp_path)).stage1_features(subject, get_config("tiny"))


def test_bad_source_missing_extras_and_emotion_override_are_refused(ua_subject, tmp_path):
    root, _ = ua_subject
    with pytest.raises(ValueError, match=r"stage1.features.source='ua'.*stage1, subject"):
        feature_source(_cfg(source="ua").stage1.features)
    subject = Subject.open(str(root))
    with pytest.raises(ValueError, match="emotion override needs stage 1"):
        Workdir(str(tmp_path)).stage1_features(subject, _cfg(), emotion="happy")
    bare = tmp_path / "bare"
    tg_layout.write_tg_subject(str(bare), N, aud_ds=False)
    with pytest.raises(
        FileNotFoundError,
        match=r"bare: .*missing train_auds_exp\.pth, "
        r"val_auds_exp\.pth, .*mser_emotion_val\.pth",
    ):
        Workdir(str(tmp_path)).stage1_features(Subject.open(str(bare)), _cfg())
    tg_layout.write_ua_extras(str(bare), N)
    for f in ("mser_emotion_train.pth", "mser_emotion_val.pth"):
        (bare / f).unlink()
    with pytest.raises(
        FileNotFoundError,
        match=r"missing mser_emotion_train\.pth, "
        r"mser_emotion_val\.pth \(or train stage 1",
    ):
        Workdir(str(tmp_path)).stage1_features(Subject.open(str(bare)), _cfg())


def test_own_sync_score_is_not_available_without_a_stage_1(ua_subject, tmp_path):
    root, _ = ua_subject
    frames = np.zeros((5, 8, 8, 3), np.uint8)
    fr = HeldoutFrames(
        np.arange(5), frames, frames, np.ones((5, 68, 2), np.float32), [""] * 5, {}, 25.0
    )
    notes = []
    out = sync_own(fr, Subject.open(str(root)), str(tmp_path), notes)
    assert out == {"rendered": None, "real": None}
    assert notes and "no stage-1 SyncNet" in notes[0]


def test_the_ablation_study_trains_no_shared_stage_1(ua_subject, tmp_path):
    from ua3dtalk_jax.eval.ablation import shared_stage1
    from ua3dtalk_jax.train import run

    root, _ = ua_subject
    logs = []
    assert shared_stage1(run.train, _cfg(), str(root), str(tmp_path), None, logs.append) is None
    assert logs == ["ablation: no stage 1 (stage1.features.source=subject)"]
    assert not list(tmp_path.iterdir())
