"""VideoWriter / probe / read_frames round trips through imageio-ffmpeg's ffmpeg."""

from __future__ import annotations

import os
import stat
import wave

import numpy as np
import pytest

from ua3dtalk_jax.data import video as V

FPS = 25
H, W = 48, 64
SR = 16000
# Mean |decoded − written| on 0..255 for the moving gradient: measured 1.7 (libx264 CRF 18) and
# 1.4 (mpeg4 q 2); 8 still fails on a swapped channel order, a flipped frame or a chroma shift.
MAE_TOL = 8.0
# The audio is muxed whole; the AAC encoder may only pad the last frame of 1024 samples
# (measured exact to the sample), so a dropped or duplicated frame still fails.
AAC_FRAME_S = 1024 / SR


def _gradient(t: int, h: int = H, w: int = W) -> np.ndarray:
    """[h, w, 3] uint8: a diagonal gradient drifting 3 px per frame, channels distinct."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = (xx + 3 * t) / (w + 90) * 200 + yy / h * 50
    return np.stack([base, 255 - base, (base + 100) % 256 * 0.5 + 60], -1).astype(np.uint8)


def _sine(seconds: float) -> np.ndarray:
    return (0.5 * np.sin(2 * np.pi * 440 * np.arange(round(seconds * SR)) / SR)).astype(np.float32)


def _write(path, frames, **kw):
    with V.VideoWriter(path, fps=FPS, size=frames[0].shape[:2], **kw) as w:
        for f in frames:
            w.write(f)


def test_round_trip_with_audio_array(tmp_path):
    path = tmp_path / "clip.mp4"
    frames = [_gradient(t) for t in range(30)]
    _write(path, frames, audio=_sine(1.2), sample_rate=SR)
    info = V.probe(path)
    assert info["frames"] == 30
    assert info["fps"] == FPS
    assert (info["width"], info["height"]) == (W, H)
    expected = "h264" if "libx264" in V._encoders() else "mpeg4"
    assert info["video_codec"] == expected
    assert info["audio_codec"] == "aac" and info["audio_sample_rate"] == SR
    assert abs(info["audio_seconds"] - 1.2) <= AAC_FRAME_S
    decoded = V.read_frames(path)
    assert decoded.shape == (30, H, W, 3) and decoded.dtype == np.uint8
    mae = np.abs(decoded.astype(np.float32) - np.stack(frames).astype(np.float32)).mean()
    assert mae < MAE_TOL
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]


@pytest.mark.parametrize("audio_s", [0.6, 2.0])
def test_audio_is_muxed_whole_and_never_cuts_video(tmp_path, audio_s):
    """Shorter or longer audio (from a wav path) is kept as is; the video keeps every frame."""
    wav = tmp_path / "a.wav"
    V._write_wav(str(wav), _sine(audio_s), SR)
    with wave.open(str(wav)) as f:
        assert f.getnframes() == round(audio_s * SR)
    path = tmp_path / "clip.mp4"
    _write(path, [_gradient(t) for t in range(30)], audio=wav)
    info = V.probe(path)
    assert info["frames"] == 30
    assert abs(info["audio_seconds"] - audio_s) <= AAC_FRAME_S


def test_no_audio_and_float_frames(tmp_path):
    path = tmp_path / "silent.mp4"
    frames = [_gradient(t) for t in range(10)]
    _write(path, [f.astype(np.float32) / 255.0 for f in frames])
    info = V.probe(path)
    assert info["frames"] == 10
    assert info["audio_seconds"] is None and info["audio_codec"] is None
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~umask  # not mkstemp's 0600
    mae = np.abs(V.read_frames(path).astype(np.float32) - np.stack(frames)).mean()
    assert mae < MAE_TOL


def test_odd_size_keeps_exact_size_with_mpeg4(tmp_path):
    path = tmp_path / "odd.mp4"
    frames = [_gradient(t, 47, 63) for t in range(12)]
    _write(path, frames)
    info = V.probe(path)
    assert (info["width"], info["height"], info["frames"]) == (63, 47, 12)
    assert info["video_codec"] == "mpeg4"
    decoded = V.read_frames(path)
    assert decoded.shape == (12, 47, 63, 3)
    assert np.abs(decoded.astype(np.float32) - np.stack(frames)).mean() < MAE_TOL
    with pytest.raises(ValueError, match="even size"):
        V.VideoWriter(tmp_path / "x.mp4", fps=FPS, size=(47, 63), codec="libx264")


def test_exception_in_block_leaves_nothing(tmp_path):
    path = tmp_path / "clip.mp4"
    with pytest.raises(KeyError), V.VideoWriter(path, fps=FPS, size=(H, W), audio=_sine(1.0)) as w:
        for t in range(5):
            w.write(_gradient(t))
        raise KeyError("boom")
    assert list(tmp_path.iterdir()) == []
    assert not os.path.exists(w._tmp_wav)  # the array's temporary wav is gone too


def test_wrong_frame_names_shapes_and_leaves_nothing(tmp_path):
    path = tmp_path / "clip.mp4"
    with (
        pytest.raises(ValueError, match=r"\(48, 64, 3\).*\(64, 48, 3\)"),
        V.VideoWriter(path, fps=FPS, size=(H, W)) as w,
    ):
        w.write(_gradient(0))
        w.write(np.zeros((W, H, 3), np.uint8))
    with pytest.raises(ValueError, match="int32"), V.VideoWriter(path, fps=FPS, size=(H, W)) as w:
        w.write(np.zeros((H, W, 3), np.int32))
    assert list(tmp_path.iterdir()) == []


def test_bad_arguments(tmp_path):
    path = tmp_path / "clip.mp4"
    with pytest.raises(ValueError, match="fps"):
        V.VideoWriter(path, fps=0, size=(H, W))
    with pytest.raises(ValueError, match="size"):
        V.VideoWriter(path, fps=FPS, size=(0, W))
    with pytest.raises(FileNotFoundError, match="missing.wav"):
        V.VideoWriter(path, fps=FPS, size=(H, W), audio=tmp_path / "missing.wav")
    with pytest.raises(ValueError, match="codec"):
        V.VideoWriter(path, fps=FPS, size=(H, W), codec="vp9")
    assert list(tmp_path.iterdir()) == []


def test_ffmpeg_failure_reports_stderr_and_leaves_nothing(tmp_path):
    """An extension no muxer claims makes ffmpeg exit at once; its own message must surface."""
    with (
        pytest.raises(RuntimeError, match="ffmpeg stderr:(.|\n)*format"),
        V.VideoWriter(tmp_path / "clip.notaformat", fps=FPS, size=(H, W)) as w,
    ):
        for t in range(50):
            w.write(_gradient(t))
    assert list(tmp_path.iterdir()) == []


def test_close_without_frames_raises_and_leaves_nothing(tmp_path):
    with (
        pytest.raises(RuntimeError, match="no frames"),
        V.VideoWriter(tmp_path / "clip.mp4", fps=FPS, size=(H, W)),
    ):
        pass
    assert list(tmp_path.iterdir()) == []
