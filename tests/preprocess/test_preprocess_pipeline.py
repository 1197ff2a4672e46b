"""End to end on a moving astronaut video: crop, masks, plate, cameras, labels; resuming, CLI."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.preprocess import media
from ua3dtalk_jax.data import Subject
from ua3dtalk_jax.data.writer import SubjectWriter
from ua3dtalk_jax.preprocess import pipeline, track

N, SRC, SIZE, FPS = 75, media.ASTRONAUT_SIDE, 128, 25
REPO = Path(__file__).resolve().parents[2]
# mean |frame − background| over the head, in 0-255 levels: a face pasted back over the plate it was
# cut from would give ~0; the photograph's face differs from the inpainted plate by far more
HEAD_VS_PLATE_MIN = 10.0


@pytest.fixture(scope="module")
def astro(tmp_path_factory):
    root = tmp_path_factory.mktemp("astro")
    path = media.write_video(
        str(root / "a.mp4"), media.astronaut_frames(N, SRC), FPS, media.tone(3)
    )
    mp = pytest.MonkeyPatch()
    mp.setattr(track, "MIN_CHUNK", 30)  # two worker processes even for 75 frames
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
    # the head is in the frame, not the background plate the masks were cut from
    head = f["head_mask"]
    head_vs_plate = np.abs(f["image"][head].astype(int) - f["background"][head].astype(int)).mean()
    assert head_vs_plate > HEAD_VS_PLATE_MIN, head_vs_plate
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
    monkeypatch.setattr(pipeline, "track_clips", None)  # any real work would now fail
    assert pipeline.preprocess(path, out, fps=FPS, size=SIZE, progress=False) == out
    assert os.path.getmtime(os.path.join(out, "subject.json")) == stamp
    with pytest.raises(FileExistsError, match="other inputs"):
        pipeline.preprocess(path, out, fps=30, size=SIZE, progress=False)


def test_resume_after_a_crash_through_the_cli(tmp_path, monkeypatch):
    """Killed half-way through writing frames; the same command line resumes at the write step.

    The clip is 2 s at 30 fps, resampled to 25 fps, with an explicit crop: the CLI's flags.
    """
    path = media.write_video(
        str(tmp_path / "a.mp4"), media.astronaut_frames(60, media.ASTRONAUT_SIDE), 30, media.tone(2)
    )
    out, crop = str(tmp_path / "subj"), (44, 0, 162, 162)
    real_add = SubjectWriter.add_frame

    def add_then_crash(self, *args, **kwargs):
        if len(self) == 10:
            raise KeyboardInterrupt("killed while writing")
        return real_add(self, *args, **kwargs)

    monkeypatch.setattr(SubjectWriter, "add_frame", add_then_crash)
    with pytest.raises(KeyboardInterrupt):
        pipeline.preprocess(path, out, fps=25, size=96, crop=crop, workers=1, progress=False)
    work = out + pipeline.WORK_SUFFIX
    assert sorted(os.listdir(work)) == sorted(
        [
            "params.json",
            "probe.json",
            "crop.json",
            "track.npz",
            "fit.npz",
            "bc.png",
            "aud.wav",
            "aud_0.wav",
        ]
    )
    assert os.path.isfile(os.path.join(out, "ori_imgs", "9.jpg"))  # frames were written ...
    with pytest.raises(ValueError, match="did not finish"):
        Subject.open(out)  # ... but nothing there looks finished
    flags = [f"--video={path}", f"--out={out}", "--fps=25", "--size=96", "--crop=44,0,162,162"]
    cmd = [sys.executable, "-m", "experiments.preprocess", *flags, "--workers=1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "write 1/1" in proc.stderr and "track 1/1" not in proc.stderr  # only the last step ran
    s = Subject.open(out)
    assert len(s) == 50 and s.fps == 25 and s.size == (96, 96) and not os.path.exists(work)
    meta = json.loads(Path(out, "subject.json").read_text())["metadata"]["preprocess"]
    assert meta["crop"] == list(crop) and not meta["auto_crop"]
    # bad input through the CLI: exit status 1 and the reason, no traceback, nothing written
    proc = subprocess.run(
        cmd[:3] + [f"--video={tmp_path}/none.mp4", f"--out={tmp_path}/o2"],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    assert proc.returncode == 1 and "none.mp4: no such file" in proc.stderr
    assert "Traceback" not in proc.stderr and not os.path.exists(tmp_path / "o2")
