"""Emotion control at inference: f_emo-attn (the feature Eq. 6 encodes) set from a label.

f_emo-attn comes from the audio by default. After fine-tuning, the per-class mean feature
μ_c = mean{f_emo-attn(frame) : label(frame) = c} over the subject's training frames is stored with
the stage-1 checkpoint (`class_means`); a requested label c at intensity α gives

    f = μ_neutral + α · (μ_c − μ_neutral)        (α = 1: the class mean; α = 0: neutral)

and a blend of two requests (or of a request and the audio feature) is their convex combination.
Spec strings, as the inference CLI passes them: "audio", "happy", "happy:0.7",
"happy:0.5+sad:0.5", "audio:0.5+angry:0.5" (weights are normalised to sum to 1; an intensity
after a label inside a blend term is written "angry@1.5:0.5" = label@intensity:weight).
`apply_spec` resolves a spec on per-frame features, `with_emotion` on a trained model's features.

The CLI's flags (--emotion, --intensity 1-3, --emotion_mix) become a spec through `emotion_spec`:
MEAD intensity levels map to α = level / ī, ī being the mean labelled level of that emotion in the
subject's training frames (`class_levels`; 2 when unlabelled), so the level the class mean stands
for gives α = 1.
"""

from __future__ import annotations

import warnings

import jax.numpy as jnp
import numpy as np

from ua3dtalk_jax.types import EMOTIONS

NEUTRAL = EMOTIONS.index("neutral")
INTENSITIES = (1, 2, 3)  # MEAD levels
DEFAULT_LEVEL = 2.0  # the mean level assumed when the subject has no labels for an emotion


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


def with_emotion(model, feats: dict, emotion: str | None) -> dict:
    """`feats` with f_emo set from an emotion spec (cheap: no audio is reprocessed).

    The same `apply_spec` that `head.features.stage1_features(emotion=...)` applies, on the audio's
    own f_emo-attn ("f_emo_audio"), with the stage-1 class means of `model` (a
    `head.trained.TrainedModel`).
    """
    f_emo = apply_spec(feats["f_emo_audio"], model.stage1.class_means, emotion)
    return {**feats, "f_emo": f_emo}


def blend(a: jnp.ndarray, b: jnp.ndarray, alpha: float) -> jnp.ndarray:
    """(1 − alpha) · a + alpha · b, for any broadcastable feature arrays."""
    return (1.0 - alpha) * a + alpha * b


def class_levels(subject) -> dict[str, float]:
    """Mean labelled MEAD level (ī above) of each emotion present in the subject's training frames.

    Emotions absent from the training frames are absent here: stage 1 has no class mean of their
    own for them (`class_means` falls back to the mean of all labelled frames).
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
    """The spec (module docstring) of the CLI's emotion flags (None = audio-driven).

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
