"""Emotion Distillation at inference (paper §2.2): the frozen speech-emotion encoder → f_emo-attn.

`build_encoder` builds the encoder of a stage-1 `emotion` config; `emotion_features` runs it on
windows of a clip's emotion stream (`audio.emotion_inputs`) centred on each video frame. Training it
is `train/stage1/emotion.py`.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from ua3dtalk_jax.audio import emotion_inputs, features
from ua3dtalk_jax.models.emotion.encoder import SpeechEmotionEncoder, wav_frames
from ua3dtalk_jax.models.emotion.wav2vec import processor_normalizes, read_config

PREDICT_CHUNK = 64  # windows per jitted inference call


def example_inputs(e) -> tuple:
    """Zero inputs of one window for `init`: (spectrogram image, MFCC frames, samples)."""
    wt, sw = emotion_inputs.window_frames(e), emotion_inputs.window_samples(e)
    h, w = e.image_hw
    return (
        jnp.zeros((1, h, w, 3)),
        jnp.zeros((1, -(-wt // e.mfcc_stride), e.n_mfcc)),
        jnp.zeros((1, sw)),
    )


def build_encoder(e, n_classes: int, exp_dim: int) -> SpeechEmotionEncoder:
    """The encoder for the `emotion` sub-config (its wav2vec 2.0 sizes from the folder's config)."""
    path = str(e.wav2vec_weights)
    w2v = read_config(path) if path else None
    samples = emotion_inputs.window_samples(e)
    n_frames = w2v.n_frames(samples) if w2v is not None else wav_frames(samples)
    if n_frames < 1:
        raise ValueError(
            f"stage1.emotion.window_s={e.window_s}: {samples} samples give no wav2vec 2.0 frame"
        )
    return SpeechEmotionEncoder(
        n_classes=n_classes,
        exp_dim=exp_dim,
        n_wav_frames=n_frames,
        alexnet_pool=e.alexnet_pool,
        alexnet_trainable=e.alexnet_trainable,
        lstm_hidden=e.lstm_hidden,
        lstm_layers=e.lstm_layers,
        wav_channels=e.wav_channels,
        wav_dim=e.wav_dim,
        feature_dim=e.feature_dim,
        dropout=e.dropout,
        wav2vec=w2v,
        wav2vec_normalize=processor_normalizes(path) if path else True,
    )


STREAM_BUCKET_S = 8.0  # seconds: inference streams are padded to multiples of this


@functools.partial(jax.jit, static_argnums=(0, 4))
def _encode_windows(model: SpeechEmotionEncoder, params, stream: dict, centres, e):
    x = emotion_inputs.window_inputs(stream, centres, e)
    logits, exp, inter = model.apply({"params": params}, x["spec"], x["mfcc"], x["wav"])
    return {"f_emo": inter["f_emo"], "logits": logits, "exp": exp}


def _padded(stream: dict, e) -> dict:
    """The stream's arrays zero-padded at the end to a whole number of STREAM_BUCKET_S: windows
    centred inside the clip never reach the padding (the stream already holds half a window of
    silence at each end), so nearby clip lengths share one compiled program."""
    rows = int(STREAM_BUCKET_S * features.SAMPLE_RATE / e.hop)
    samples = int(STREAM_BUCKET_S * features.SAMPLE_RATE)
    out = {}
    for k, v in stream.items():
        v = np.asarray(v, np.float32)
        size = rows if k in ("spec_db", "mfcc") else samples
        pad = [(0, -(-len(v) // size) * size - len(v))] + [(0, 0)] * (v.ndim - 1)
        fill = emotion_inputs.SILENCE_DB if k == "spec_db" else 0.0
        out[k] = jnp.asarray(np.pad(v, pad, constant_values=fill))
    return out


def emotion_features(model: SpeechEmotionEncoder, params, stream: dict, centres, e) -> dict:
    """Runs the frozen encoder on windows centred on `centres` (N,).

    Returns:
      {"f_emo": (N, 128), "logits": (N, C), "exp": (N, E)} float32 arrays.
    """
    centres = np.asarray(centres)
    n = len(centres)
    padded = _padded(stream, e)
    frozen = (
        e
        if isinstance(e, ml_collections.FrozenConfigDict)
        else (ml_collections.FrozenConfigDict(e))
    )  # hashable: a static argument
    outs = []
    for a in range(0, n, PREDICT_CHUNK):
        idx = np.minimum(np.arange(a, a + PREDICT_CHUNK), n - 1)
        outs.append(_encode_windows(model, params, padded, jnp.asarray(centres[idx]), frozen))
    return {k: jnp.concatenate([o[k] for o in outs])[:n] for k in outs[0]}
