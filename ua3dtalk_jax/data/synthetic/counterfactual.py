"""A synthetic subject's frames re-rendered with another emotion: frames whose emotion is known.

The generator writes what it rendered: every clip's emotion and intensity (emotion.csv, and the
clip timeline in subject.json's metadata), every frame's expression (exp_coeffs.npy) and pose.
`animation.expression_sequence` builds that expression as

    exp = emotion_track(clips) + idle + mouth (+ blink; eye_wide and eye_squint scaled by 1 − blink)

so the emotion's part can be exchanged exactly: with the clips' emotions replaced, shown at a
strength s (1: as generated; 0.5: half-way to neutral),

    exp' = exp + Δ,   Δ = s · emotion_track(clips') − emotion_track(clips),
    Δ[eye_wide, eye_squint] ·= 1 − blink,   exp'[jaw_open] clipped to [0, JAW_MAX] again

and `render.render_frame` draws exp' with the frame's own pose. Lips keep following the speech
(the mouth tracks, including the spoken emotion's articulation gain, are untouched), as a trained
model's `--emotion` override keeps them following the audio. The one inexact step: where the
original jaw_open was clipped at 0 or JAW_MAX the clipped amount is not recovered (a jaw offset
exists only for fear and surprised, ≤ 0.25).

Used to validate emotion scores on frames of known emotion (`eval/emotion_subject.py`,
`experiments/validate_emotion_score.py`): the generator's own frames with a wrong emotion, or
with none (neutral), next to the real ones.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from types import SimpleNamespace

import numpy as np

from ua3dtalk_jax.data import layout
from ua3dtalk_jax.data.synthetic import animation, face_model, render
from ua3dtalk_jax.data.synthetic.blendshapes import EXP_NAMES
from ua3dtalk_jax.types import EMOTIONS

GENERATOR = "ua3dtalk_jax.data.synthetic"
ASTRONAUT = "skimage.data.astronaut()"  # face_model.load_photo's name of the default portrait
NEUTRAL_TO_LEVEL = 2  # the level a neutral clip (level 1 by convention) shows another emotion at
_IX = {n: i for i, n in enumerate(EXP_NAMES)}


def generator_metadata(subject_dir: str) -> dict | None:
    """subject.json's generator metadata of a synthetic subject; None for any other subject."""
    path = os.path.join(subject_dir, layout.SUBJECT_JSON)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        doc = json.load(f)
    meta = doc.get("metadata", {})
    if meta.get("generator") != GENERATOR or "clips" not in meta:
        return None
    return {
        **meta,
        "fps": float(doc["fps"]),
        "size": int(doc["height"]),
        "num_frames": int(doc["num_frames"]),
    }


def _clips(meta: dict, emotion) -> tuple[list, list]:
    """The recorded clips and the same clips showing `emotion` (see `counterfactual_exp`)."""
    true = [
        SimpleNamespace(start_s=c["start_s"], emotion=c["emotion"], intensity=c["intensity"])
        for c in meta["clips"]
    ]
    alt = []
    for c in true:
        shown = emotion if isinstance(emotion, str) else emotion.get(c.emotion, c.emotion)
        if shown not in EMOTIONS:
            raise ValueError(f"emotion {shown!r}: not one of {EMOTIONS}")
        level = NEUTRAL_TO_LEVEL if c.emotion == "neutral" and shown != "neutral" else c.intensity
        alt.append(SimpleNamespace(start_s=c.start_s, emotion=shown, intensity=level))
    return true, alt


def counterfactual_exp(
    exp: np.ndarray, meta: dict, emotion: str | Mapping[str, str], strength: float = 1.0
) -> np.ndarray:
    """The whole timeline's expression with the clips' emotions replaced (module docstring).

    Args:
      exp: (N, E) the subject's exp_coeffs.npy (all frames, in img_id order).
      meta: `generator_metadata` of the subject.
      emotion: an EMOTIONS name every clip shows instead of its own, or a mapping
        recorded emotion → shown emotion (emotions not in it are kept). A clip keeps its
        intensity; a neutral clip (level 1 by convention) shows another at NEUTRAL_TO_LEVEL.
      strength: s, the scale of the shown emotion's offsets ({} with s = 0.5: each clip's own
        emotion at half its strength).

    Returns:
      (N, E) float32 expression coefficients.
    """
    exp = np.asarray(exp, np.float64)
    if exp.shape != (meta["num_frames"], len(EXP_NAMES)):
        raise ValueError(f"exp: expected ({meta['num_frames']}, {len(EXP_NAMES)}), got {exp.shape}")
    true, alt = _clips(meta, emotion)
    n, fps = len(exp), meta["fps"]
    delta = strength * animation.emotion_track(alt, n, fps) - animation.emotion_track(true, n, fps)
    for name in ("eye_wide", "eye_squint"):
        delta[:, _IX[name]] *= 1.0 - exp[:, _IX["blink"]]
    out = exp + delta
    jaw = _IX["jaw_open"]
    out[:, jaw] = np.clip(out[:, jaw], 0.0, animation.JAW_MAX)
    return out.astype(np.float32)


def rerender(
    subject, frames: Sequence[int], emotion: str | Mapping[str, str], strength: float = 1.0
) -> np.ndarray:
    """Frames of a synthetic subject re-rendered with another emotion by its generator.

    Args:
      subject: an open `data.Subject` written by the synthetic generator.
      frames: (M,) frame positions.
      emotion, strength: as in `counterfactual_exp`.

    Returns:
      (M, H, W, 3) uint8 frames (not JPEG-compressed, as a model's renders are not).

    Raises:
      ValueError: not a synthetic subject, or one whose portrait cannot be rebuilt (an array
        photo, or a photo file that is gone).
    """
    meta = generator_metadata(subject.path)
    if meta is None:
        raise ValueError(f"{subject.path}: not written by the synthetic generator ({GENERATOR})")
    photo = meta.get("photo")
    if photo != ASTRONAUT and not (isinstance(photo, str) and os.path.isfile(photo)):
        raise ValueError(f"{subject.path}: its portrait {photo!r} cannot be loaded again")
    model = face_model.build_face_model(
        None if photo == ASTRONAUT else photo, size=meta["size"], seed=int(meta.get("seed", 0))
    )
    exp = counterfactual_exp(subject.exp[: meta["num_frames"]], meta, emotion, strength)
    out = []
    for i in np.asarray(frames, np.int64):
        img_id = int(subject.img_ids[i])
        out.append(render.render_frame(model, exp[img_id], subject.viewmat(int(i)))["image"])
    return np.stack(out) if out else np.zeros((0, *subject.size, 3), np.uint8)
