"""Decoding, frame-rate conversion (constant and variable), audio extraction and crop geometry."""

import os
import subprocess

import numpy as np
import pytest
import soundfile

from tests.preprocess import media
from ua3dtalk_jax import ffmpeg
from ua3dtalk_jax.preprocess import video


def _counter_frames(n, size=32):
    """Frame k is a flat grey of level 8·k (mod 256): the decoded level says which input it was."""
    return np.stack([np.full((size, size, 3), (8 * k) % 256, np.uint8) for k in range(n)])


# x264 at crf 12 keeps a flat grey within a couple of levels; neighbouring inputs differ by 8.
LEVEL_TOL = 3


def test_probe_and_resample_constant_rate(tmp_path):
    path = media.write_video(str(tmp_path / "v.mp4"), _counter_frames(30), 30, media.tone(1.0))
    meta = video.probe(path)
    assert (meta["width"], meta["height"], meta["has_audio"]) == (32, 32, True)
    assert meta["fps"] == pytest.approx(30)
    frames = list(video.read_frames(path, fps=15, size=16))
    assert len(frames) == 15 and frames[0].shape == (16, 16, 3)
    levels = np.array([f.mean() for f in frames])
    np.testing.assert_allclose(levels, 16 * np.arange(15), atol=LEVEL_TOL)  # every other input
    sub = list(video.read_frames(path, fps=15, size=16, start=5, stop=9))
    np.testing.assert_array_equal(np.stack(sub), np.stack(frames[5:9]))
    assert video.count_frames(path, fps=15) == 15


def test_variable_frame_rate_input(tmp_path):
    """Frames shown for uneven durations come out on a constant 25 fps grid, by display time."""
    src = media.write_video(str(tmp_path / "c.mp4"), _counter_frames(20), 20)
    durations = np.where(np.arange(20) % 2 == 0, 0.02, 0.08)  # VFR: 20 ms / 80 ms alternating
    listing = tmp_path / "list.txt"
    with open(listing, "w") as f:
        f.writelines(f"file '{tmp_path}/f{k}.png'\nduration {durations[k]}\n" for k in range(20))
    for k, frame in enumerate(video.read_frames(src, fps=20, size=32)):
        import cv2

        cv2.imwrite(str(tmp_path / f"f{k}.png"), frame)
    vfr = str(tmp_path / "vfr.mp4")
    cmd = [ffmpeg.exe(), "-v", "error", "-f", "concat", "-safe", "0", "-i", str(listing)]
    subprocess.run(cmd + ["-fps_mode", "vfr", "-c:v", "libx264", vfr], check=True)
    frames = list(video.read_frames(vfr, fps=25, size=32))
    starts = np.concatenate([[0], np.cumsum(durations)[:-1]])
    assert abs(len(frames) - round(durations.sum() * 25)) <= 1
    for j, frame in enumerate(frames[:-1]):
        # ffmpeg's fps filter rounds timestamps to the nearest output slot: the input on screen
        # somewhere within half an output period of j/25 is the right one
        lo, hi = (np.searchsorted(starts, j / 25 + d, side="right") - 1 for d in (-0.02, 0.02))
        levels = 8 * np.arange(lo, hi + 1)
        assert np.abs(frame.mean() - levels).min() <= LEVEL_TOL, (j, frame.mean(), levels)
    assert frames[-1].mean() == pytest.approx(8 * 19, abs=LEVEL_TOL)


def test_extract_audio_exact_length(tmp_path):
    path = media.write_video(str(tmp_path / "v.mp4"), _counter_frames(25), 25, media.tone(1.0))
    out = str(tmp_path / "a.wav")
    video.extract_audio(path, out, n_frames=30, fps=25)  # longer than the track: zero padded
    wav, rate = soundfile.read(out)
    assert rate == 16000 and wav.ndim == 1 and len(wav) == 30 * 640
    assert np.abs(wav[: 16000 - 2000]).max() > 0.1 and np.abs(wav[-2000:]).max() < 1e-3
    silent = media.write_video(str(tmp_path / "s.mp4"), _counter_frames(25), 25)
    with pytest.raises(video.VideoError, match="no audio track"):
        video.extract_audio(silent, str(tmp_path / "b.wav"), n_frames=25, fps=25)
    assert not os.path.exists(tmp_path / "b.wav")


def test_crop_parsing_and_geometry():
    assert video.parse_crop("auto") is None
    assert video.parse_crop("10,20,100,100") == (10, 20, 100, 100)
    with pytest.raises(ValueError, match="square"):
        video.parse_crop("0,0,100,80")
    with pytest.raises(ValueError, match="does not fit"):
        video.check_crop((50, 0, 100, 100), 120, 120)
    # a face moving between two boxes: one window holding both, slid inside a 640x360 frame
    boxes = np.array([[300, 40, 360, 110], [320, 60, 380, 130]])
    x, y, w, h = video.crop_from_face_boxes(boxes, 640, 360)
    assert w == h and 0 <= x and x + w <= 640 and 0 <= y and y + h <= 360
    assert x <= 300 and x + w >= 380 and y <= 40 and y + h >= 130
    # a frame smaller than the wanted window: the window shrinks to the frame
    x, y, w, h = video.crop_from_face_boxes(np.array([[10, 10, 60, 60]]), 80, 100)
    assert w == h == 80 and x == 0
