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
feature of a label — μ_neutral + α (μ_label − μ_neutral), `models.emotion.control` — or by a convex
blend of labels (and "audio", the clip's own feature). Lip motion still follows the audio (f_audio,
f_exp and f_tone are untouched); the label moves what the emotion view learned to move. MEAD
intensity levels map to α = level / ī, ī being the mean labelled level of that emotion in the
subject's training frames (2 when unlabelled), so the level the class mean stands for gives α = 1.
"""

from __future__ import annotations

import os
import time
import warnings

import numpy as np
from tqdm import tqdm

from ua3dtalk_jax.audio.features import SAMPLE_RATE
from ua3dtalk_jax.data.video import VideoWriter
from ua3dtalk_jax.head.trained import TrainedModel
from ua3dtalk_jax.infer import trained_model as tm
from ua3dtalk_jax.infer.poses import pose_schedule
from ua3dtalk_jax.types import EMOTIONS

INTENSITIES = (1, 2, 3)  # MEAD levels
DEFAULT_LEVEL = 2.0  # the mean level assumed when the subject has no labels for an emotion


def class_levels(subject) -> dict[str, float]:
    """Mean labelled MEAD level (ī above) of each emotion present in the subject's training frames.

    Emotions absent from the training frames are absent here: stage 1 has no class mean of their
    own for them (`control.class_means` falls back to the mean of all labelled frames).
    """
    ids = subject.img_ids[subject.split("train")]
    emo, level = subject.emotion[ids], subject.intensity[ids]
    out = {}
    for c, name in enumerate(EMOTIONS):
        sel = (emo == c) & (level > 0)
        if sel.any():
            out[name] = float(level[sel].mean())
    return out


def emotion_spec(
    emotion: str | None = None,
    intensity: int | None = None,
    emotion_mix: str | None = None,
    levels: dict | None = None,
) -> str | None:
    """The `models.emotion.control` spec of the CLI's emotion flags (None = audio-driven).

    Args:
      emotion: a label of `types.EMOTIONS` (or "audio").
      intensity: MEAD level 1–3 (None: the class mean, α = 1).
      emotion_mix: "happy:0.7,sad:0.3" — labels (or "audio") with non-negative weights,
        normalised to sum 1; `intensity` applies to every label in it.
      levels: `class_levels(subject)` (ī per label, default 2). When given, a label missing from it
        draws a warning: the subject never showed it in training, so its feature is the overall
        mean and looks like no emotion in particular.
    Raises:
      ValueError naming the flag: both --emotion and --emotion_mix, --intensity without either or
        outside 1–3, an unknown label, a malformed or duplicate term, a negative or all-zero
        weight.
    """
    if emotion and emotion_mix:
        raise ValueError("--emotion and --emotion_mix are exclusive: pass one of them")
    if intensity is not None:
        if not (emotion or emotion_mix):
            raise ValueError("--intensity needs --emotion or --emotion_mix")
        if intensity not in INTENSITIES:
            raise ValueError(f"--intensity={intensity}: must be one of {INTENSITIES}")
    known = levels or {}

    def alpha(label: str) -> float:
        return 1.0 if intensity is None else intensity / known.get(label, DEFAULT_LEVEL)

    def check(label: str, flag: str) -> str:
        label = label.strip().lower()
        if label != "audio" and label not in EMOTIONS:
            raise ValueError(
                f"{flag}: unknown emotion {label!r}; choose audio or one of {', '.join(EMOTIONS)}"
            )
        if levels is not None and label != "audio" and label not in levels:
            warnings.warn(
                f"{flag}: the subject's training frames show no {label!r}; its feature "
                f"is the mean of all labelled frames (trained: {sorted(levels)})",
                stacklevel=3,
            )
        return label

    if emotion:
        label = check(emotion, f"--emotion={emotion}")
        return "audio" if label == "audio" else f"{label}@{alpha(label):.6g}:1"
    if not emotion_mix:
        return None
    flag = f"--emotion_mix={emotion_mix}"
    terms, seen = [], set()
    for raw in emotion_mix.split(","):
        name, sep, weight = raw.partition(":")
        if not sep or not name.strip() or not weight.strip():
            raise ValueError(f"{flag}: term {raw!r} is not LABEL:WEIGHT (e.g. happy:0.7,sad:0.3)")
        label = check(name, flag)
        if label in seen:
            raise ValueError(f"{flag}: {label!r} appears twice")
        seen.add(label)
        try:
            w = float(weight)
        except ValueError:
            raise ValueError(
                f"{flag}: weight {weight.strip()!r} of {label!r} is not a number"
            ) from None
        if not np.isfinite(w) or w < 0:
            raise ValueError(f"{flag}: weight of {label!r} must be a finite number ≥ 0, got {w}")
        terms.append((label, w))
    if sum(w for _, w in terms) <= 0:
        raise ValueError(f"{flag}: the weights sum to 0")
    return "+".join(
        f"{lb}:{w:.6g}" if lb == "audio" else f"{lb}@{alpha(lb):.6g}:{w:.6g}" for lb, w in terms
    )


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
      emotion: a `models.emotion.control` spec (`emotion_spec` builds one from the CLI flags);
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
