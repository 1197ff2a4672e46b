"""Per-frame stage-1 features for stage 2 and inference: f_exp (64), f_tone (64), f_emo-attn (128).

`stage1_features(source, stage1)` takes a subject (its aud.wav and frame count) or a bare waveform
(novel audio) plus a trained stage 1 (a `head.stage1_model.Stage1Model` or its checkpoint folder).
Every feature comes from the audio and the checkpoint alone — f_exp from lip-wav images that the lip
expert generates from the audio and the checkpoint's stored reference crops (read by the
expression-prior regressor, or by Deep3DFaceRecon after pasting them into the stored aligned
reference frames, `Stage1Model.face`), f_tone from StyleNet,
f_emo-attn from the frozen emotion encoder — so training audio and novel audio take the same path
and no video frame of the audio's own clip is used. f_exp and f_tone are standardised with the
checkpoint's train-frame statistics when its config asks for it (`Stage1Model.prior_out`). For a
subject the result is cached in the subject dir as `stage1_features.npy` (N, 256), keyed by a
SHA-256 of the stage-1 checkpoint's files: a copy of the same checkpoint (every ablation
configuration gets one) reuses the cache, a retrained stage 1 recomputes it.
An optional emotion spec (`head.emotion_control`) overrides f_emo-attn after the cache.

`subject_features(subject, features)` is the other source (`stage1.features.source=subject`): the
UA-3DTalk extras a subject folder may carry (`Subject.ua_extras`), for training stage 2 on the
authors' precomputed features without this project's stage 1.
"""

from __future__ import annotations

import hashlib
import os

import jax.numpy as jnp
import numpy as np

from ua3dtalk_jax.audio import emotion_inputs, features
from ua3dtalk_jax.audio.cache import cached_array
from ua3dtalk_jax.data import layout
from ua3dtalk_jax.head import emotion as emo
from ua3dtalk_jax.head import emotion_control, prior
from ua3dtalk_jax.head.stage1_model import (
    Stage1Model,
    load_stage1,
    prior_stats,
    standardise_prior,
)

CACHE_NAME = "stage1_features"
SOURCES = ("stage1", "subject")  # `stage1.features.source`
WIDTHS = (("f_exp", 64), ("f_tone", 64), ("f_emo", 128))
# the subject frame keys of a stage-2 frame dict (training batches, held-out renders)
KEYS = (
    "image",
    "viewmat",
    "K",
    "aud",
    "au_exp",
    "head_mask",
    "mouth_mask",
    "teeth_mask",
    "hair_mask",
    "lips_rect",
    "background",
)


def compute_features(model: Stage1Model, wav: np.ndarray, fps: float, n_frames: int) -> dict:
    """Runs the frozen stage 1 on a waveform.

    Args:
      model: a trained stage 1.
      wav: (S,) float32 16 kHz.
      fps: video frame rate of the frames to produce.
      n_frames: N.
    Returns:
      {"f_exp": (N, 64), "f_tone": (N, 64), "f_emo": (N, 128)} float32 numpy arrays.
    """
    cfg = model.cfg
    mel = jnp.asarray(np.transpose(features.mel_chunks(wav, fps, n_frames), (0, 2, 1)))
    refs = jnp.asarray(model.refs, jnp.float32) / 255.0
    p = prior.prior_features(
        model.models, model.params, refs, mel, cfg.stylenet.seq_len, model.face
    )
    stream = {k: jnp.asarray(v) for k, v in emotion_inputs.emotion_stream(wav, cfg.emotion).items()}
    centres = emotion_inputs.frame_centres(n_frames, fps)
    e = emo.emotion_features(
        model.models["emotion"], model.params["emotion"], stream, centres, cfg.emotion
    )
    f_exp, f_tone = model.prior_out(np.asarray(p["f_exp"]), np.asarray(p["f_tone"]))
    out = {"f_exp": f_exp, "f_tone": f_tone, "f_emo": e["f_emo"]}
    return {k: np.asarray(v, np.float32) for k, v in out.items()}


