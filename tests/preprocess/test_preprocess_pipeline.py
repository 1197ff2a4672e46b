"""End to end on a moving astronaut video: crop, masks, plate, cameras, labels; resuming."""

import json
import os
from pathlib import Path

import numpy as np
import pytest

from tests.preprocess import media
from ua3dtalk_jax.data import Subject
from ua3dtalk_jax.preprocess import pipeline

N, SRC, SIZE, FPS = 75, 192, 128, 25


@pytest.fixture(scope="module")
def astro(tmp_path_factory):
    root = tmp_path_factory.mktemp("astro")
    path = media.write_video(
        str(root / "a.mp4"), media.astronaut_frames(N, SRC), FPS, media.tone(3)
    )
    mp = pytest.MonkeyPatch()
    mp.setattr(pipeline, "MIN_CHUNK", 30)  # two worker processes even for 75 frames
    try:
        out = pipeline.preprocess(
            path, str(root / "subj"), fps=FPS, size=SIZE, workers=2, progress=False
        )
    finally:
        mp.undo()
    return path, out


def test_subject_layout_and_content(astro):
    _path, out = astro
    assert not os.path.exists(out + pipeline.WORK_SUFFIX)  # work files removed on success
    s = Subject.open(out)
    assert len(s) == N and s.size == (SIZE, SIZE) and s.fps == FPS
    meta = json.loads(Path(out, "subject.json").read_text())
    crop = meta["metadata"]["preprocess"]["crop"]
    # the face (x 0.34-0.53, y 0.13-0.35 of the photo, drifting ±4%) lies inside the window
    x, y, w, _ = np.array(crop) / SRC * 512
    assert x < 0.30 * 512 and x + w > 0.57 * 512 and y < 0.10 * 512 and w < 512 * 0.8
    f = s.frame(40)
    lms = f["landmarks"]
    assert f["face_mask"][int(lms[30, 1]), int(lms[30, 0])]  # nose tip on the face
    assert f["mouth_mask"].any() and f["head_mask"].sum() > f["mouth_mask"].sum()
    assert f["torso_mask"][-3, SIZE // 2] and f["exp"].shape == (64,)
    assert np.allclose(f["image"][f["head_mask"]], s.frame(40, ["image"])["image"][f["head_mask"]])
    np.testing.assert_allclose(np.linalg.det(f["viewmat"][:3, :3]), 1, atol=1e-4)
    # a flat photograph barely moving: the head's camera distance is nearly constant
    t = np.stack([s.viewmat(i)[:3, 3] for i in range(N)])
    assert t[:, 2].std() < 0.05 * t[:, 2].mean()
    assert meta["files"]["audio"] and meta["metadata"]["preprocess"]["interpolated"] == ""
    for name in ("exp_basis", "exp_mean", "exp_std", "canonical_shape", "eye_boxes"):
        assert os.path.isfile(os.path.join(out, name + ".npy"))


def test_rerun_skips_a_finished_subject(astro, monkeypatch):
    path, out = astro
    stamp = os.path.getmtime(os.path.join(out, "subject.json"))
    monkeypatch.setattr(pipeline, "track_range", None)  # any real work would now fail
    assert pipeline.preprocess(path, out, fps=FPS, size=SIZE, progress=False) == out
    assert os.path.getmtime(os.path.join(out, "subject.json")) == stamp
    with pytest.raises(FileExistsError, match="other inputs"):
        pipeline.preprocess(path, out, fps=30, size=SIZE, progress=False)


def test_resume_after_a_crash(tmp_path, monkeypatch):
    n = 50
    path = media.write_video(
        str(tmp_path / "a.mp4"), media.astronaut_frames(n, 128), FPS, media.tone(2)
    )
    out = str(tmp_path / "subj")

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("killed while writing")

    real_write = pipeline._write
    monkeypatch.setattr(pipeline, "_write", crash)
    with pytest.raises(KeyboardInterrupt):
        pipeline.preprocess(path, out, fps=FPS, size=96, workers=1, progress=False)
    work = out + pipeline.WORK_SUFFIX
    assert sorted(os.listdir(work)) == sorted(
        ["params.json", "probe.json", "crop.json", "track.npz", "fit.npz", "bc.png", "aud.wav",
         "aud_0.wav"]
    )  # fmt: skip
    with pytest.raises(FileNotFoundError):
        Subject.open(out)  # nothing there looks finished
    monkeypatch.setattr(pipeline, "_write", real_write)
    monkeypatch.setattr(pipeline, "track_range", None)  # the tracking step must be skipped
    pipeline.preprocess(path, out, fps=FPS, size=96, workers=1, progress=False)
    assert len(Subject.open(out)) == n
