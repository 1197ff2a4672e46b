"""The checks a clip passes before tracking: audio/video length policy, face size, upscaling.

The policy (checks.py): keep the frames the audio covers, cut the audio to them, one printed line
when more than a frame differs; refuse when the shorter covers less than half the longer.
"""

import os

import cv2
import numpy as np
import pytest
import soundfile

from tests.preprocess import media
from ua3dtalk_jax.preprocess import checks, pipeline, video

FPS = 25


@pytest.mark.parametrize(
    ("video_frames", "audio_s", "keep", "note"),
    [
        (100, 4.0, 100, None),  # equal
        (100, 4.03, 100, None),  # within a frame: rounding, silent
        (100, 3.97, 99, None),  # 99.25 frames of audio: the last frame goes, silently
        (100, 3.1, 78, "kept the first 3.12 s (78 frames); the last 22 frames (0.88 s)"),
        (60, 3.0, 60, "kept all 60 frames; the last 0.60 s of audio have no video"),
    ],
)
def test_length_policy(video_frames, audio_s, keep, note):
    got, text = checks.frames_to_use("v.mp4", "a.wav", video_frames, audio_s, FPS)
    assert got == keep
    if note is None:
        assert text is None
    else:
        assert note in text and "v.mp4" in text and "a.wav" in text and "\n" not in text


@pytest.mark.parametrize(("video_frames", "audio_s"), [(100, 1.9), (40, 3.3)])
def test_lengths_too_far_apart_are_refused(video_frames, audio_s):
    with pytest.raises(checks.PreprocessError, match="not one recording: give the audio recorded"):
        checks.frames_to_use("v.mp4", "a.wav", video_frames, audio_s, FPS)
    with pytest.raises(checks.PreprocessError, match="its audio track .* give the speech with"):
        checks.frames_to_use("v.mp4", None, video_frames, audio_s, FPS)


def test_probe_applies_the_policy_to_real_files(tmp_path):
    """A silent 2.4 s clip with a 3.0 s --audio (audio longer) and with a 2.0 s one (shorter)."""
    frames = media.astronaut_frames(60, 64)
    silent = media.write_video(str(tmp_path / "s.mp4"), frames, FPS)
    for seconds, keep in ((3.0, 60), (2.0, 50)):
        wav = str(tmp_path / f"a{seconds}.wav")
        soundfile.write(wav, media.tone(seconds), media.AUDIO_RATE)
        info = pipeline._probe([pipeline.Clip(silent, wav)], FPS, min_frames=10)
        meta = info["clips"][0]
        assert meta["video_frames"] == 60 and meta["frames"] == keep == info["frames"]
        assert abs(meta["audio_s"] - seconds) < 1e-3 and len(info["notes"]) == 1
        out = str(tmp_path / f"aud{seconds}.wav")
        video.extract_audio(wav, out, n_frames=keep, fps=FPS)
        assert len(soundfile.read(out)[0]) == keep * media.AUDIO_RATE // FPS


def test_refusals_before_tracking_leave_nothing(tmp_path):
    """Probe-step refusals (lengths, too short after trimming) write no <out>.work either."""
    silent = media.write_video(str(tmp_path / "s.mp4"), media.astronaut_frames(60, 64), FPS)
    wav = str(tmp_path / "a.wav")
    soundfile.write(wav, media.tone(1.0), media.AUDIO_RATE)
    out = str(tmp_path / "subj")
    with pytest.raises(checks.PreprocessError, match=r"1\.00 s; less than 50% overlaps"):
        pipeline.preprocess(pipeline.Clip(silent, wav), out, fps=FPS, size=64, progress=False)
    soundfile.write(wav, media.tone(1.9), media.AUDIO_RATE)
    with pytest.raises(checks.PreprocessError, match="48 frames at 25 fps, fewer than the 50"):
        pipeline.preprocess(pipeline.Clip(silent, wav), out, fps=FPS, size=64, progress=False)
    assert not os.path.exists(out) and not os.path.exists(out + pipeline.WORK_SUFFIX)


def test_face_size_and_upscaling_rules():
    boxes = np.array([[10, 10, 48, 60], [12, 10, 52, 60], [11, 9, 50, 61]], float)
    assert checks.face_width(boxes) == 39
    with pytest.raises(checks.PreprocessError, match="the face is 39 px wide in the 176x144"):
        checks.check_face_size("v.mp4", 39.0, (176, 144))
    assert "near the limit" in checks.check_face_size("v.mp4", float(checks.MIN_FACE_PX), (1, 1))
    assert checks.check_face_size("v.mp4", float(checks.GOOD_FACE_PX), (176, 144)) is None
    note = checks.upscale_note("v.mp4", 144, 512)
    assert "144 px" in note and "upscales it 3.6x" in note and "--size=128" in note
    assert checks.upscale_note("v.mp4", 400, 512) is None  # 1.28x: mild
    assert checks.upscale_note("v.mp4", 1080, 512) is None


# Mean |decoded − intended| of a frame after a re-encode (CRF 12) and the 176 → 192 px horizontal
# rescale of 12:11 pixels: measured ≈ 2 levels; frames read without the correction are 16 px
# narrower and do not line up at all.
SAR_DECODE_MAE = 6.0


def test_phone_rotation_and_non_square_pixels(tmp_path):
    """Portrait video (a 90° display rotation) and 12:11 pixels: probe gives the displayed size
    and read_frames the displayed, square-pixel frames, so crop boxes mean what they say."""
    frames, _ = media.phone_frames(5)  # (5, 144, 176, 3) as intended to be seen
    stored = np.rot90(frames, -1, axes=(1, 2))  # the sensor's orientation
    flat = media.write_video(str(tmp_path / "stored.mp4"), stored, FPS)
    portrait = media.remux_rotated(flat, str(tmp_path / "portrait.mp4"))
    meta = video.probe(portrait)
    assert (meta["width"], meta["height"], meta["rotation"]) == (176, 144, 90.0)
    got = next(video.read_frames(portrait, fps=FPS, size=(144, 176)))
    assert np.abs(got.astype(float) - frames[0]).mean() < SAR_DECODE_MAE

    wide = np.stack([cv2.resize(f, (192, 144), interpolation=cv2.INTER_AREA) for f in frames])
    squeezed = np.stack([cv2.resize(f, (176, 144), interpolation=cv2.INTER_AREA) for f in wide])
    plain = media.write_video(str(tmp_path / "plain.mp4"), squeezed, FPS)
    sar = media.reencode_sar(plain, str(tmp_path / "sar.mp4"))
    meta = video.probe(sar)
    assert (meta["width"], meta["height"]) == (192, 144) and abs(meta["sar"] - 12 / 11) < 1e-6
    got = next(video.read_frames(sar, fps=FPS, size=(144, 192), display=(192, 144)))
    assert np.abs(got.astype(float) - wide[0]).mean() < SAR_DECODE_MAE
