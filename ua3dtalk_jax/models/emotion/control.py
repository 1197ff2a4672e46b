"""Emotion override at inference for f_emo-attn (the feature Eq. 6 encodes).

f_emo-attn comes from the audio by default. After fine-tuning, the per-class mean feature
μ_c = mean{f_emo-attn(frame) : label(frame) = c} over the subject's training frames is stored with
the stage-1 checkpoint; a requested label c at intensity α gives

    f = μ_neutral + α · (μ_c − μ_neutral)        (α = 1: the class mean; α = 0: neutral)

and a blend of two requests (or of a request and the audio feature) is their convex combination.
Spec strings, as the inference CLI passes them: "audio", "happy", "happy:0.7",
"happy:0.5+sad:0.5", "audio:0.5+angry:0.5" (weights are normalised to sum to 1; an intensity
after a label inside a blend term is written "angry@1.5:0.5" = label@intensity:weight).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from ua3dtalk_jax.types import EMOTIONS

NEUTRAL = EMOTIONS.index("neutral")


def class_means(features: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Per-class mean features; a class without frames gets the mean of all labelled frames.

    Args:
      features: (N, D) f_emo-attn; labels: (N,) int, −1 = unlabelled.
    Returns:
      (n_classes, D) float32.
    """
    features = np.asarray(features, np.float32)
    labels = np.asarray(labels)
    valid = labels >= 0
    overall = features[valid].mean(0) if valid.any() else features.mean(0)
    out = np.tile(overall, (n_classes, 1))
    for c in range(n_classes):
        sel = labels == c
        if sel.any():
            out[c] = features[sel].mean(0)
    return out.astype(np.float32)


def label_feature(means: np.ndarray, label: int | str, intensity: float = 1.0) -> np.ndarray:
    """μ_neutral + intensity · (μ_label − μ_neutral) → (D,)."""
    c = EMOTIONS.index(label) if isinstance(label, str) else int(label)
    neutral = means[NEUTRAL]
    return (neutral + float(intensity) * (means[c] - neutral)).astype(np.float32)


def parse_spec(spec: str) -> list[tuple[str, float, float]]:
    """ "happy@0.8:0.5+audio:0.5" → [("happy", 0.8, 0.5), ("audio", 1.0, 0.5)] (weights sum to 1).

    A single term's ":x" is its intensity ("happy:0.7"); inside a blend ":x" is the weight and
    "@y" the intensity.
    """
    terms = [t.strip() for t in spec.split("+") if t.strip()]
    if not terms:
        raise ValueError("empty emotion spec")
    out = []
    for t in terms:
        name, _, num = t.partition(":")
        name, _, inten = name.partition("@")
        name = name.strip().lower()
        if name != "audio" and name not in EMOTIONS:
            raise ValueError(f"unknown emotion {name!r}; choose audio or one of {EMOTIONS}")
        value = float(num) if num else 1.0
        if len(terms) == 1:
            out.append((name, float(inten) if inten else value, 1.0))
        else:
            out.append((name, float(inten) if inten else 1.0, value))
    total = sum(w for _, _, w in out)
    if total <= 0:
        raise ValueError(f"blend weights must sum to a positive number: {spec!r}")
    return [(n, i, w / total) for n, i, w in out]


def apply_spec(f_audio: np.ndarray, means: np.ndarray, spec: str | None) -> np.ndarray:
    """Resolves an emotion request into per-frame features.

    Args:
      f_audio: (N, D) f_emo-attn from the audio.
      means: (C, D) class means from the stage-1 checkpoint.
      spec: None or "audio" for the audio feature, else a spec string (module docstring).
    Returns:
      (N, D) float32.
    """
    f_audio = np.asarray(f_audio, np.float32)
    if spec is None or spec.strip().lower() == "audio":
        return f_audio
    out = np.zeros_like(f_audio)
    for name, intensity, weight in parse_spec(spec):
        if name == "audio":
            out += weight * f_audio
        else:
            out += weight * label_feature(means, name, intensity)[None]
    return out


def blend(a: jnp.ndarray, b: jnp.ndarray, alpha: float) -> jnp.ndarray:
    """(1 − alpha) · a + alpha · b, for any broadcastable feature arrays."""
    return (1.0 - alpha) * a + alpha * b
