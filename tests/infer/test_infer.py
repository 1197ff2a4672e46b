"""Inference on the tiny trained subject: the CLI, audio formats, pose sources and error paths.

The video must have round(duration · fps) frames of the subject's size and fps, and the audio
track the input's duration; every error must name its file or flag and leave nothing at --out
(nor VideoWriter's hidden temporary beside it).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import imageio_ffmpeg
import numpy as np
import pytest
import soundfile
from absl import flags
from absl.testing import flagsaver

from tests.tools import import_tool
from ua3dtalk_jax.audio.features import SAMPLE_RATE, load_audio
from ua3dtalk_jax.data import video as V
from ua3dtalk_jax.head import emotion_control
from ua3dtalk_jax.head.workdir import Workdir
from ua3dtalk_jax.infer import synthesize as syn
from ua3dtalk_jax.infer import trained_model as tm

# Output audio is AAC: the encoder pads to whole 1024-sample frames (and an AAC input adds its own
# priming), so the decoded track may exceed the input by up to two frames at 44.1 kHz.
AUDIO_TOL_S = 2 * 1024 / 44100
# Mean |decoded − rendered| on [0, 1] for the first frame: H.264 at CRF 18 on a 64² face measured
# ≈ 0.01; 0.05 still fails on a wrong pose, a blank frame or swapped channels.
DECODE_MAE_TOL = 0.05
# low-rank vs dense Eq. 10-12: the same fusion to float32 rounding (centres within ~1e-7 head
# units, far below a pixel); the colour of a pixel moves by a few float32 ulps at most
LOWRANK_PIXEL_TOL = 1e-4
CLIP_S = 1.2  # short clips keep the suite fast; 30 frames at 25 fps


@pytest.fixture(scope="module")
def model(tiny_trained):
    return Workdir(tiny_trained["workdir"]).load_trained(tiny_trained["subject"])


@pytest.fixture(scope="module")
def speech(model):
    """CLIP_S seconds of the subject's own speech (16 kHz), from the middle of its clip."""
    wav = model.subject.wav()
    start = max(0, len(wav) // 2 - int(CLIP_S * SAMPLE_RATE) // 2)
    clip = wav[start : start + int(CLIP_S * SAMPLE_RATE)]
    assert np.abs(clip).max() > 0.05, "expected speech in the middle of the synthetic clip"
    return clip


def _resampled(clip: np.ndarray, rate: int) -> np.ndarray:
    import librosa

    return librosa.resample(clip, orig_sr=SAMPLE_RATE, target_sr=rate, res_type="soxr_hq")


def _run_cli(**kw):
    infer = import_tool("infer")

    flags.FLAGS.mark_as_parsed()
    with flagsaver.flagsaver(compile_cache="", **kw):
        infer.main([])


@pytest.mark.slow
def test_cli_wav_44k(model, speech, tiny_trained, tmp_path, capsys):
    """A 44.1 kHz stereo wav → mp4 with 30 frames, the subject's size and fps, the audio whole."""
    path = tmp_path / "speech44k.wav"
    stereo = np.stack([_resampled(speech, 44100)] * 2, -1)
    soundfile.write(path, stereo, 44100)
    out = tmp_path / "out.mp4"
    _run_cli(
        workdir=tiny_trained["workdir"],
        subject=tiny_trained["subject"],
        audio=str(path),
        out=str(out),
    )
    printed = capsys.readouterr().out
    assert "frames/s" in printed and "rendered" in printed
    info = V.probe(out)
    n = round(CLIP_S * model.fps)
    h, w = model.size
    assert info["frames"] == n
    assert (info["height"], info["width"]) == (h, w)
    assert info["fps"] == model.fps
    assert abs(info["audio_seconds"] - CLIP_S) <= AUDIO_TOL_S
    # The first video frame is the model's render of frame 0 (val pose 0, this audio).
    feats = tm.audio_features(model, str(path))
    pose = syn.pose_schedule(model.subject, "val")(model.subject, 0)
    want = np.asarray(tm.render(model, tm.frame_conditioning(model, feats, 0, pose)))
    got = V.read_frames(out)
    assert got.shape == (n, h, w, 3)
    assert np.abs(got[0] / 255.0 - want).mean() < DECODE_MAE_TOL
    assert got.std() > 5, "the video is blank"
    assert sorted(os.listdir(tmp_path)) == ["out.mp4", "speech44k.wav"]


@pytest.mark.slow
def test_m4a_static_poses_and_emotion(model, speech, tmp_path):
    """AAC in .m4a (decoded by imageio-ffmpeg's ffmpeg) at 22.05 kHz, static poses, an emotion."""
    wav = tmp_path / "src.wav"
    soundfile.write(wav, _resampled(speech, 22050), 22050)
    m4a = tmp_path / "speech.m4a"
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(wav), "-c:a", "aac", str(m4a)]
    subprocess.run(cmd, check=True)
    os.remove(wav)
    spec = emotion_control.emotion_spec(
        "happy", 3, None, emotion_control.class_levels(model.subject)
    )
    res = syn.synthesize(
        model, str(m4a), str(tmp_path / "o.mp4"), emotion=spec, poses="static", progress=False
    )
    info = V.probe(tmp_path / "o.mp4")
    n = round(len(load_audio(str(m4a))) / SAMPLE_RATE * model.fps)
    assert res["frames"] == info["frames"] == n
    assert abs(info["audio_seconds"] - res["audio_seconds"]) <= AUDIO_TOL_S
    assert res["render_fps"] > 0
    frames = V.read_frames(tmp_path / "o.mp4").astype(np.float32) / 255.0
    # Static camera and torso: the background corner never moves.
    assert np.abs(frames[:, :4, :4] - frames[:1, :4, :4]).max() <= 6 / 255
    # Every frame is the model's render of that frame's audio and emotion at val pose 0.
    feats = tm.audio_features(model, str(m4a), emotion=spec)
    np.testing.assert_allclose(feats["f_emo"][0], feats["f_emo"][-1])
    pose = tm.subject_pose(model, int(model.subject.split("val")[0]))
    for t in (0, n - 1):
        want = np.asarray(tm.render(model, tm.frame_conditioning(model, feats, t, pose)))
        assert np.abs(frames[t] - want).mean() < DECODE_MAE_TOL


