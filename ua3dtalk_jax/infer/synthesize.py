"""Inference: new audio (+ optional emotion) → rendered talking head → mp4 with the audio track.

    audio file (wav/flac/mp3/ogg/m4a…, any rate) → 16 kHz mono (`trained_model.load_waveform`)
      → per-frame features (`audio_features`: f_audio + frozen stage 1, N = round(duration·fps);
        a model trained on DeepSpeech/HuBERT/esperanto windows takes the clip's .npy beside the
        audio, N = its window count)
      → per frame t: pose (`infer.poses`) + features → `frame_conditioning` → `render` (one jit)
      → `data.video.VideoWriter` (H.264, else MPEG-4; AAC audio; streamed and atomic)

Frames are encoded as they are rendered (one frame in flight while the next is dispatched), so
memory does not grow with the clip. The video has N frames at the subject's fps and size; the audio
track is the input file whole (its duration differs from N/fps by at most half a frame).

Emotion control (beyond the paper, whose inference is purely audio-driven): f_emo-attn, the input
of the face branch's emotion view (Eq. 6), is replaced for every frame by the stage-1 class-mean
feature of a label — μ_neutral + α (μ_label − μ_neutral) — or by a convex blend of labels (and
"audio", the clip's own feature); `head.emotion_control` holds it, from the class means to the
CLI flags' spec. Lip motion still follows the audio (f_audio, f_exp and f_tone are untouched); the
label moves what the emotion view learned to move.
"""

from __future__ import annotations

import os
import time

import numpy as np
from tqdm import tqdm

from ua3dtalk_jax.audio.features import SAMPLE_RATE
from ua3dtalk_jax.data.video import VideoWriter
from ua3dtalk_jax.head.trained import TrainedModel
from ua3dtalk_jax.infer import trained_model as tm
from ua3dtalk_jax.infer.poses import pose_schedule


def check_output(out: str) -> str:
    """The --out path, checked before any work: an existing folder and a video extension."""
    out = os.fspath(out)
    ext = os.path.splitext(out)[1].lower()
    if ext not in (".mp4", ".mov", ".mkv"):
        raise ValueError(f"--out={out}: expected a .mp4 (or .mov / .mkv) file name")
    folder = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"--out={out}: folder {folder} does not exist")
    if os.path.isdir(out):
        raise ValueError(f"--out={out}: is a directory")
    return out


def synthesize(
    model: TrainedModel,
    audio,
    out: str,
    *,
    emotion: str | None = None,
    poses: str = "val",
    features=None,
    progress: bool = True,
) -> dict:
    """Renders a talking-head video of `audio` to `out` (nothing is left at `out` on failure).

    Args:
      model: a `head.trained.TrainedModel` (`Workdir.load_trained`).
      audio: an audio file path (muxed as it is) or a 16 kHz mono float array.
      out: the video file (.mp4).
      emotion: a `head.emotion_control` spec (its `emotion_spec` builds one from the CLI flags);
        None is audio-driven.
      poses: "val", "static" or a pose file (`infer.poses`).
      features: the clip's precomputed audio windows (.npy path or array) for a model trained on
        DeepSpeech / HuBERT / esperanto windows (`trained_model.audio_features`); the video then
        has their frame count.
      progress: show a tqdm bar.
    Returns:
      {"path", "frames", "fps" (video), "size" (H, W), "audio_seconds", "render_fps" (frames per
       second of the render-and-encode loop after the first frame), "first_frame_seconds"
       (includes compilation), "seconds" (all of it, features and muxing included)}.
    """
    out = check_output(out)
    t_start = time.perf_counter()
    name = os.fspath(audio) if isinstance(audio, (str, os.PathLike)) else "audio"
    tm.check_audio_features(model.cfg, model.workdir, features)  # before decoding the audio
    wav = tm.load_waveform(audio)
    schedule = pose_schedule(model.subject, poses)
    feats = tm.audio_features(model, wav, emotion=emotion, features=features, name=name)
    n = len(feats["aud"])
    subject = model.subject
    track = os.fspath(audio) if isinstance(audio, (str, os.PathLike)) else wav
    t_first = 0.0
    with VideoWriter(
        out, fps=subject.fps, size=subject.size, audio=track, sample_rate=SAMPLE_RATE
    ) as writer:
        pending = None
        t_loop = time.perf_counter()
        for t in tqdm(range(n), desc="rendering", unit="frame", disable=not progress):
            frame = tm.frame_conditioning(model, feats, t, schedule(subject, t))
            rgb = tm.render(model, frame)  # dispatched; frame t-1 is encoded meanwhile
            if pending is None:
                rgb.block_until_ready()
                t_first = time.perf_counter() - t_loop
            else:
                writer.write(np.asarray(pending))
            pending = rgb
        writer.write(np.asarray(pending))
        t_rest = time.perf_counter() - t_loop - t_first
    seconds = time.perf_counter() - t_start
    return {
        "path": out,
        "frames": n,
        "fps": subject.fps,
        "size": subject.size,
        "audio_seconds": len(wav) / SAMPLE_RATE,
        "render_fps": (n - 1) / t_rest if n > 1 and t_rest > 0 else float("nan"),
        "first_frame_seconds": t_first,
        "seconds": seconds,
    }
