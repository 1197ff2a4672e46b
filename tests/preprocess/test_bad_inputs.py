"""Every bad input is refused with a message naming the problem, and leaves no subject behind."""

import os
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
import soundfile
from skimage import data

from tests.preprocess import media
from ua3dtalk_jax import ffmpeg
from ua3dtalk_jax.preprocess import pipeline, video

FPS = 25


def _refused(path, out, match, **kw):
    with pytest.raises(video.VideoError, match=match):
        pipeline.preprocess(path, out, fps=FPS, size=96, workers=1, progress=False, **kw)
    assert not os.path.exists(os.path.join(out, "subject.json"))
    assert not os.path.exists(out) or not os.listdir(out)
    assert not os.path.exists(out + pipeline.WORK_SUFFIX)  # refused: no steps kept to resume


def test_unreadable_missing_and_audio_only(tmp_path):
    bad = tmp_path / "garbage.mp4"
    bad.write_bytes(os.urandom(4096))
    _refused(str(bad), str(tmp_path / "o1"), "unreadable")
    _refused(str(tmp_path / "nope.mp4"), str(tmp_path / "o2"), "no such file")
    wav = str(tmp_path / "a.wav")
    soundfile.write(wav, media.tone(2.0), 16000)
    audio_only = str(tmp_path / "audio.m4a")
    subprocess.run([ffmpeg.exe(), "-v", "error", "-i", wav, audio_only], check=True)
    _refused(audio_only, str(tmp_path / "o3"), "no video stream")


def test_no_audio_and_too_short(tmp_path):
    frames = media.astronaut_frames(60, 128)
    silent = media.write_video(str(tmp_path / "s.mp4"), frames, FPS)
    _refused(silent, str(tmp_path / "o1"), "no audio track")
    short = media.write_video(str(tmp_path / "t.mp4"), frames[:20], FPS, media.tone(0.8))
    _refused(short, str(tmp_path / "o2"), "20 frames .* fewer than the 50")


def test_too_many_faceless_frames_are_listed(tmp_path):
    frames = media.astronaut_frames(60, media.ASTRONAUT_SIDE)
    frames[20:32] = 90  # 12 of 60 frames (20%) show no face
    frames[45] = 90
    path = media.write_video(str(tmp_path / "v.mp4"), frames, FPS, media.tone(2.4))
    _refused(path, str(tmp_path / "o"), r"no face in 13 of 60 frames .*frames 20-31, 45")
    # below the limit the gaps are interpolated and listed in the metadata instead
    out = pipeline.preprocess(
        path, str(tmp_path / "ok"), fps=FPS, size=96, workers=1, progress=False, max_missing=0.25
    )
    import json

    meta = json.loads(Path(out, "subject.json").read_text())["metadata"]["preprocess"]
    assert meta["interpolated"] == "20-31, 45"
    lms = np.load(os.path.join(out, "landmarks.npy"))
    assert np.isfinite(lms).all() and np.abs(lms[25] - lms[19]).max() < 20


def test_no_face_at_all(tmp_path):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (60, 64, 64, 3), dtype=np.uint8)
    path = media.write_video(str(tmp_path / "n.mp4"), frames, FPS, media.tone(2.4))
    _refused(path, str(tmp_path / "o"), "no face found")


def test_a_second_face_is_listed_and_the_largest_tracked(tmp_path):
    """A smaller copy of the face (a passer-by) in the corner for frames 10-29."""
    img, side, n = data.astronaut(), 192, 50
    frames = []
    for t in range(n):  # a 300 px window around the face at 192², drifting a little
        m = cv2.getRotationMatrix2D((222, 150), 0, side / 300)
        m[:, 2] += (side / 2 - 222 + 6 * np.sin(t / 8), side / 2 - 150)
        f = cv2.warpAffine(
            img, m, (side, side), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE
        )
        if 10 <= t < 30:
            f[:66, :66] = cv2.resize(f[20:130, 40:150], (66, 66), interpolation=cv2.INTER_AREA)
        frames.append(f)
    path = media.write_video(str(tmp_path / "two.mp4"), np.stack(frames), FPS, media.tone(2.0))
    out = pipeline.preprocess(
        path,
        str(tmp_path / "o"),
        fps=FPS,
        size=128,
        crop=(0, 0, side, side),
        workers=1,
        progress=False,
    )
    import json

    meta = json.loads(Path(out, "subject.json").read_text())["metadata"]["preprocess"]
    assert meta["multiple_faces"] == "10-29" and meta["interpolated"] == ""
    centre_x = np.load(os.path.join(out, "landmarks.npy"))[:, :, 0].mean(1)
    assert centre_x.min() > 45  # the large face (centre x ≈ 64 at 128²), not the corner one (≈ 22)