def test_failure_mid_render_leaves_nothing(model, speech, tmp_path, monkeypatch):
    """An error after some frames were encoded removes the partial video."""
    real, calls = tm.render, []

    def failing(m, frame):
        calls.append(1)
        if len(calls) > 3:
            raise RuntimeError("boom")
        return real(m, frame)

    monkeypatch.setattr(tm, "render", failing)
    out = tmp_path / "partial.mp4"
    with pytest.raises(RuntimeError, match="boom"):
        syn.synthesize(model, speech, str(out), progress=False)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "kind, match",
    [
        ("silent", "silent"),
        ("empty", "empty"),
        ("garbage", "cannot decode"),
        ("missing", "not found"),
        ("tiny", "shorter than half a video frame"),
    ],
)
def test_bad_audio(model, tmp_path, kind, match):
    path = tmp_path / f"{kind}.wav"
    if kind == "silent":
        soundfile.write(path, np.zeros(SAMPLE_RATE, np.float32), SAMPLE_RATE)
    elif kind == "empty":
        soundfile.write(path, np.zeros(0, np.float32), SAMPLE_RATE)
    elif kind == "garbage":
        path.write_bytes(b"this is not audio at all\n" * 40)
    elif kind == "tiny":
        soundfile.write(path, 0.5 * np.ones(100, np.float32), SAMPLE_RATE)
    out = tmp_path / "out.mp4"
    with pytest.raises((ValueError, FileNotFoundError), match=match) as e:
        syn.synthesize(model, str(path), str(out), progress=False)
    assert str(path) in str(e.value)
    assert not out.exists() and not [p for p in os.listdir(tmp_path) if "mp4" in p]


