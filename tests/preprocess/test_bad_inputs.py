"""Every bad input is refused with a message naming the problem, and leaves no subject behind."""

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile

from tests.preprocess import media
from ua3dtalk_jax.preprocess import pipeline, video

FPS = 25


def _refused(path, out, match, **kw):
    with pytest.raises(video.VideoError, match=match):
        pipeline.preprocess(path, out, fps=FPS, size=96, workers=1, progress=False, **kw)
    assert not os.path.exists(os.path.join(out, "subject.json"))
    assert not os.path.exists(out) or not os.listdir(out)


def test_unreadable_missing_and_audio_only(tmp_path):
    bad = tmp_path / "garbage.mp4"
    bad.write_bytes(os.urandom(4096))
    _refused(str(bad), str(tmp_path / "o1"), "unreadable")
    _refused(str(tmp_path / "nope.mp4"), str(tmp_path / "o2"), "no such file")
    wav = str(tmp_path / "a.wav")
    soundfile.write(wav, media.tone(2.0), 16000)
    audio_only = str(tmp_path / "audio.m4a")
    subprocess.run([video.ffmpeg_exe(), "-v", "error", "-i", wav, audio_only], check=True)
    _refused(audio_only, str(tmp_path / "o3"), "no video stream")


def test_no_audio_and_too_short(tmp_path):
    frames = media.astronaut_frames(60, 128)
    silent = media.write_video(str(tmp_path / "s.mp4"), frames, FPS)
    _refused(silent, str(tmp_path / "o1"), "no audio track")
    short = media.write_video(str(tmp_path / "t.mp4"), frames[:20], FPS, media.tone(0.8))
    _refused(short, str(tmp_path / "o2"), "20 frames .* fewer than the 50")


def test_too_many_faceless_frames_are_listed(tmp_path):
    frames = media.astronaut_frames(60, 128)
    frames[20:32] = 90  # 12 of 60 frames (20%) show no face
    frames[45] = 90
    path = media.write_video(str(tmp_path / "v.mp4"), frames, FPS, media.tone(2.4))
    _refused(path, str(tmp_path / "o"), r"no face in 13 of 60 frames .*frames 20-31, 45")
    # below the limit the gaps are interpolated and listed in the metadata instead
    out = pipeline.preprocess(path, str(tmp_path / "ok"), fps=FPS, size=96, workers=1,
                              progress=False, max_missing=0.25)  # fmt: skip
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