def stage1_features(
    source,
    stage1,
    *,
    fps: float | None = None,
    n_frames: int | None = None,
    emotion: str | None = None,
    cache: bool = True,
) -> dict:
    """f_exp, f_tone, f_emo-attn per video frame of a subject or of novel audio.

    Args:
      source: a `data.Subject`, or a waveform ((S,) 16 kHz array or audio file path).
      stage1: a `Stage1Model` or its checkpoint folder (`Workdir.stage1_dir`; cached then).
      fps: frame rate (a subject's own by default; 25 for bare audio).
      n_frames: N (a subject's length; round(S·fps/16000) for bare audio).
      emotion: None/"audio" keeps the audio's f_emo-attn; else a `head.emotion_control` spec
        ("happy:0.8").
      cache: for a subject, read/write `stage1_features.npy` in its directory.
    Returns:
      {"f_exp": (N, 64), "f_tone": (N, 64), "f_emo": (N, 128)} float32.
    """
    ckpt = None
    if not isinstance(stage1, Stage1Model):
        ckpt = os.path.abspath(stage1)
        stage1 = load_stage1(stage1)
    is_subject = hasattr(source, "wav") and hasattr(source, "path")
    wav = source.wav() if is_subject else features.load_audio(source)
    fps = float(fps or (source.fps if is_subject else 25.0))
    n = int(n_frames or (len(source) if is_subject else features.num_frames(wav, fps)))

    def compute() -> np.ndarray:
        f = compute_features(stage1, wav, fps, n)
        return np.concatenate([f[k] for k, _ in WIDTHS], axis=1)

    if is_subject and cache and ckpt is not None:
        params = {"stage1_sha256": checkpoint_digest(ckpt), "fps": fps, "n": n}
        flat = cached_array(
            source.path, CACHE_NAME, params, compute, source=os.path.join(source.path, "aud.wav")
        )
    else:
        flat = compute()
    out, a = {}, 0
    for k, w in WIDTHS:
        out[k] = np.asarray(flat[:, a : a + w], np.float32)
        a += w
    out["f_emo"] = emotion_control.apply_spec(out["f_emo"], stage1.class_means, emotion)
    return out


def feature_source(features) -> str:
    """The checked `source` of the stage-1 config's `features` block (`cfg.stage1.features`):
    where stage 2 reads f_exp, f_tone, f_emo from; "stage1" for None (no config given)."""
    source = features.source if features is not None else "stage1"
    if source not in SOURCES:
        raise ValueError(f"stage1.features.source={source!r}: use one of {', '.join(SOURCES)}")
    return source


def subject_features(subject, features) -> dict:
    """f_exp, f_tone, f_emo per frame position from the subject's UA-3DTalk extras.

    Args:
      subject: a `data.Subject` whose folder holds all three train/val .pth pairs.
      features: the stage-1 config's `features` block: f_exp and f_tone are standardised with
        their statistics over the train frames when it says so (as `Stage1Model.prior_out`).
    Returns:
      {"f_exp": (N, 64), "f_tone": (N, 64), "f_emo": (N, 128)} float32.
    Raises:
      FileNotFoundError: naming the subject folder and the files it lacks.
      ValueError: from `Subject.ua_extras` (the file at fault named).
    """
    extras = subject.ua_extras()
    missing = [
        f
        for k, (train, val, _) in layout.UA_EXTRAS.items()
        if k not in extras
        for f in (train, val)
    ]
    if missing:
        raise FileNotFoundError(
            f"{subject.path}: stage1.features.source=subject needs UA-3DTalk's precomputed "
            f"features; missing {', '.join(missing)} (or train stage 1: "
            "stage1.features.source=stage1)"
        )
    train = np.asarray(subject.split("train"))
    mean, std = prior_stats(extras["f_exp"][train], extras["f_tone"][train], len(train))
    f_exp, f_tone = standardise_prior(extras["f_exp"], extras["f_tone"], mean, std, features)
    out = {"f_exp": f_exp, "f_tone": f_tone, "f_emo": extras["f_emo"]}
    return {k: np.asarray(v, np.float32) for k, v in out.items()}


def checkpoint_digest(ckpt: str) -> str:
    """SHA-256 over the relative paths and bytes of every file of a stage-1 checkpoint folder
    (`Workdir.stage1_dir`), in sorted order: equal for byte-identical copies."""
    root = ckpt
    h = hashlib.sha256()
    for d, _, files in sorted(os.walk(root)):
        for name in sorted(files):
            path = os.path.join(d, name)
            h.update(os.path.relpath(path, root).encode() + b"\0")
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
    return h.hexdigest()


def frame_with_features(subject, features, i: int) -> dict:
    """Subject frame i (the `KEYS` a stage-2 frame holds) with its row of each per-frame feature."""
    f = subject.frame(i, keys=KEYS + ("mouth_mask",))
    for k, v in features.items():
        f[k] = np.asarray(v[i], np.float32)
    return f