def _copy_workdir(src: str, dst) -> str:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("tb", "val", "*.mp4"))
    return str(dst)


def test_missing_stage2_and_other_version(tiny_trained, tmp_path):
    work = _copy_workdir(tiny_trained["workdir"], tmp_path / "work")
    subject = tiny_trained["subject"]
    metas = [
        os.path.join(d, f)
        for d, _, fs in os.walk(os.path.join(work, "stage2", "model"))
        for f in fs
        if f == "metadata" and os.path.basename(d) == "meta"
    ]
    assert len(metas) == 1, metas
    with open(metas[0]) as f:
        meta = json.load(f)
    meta["format"] = "ua3dtalk_jax/stage2/v0"
    with open(metas[0], "w") as f:
        json.dump(meta, f)
    with pytest.raises(ValueError, match="written as 'ua3dtalk_jax/stage2/v0'"):
        Workdir(work).load_trained(subject)
    shutil.rmtree(os.path.join(work, "stage2", "model"))
    with pytest.raises(FileNotFoundError, match="stage2/model: no trained stage-2 model"):
        Workdir(work).load_trained(subject)
    with pytest.raises(FileNotFoundError, match="no such directory"):
        Workdir(str(tmp_path / "nowhere")).load_trained(subject)


def test_cli_errors_name_the_flag(tiny_trained, tmp_path):
    wav = tmp_path / "a.wav"
    soundfile.write(wav, 0.3 * np.sin(np.arange(SAMPLE_RATE) / 5.0), SAMPLE_RATE)
    base = {
        "workdir": tiny_trained["workdir"],
        "subject": tiny_trained["subject"],
        "audio": str(wav),
        "out": str(tmp_path / "o.mp4"),
    }
    cases = [
        ({"emotion": "ecstatic"}, "--emotion=ecstatic: unknown emotion"),
        ({"emotion": "happy", "emotion_mix": "sad:1"}, "exclusive"),
        ({"emotion_mix": "happy=0.7"}, "not LABEL:WEIGHT"),
        ({"emotion_mix": "happy:-1,sad:1"}, "≥ 0"),
        ({"emotion": "happy", "intensity": 4}, "--intensity=4"),
        ({"workdir": str(tmp_path / "none")}, "no such directory"),
        ({"out": str(tmp_path / "o.avi")}, "--out="),
        ({"poses": str(tmp_path / "p.txt")}, "--poses="),
    ]
    for over, match in cases:
        with pytest.raises(SystemExit, match=match):
            _run_cli(**{**base, **over})
    assert sorted(os.listdir(tmp_path)) == ["a.wav"]


def test_render_runs_the_mean_only_fusion_equal_to_the_dense_form(model, speech):
    """Inference renders with the mean-only Eq. 10–12 (`trained_model.inference_net`): the frame
    equals the one the config's dense form renders, to float32 rounding."""
    face = model.heads["face"][0]
    assert face.spec.fusion == "dense" and tm.inference_net(face).spec.fusion == "mean"
    feats = tm.audio_features(model, speech)
    frame = tm.frame_conditioning(
        model, feats, 3, syn.pose_schedule(model.subject, "val")(model.subject, 3)
    )
    got = np.asarray(tm.render(model, frame))
    nets = tuple(model.heads[p][0] for p in tm.PARTS)
    trees = tuple(tuple(model.heads[p][1:]) for p in tm.PARTS)
    inputs = {k: frame[k] for k in (*tm._NET_KEYS, "viewmat", "K", "background")}
    dense = np.asarray(
        tm._render(
            trees,
            inputs,
            nets=nets,
            width=model.size[1],
            height=model.size[0],
            backend=model.cfg.backend,
            use_deform=True,
        )
    )
    np.testing.assert_allclose(got, dense, atol=LOWRANK_PIXEL_TOL)
    assert got.std() > 0.02, "blank render"
