"""Per-frame expression coefficients (blendshapes.EXP_NAMES) and head poses from a speech script.

Mouth: each phoneme's IPA symbols map to viseme targets (jaw_open, lip_round, lip_spread,
lip_press); diphthongs split their interval between their vowels. Targets are laid on a
`TRACK_RATE` grid and smoothed with a Gaussian (coarticulation: σ = `COARTIC_S`); bilabial closure
is smoothed less (σ = `CLOSURE_S`) and gates the jaw, so /p b m/ really close the lips. An
emotion's articulation gain scales the mouth (angry and surprised speak wider, sad narrower).

Face: each clip's emotion adds a constant expression offset (scaled by intensity), blended across
clip boundaries with σ = `EMOTION_BLEND_S`; slow idle noise moves brows and smile a little;
blinks come every 2-5 s (close 70 ms, hold 50 ms, open 150 ms) and override eye opening.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.ndimage

from ua3dtalk_jax.data.synthetic.blendshapes import EXP_NAMES, E

TRACK_RATE = 200.0  # Hz of the internal curves
COARTIC_S, CLOSURE_S, EMOTION_BLEND_S, IDLE_S = 0.035, 0.018, 0.15, 0.6
STRESS_GAIN = 1.15
CLOSURE_GAIN = 1.8
JAW_MAX = 1.1  # loud, stressed, surprised /ɑ/ would otherwise gape
LOUDNESS_POWER, LOUDNESS_RANGE = (
    1.0,
    (0.4, 1.8),
)  # louder vowels open wider (rel. to the clip median)
BLINK_GAP_S = (2.0, 5.0)
BLINK_SHAPE_S = (0.07, 0.05, 0.15)  # closing, closed, opening
HEAD_DEG = (3.0, 2.0, 1.5)  # yaw, pitch, roll amplitudes of the optional head motion
HEAD_SHIFT = (0.004, 0.003, 0.005)  # head-unit translation amplitudes
_IX = {n: i for i, n in enumerate(EXP_NAMES)}

# (jaw_open, lip_round, lip_spread, lip_press) per IPA symbol.
VISEMES = {
    "a": (0.85, 0, 0.15, 0),
    "ɑ": (0.9, 0, 0, 0),
    "æ": (0.75, 0, 0.35, 0),
    "ʌ": (0.6, 0, 0.1, 0),
    "ɐ": (0.6, 0, 0.1, 0),
    "ɛ": (0.5, 0, 0.45, 0),
    "e": (0.45, 0, 0.5, 0),
    "ɪ": (0.38, 0, 0.55, 0),
    "i": (0.28, 0, 0.75, 0),
    "ᵻ": (0.3, 0, 0.4, 0),
    "ə": (0.4, 0, 0.1, 0),
    "ɚ": (0.35, 0.35, 0, 0),
    "ɜ": (0.4, 0.25, 0, 0),
    "ɔ": (0.65, 0.55, 0, 0),
    "ɒ": (0.75, 0.4, 0, 0),
    "o": (0.45, 0.8, 0, 0),
    "ʊ": (0.35, 0.75, 0, 0),
    "u": (0.3, 1.0, 0, 0),
    "p": (0, 0, 0, 1),
    "b": (0, 0, 0, 1),
    "m": (0, 0, 0, 1),
    "f": (0.08, 0, 0.1, 0.5),
    "v": (0.08, 0, 0.1, 0.5),
    "θ": (0.12, 0, 0.1, 0),
    "ð": (0.12, 0, 0.1, 0),
    "t": (0.1, 0, 0.25, 0),
    "d": (0.1, 0, 0.25, 0),
    "n": (0.1, 0, 0.25, 0),
    "l": (0.18, 0, 0.2, 0),
    "ɾ": (0.12, 0, 0.25, 0),
    "s": (0.08, 0, 0.3, 0),
    "z": (0.08, 0, 0.3, 0),
    "ʃ": (0.15, 0.55, 0, 0),
    "ʒ": (0.15, 0.55, 0, 0),
    "ɹ": (0.2, 0.45, 0, 0),
    "r": (0.2, 0.45, 0, 0),
    "w": (0.12, 1.0, 0, 0),
    "j": (0.15, 0, 0.55, 0),
    "k": (0.15, 0, 0.1, 0),
    "ɡ": (0.15, 0, 0.1, 0),
    "g": (0.15, 0, 0.1, 0),
    "ŋ": (0.15, 0, 0.1, 0),
    "h": (0.25, 0, 0, 0),
    "x": (0.15, 0, 0.1, 0),
    "ʔ": (0.2, 0, 0, 0),
}
UNKNOWN_VISEME = (0.3, 0, 0, 0)
VOWELS = set("aɑæʌɐɛeɪiᵻəɚɜɔɒoʊu")
AFFRICATES = {"tʃ": "ʃ", "dʒ": "ʒ"}

# Articulation gain and face offsets at full intensity per emotion.
ARTICULATION = {
    "neutral": 1.0,
    "angry": 1.2,
    "contempt": 0.85,
    "disgusted": 0.9,
    "fear": 1.05,
    "happy": 1.15,
    "sad": 0.75,
    "surprised": 1.2,
}
EXPRESSIONS = {  # negative smiles undo the portrait's own smile
    "neutral": {},
    "angry": {
        "brow_lower": 1.0,
        "eye_wide": 0.4,
        "lip_press": 0.35,
        "upper_lip_raise": 0.2,
        "nose_wrinkle": 0.3,
        "smile_left": -0.7,
        "smile_right": -0.7,
    },
    "contempt": {
        "smile_left": 0.8,
        "smile_right": -0.4,
        "eye_squint": 0.3,
        "brow_outer_raise": 0.2,
    },
    "disgusted": {
        "nose_wrinkle": 1.0,
        "upper_lip_raise": 0.8,
        "brow_lower": 0.6,
        "eye_squint": 0.5,
        "lip_corner_down": 0.5,
        "smile_left": -0.5,
        "smile_right": -0.5,
    },
    "fear": {
        "brow_inner_raise": 0.9,
        "brow_outer_raise": 0.5,
        "eye_wide": 1.0,
        "lip_spread": 0.5,
        "brow_lower": 0.3,
        "jaw_open": 0.08,
        "smile_left": -0.6,
        "smile_right": -0.6,
    },
    "happy": {
        "smile_left": 0.9,
        "smile_right": 0.9,
        "cheek_raise": 0.8,
        "eye_squint": 0.3,
        "brow_outer_raise": 0.15,
    },
    "sad": {
        "brow_inner_raise": 0.9,
        "lip_corner_down": 0.8,
        "eye_wide": -0.35,
        "smile_left": -0.7,
        "smile_right": -0.7,
    },
    "surprised": {
        "brow_inner_raise": 1.0,
        "brow_outer_raise": 1.0,
        "eye_wide": 1.0,
        "jaw_open": 0.25,
        "smile_left": -0.3,
        "smile_right": -0.3,
    },
}
FACE_INTENSITY = {1: 0.45, 2: 0.75, 3: 1.0}


@dataclasses.dataclass
class Clip:
    """One sentence placed on the timeline: [start_s, end_s) with its phonemes (absolute seconds)."""

    start_s: float
    end_s: float
    emotion: str
    intensity: int
    text: str
    phonemes: list
    energies: np.ndarray  # (P,) band RMS per phoneme (speech.Utterance.energies)
    split: str = "train"


def phoneme_segments(ipa: str, start: float, end: float) -> list:
    """[(t0, t1, (open, round, spread, press))] for one espeak IPA phoneme, stress applied."""
    stressed = "ˈ" in ipa
    core = ipa.replace("ˈ", "").replace("ˌ", "").replace("ː", "").replace("ˑ", "")
    for pair, single in AFFRICATES.items():
        core = core.replace(pair, single)
    symbols = [c for c in core if c in VISEMES] or [None]
    bounds = np.linspace(start, end, len(symbols) + 1)
    out = []
    for k, sym in enumerate(symbols):
        target = np.array(VISEMES.get(sym, UNKNOWN_VISEME), np.float64)
        if stressed and sym in VOWELS:
            target[0] *= STRESS_GAIN
        out.append((bounds[k], bounds[k + 1], target))
    return out


def mouth_tracks(clips: list, n_frames: int, fps: float) -> np.ndarray:
    """(N, 4) jaw_open, lip_round, lip_spread, lip_press per frame (frame i at time i/fps)."""
    n_track = int(np.ceil(n_frames / fps * TRACK_RATE)) + 1
    targets = np.zeros((n_track, 4))
    for clip in clips:
        gain = _scaled(ARTICULATION[clip.emotion], 1.0, clip.intensity)
        vowel = [any(c in VOWELS for c in p) for _, _, p in clip.phonemes]
        ref = np.median(clip.energies[vowel]) if any(vowel) else 1.0
        for (start, end, ipa), energy, is_vowel in zip(clip.phonemes, clip.energies, vowel):
            loud = (
                np.clip((energy / max(ref, 1e-8)) ** LOUDNESS_POWER, *LOUDNESS_RANGE)
                if is_vowel
                else 1.0
            )
            for t0, t1, target in phoneme_segments(ipa, start, end):
                a, b = round(t0 * TRACK_RATE), round(t1 * TRACK_RATE)
                targets[a : max(b, a + 1)] = target * [gain * loud, 1, 1, 1]
    smooth = scipy.ndimage.gaussian_filter1d(targets[:, :3], COARTIC_S * TRACK_RATE, axis=0)
    press = scipy.ndimage.gaussian_filter1d(targets[:, 3], CLOSURE_S * TRACK_RATE)
    press = np.clip(CLOSURE_GAIN * press, 0, 1)  # a 40 ms /p/ still reaches full closure
    smooth[:, 0] *= 1 - press
    tracks = np.concatenate([smooth, press[:, None]], 1)
    t = np.arange(n_frames) / fps * TRACK_RATE
    return np.stack([np.interp(t, np.arange(n_track), tracks[:, k]) for k in range(4)], 1)


def _scaled(full: float, neutral: float, intensity: int) -> float:
    return neutral + FACE_INTENSITY[intensity] * (full - neutral)


def emotion_offsets(emotion: str, intensity: int) -> np.ndarray:
    """(E,) constant expression offset of an emotion at intensity 1..3."""
    out = np.zeros(E)
    for name, value in EXPRESSIONS[emotion].items():
        out[_IX[name]] = FACE_INTENSITY[intensity] * value
    return out


def emotion_track(clips: list, n_frames: int, fps: float) -> np.ndarray:
    """(N, E) the emotions' part of the expression: each clip's `emotion_offsets` over its frames
    (frame i belongs to the last clip started by i/fps), blended across clip boundaries.

    Args:
      clips: objects with start_s, emotion and intensity (Clips), covering the timeline in order.
      n_frames: N.
      fps: frame rate.
    """
    t = np.arange(n_frames) / fps
    starts = np.array([c.start_s for c in clips])
    which = np.clip(np.searchsorted(starts, t, side="right") - 1, 0, len(clips) - 1)
    offsets = np.stack([emotion_offsets(c.emotion, c.intensity) for c in clips])[which]
    return scipy.ndimage.gaussian_filter1d(offsets, EMOTION_BLEND_S * fps, axis=0, mode="nearest")


def blink_track(n_frames: int, fps: float, rng: np.random.Generator) -> np.ndarray:
    """(N,) eyelid closure in [0, 1] (1 = closed)."""
    close, hold, reopen = BLINK_SHAPE_S
    t = np.arange(n_frames) / fps
    out = np.zeros(n_frames)
    onset = rng.uniform(0.5, BLINK_GAP_S[1])
    while onset < n_frames / fps:
        s = t - onset
        shape = np.interp(s, [0, close, close + hold, close + hold + reopen], [0, 1, 1, 0], 0, 0)
        out = np.maximum(out, shape)
        onset += rng.uniform(*BLINK_GAP_S)
    return out


def expression_sequence(
    clips: list, n_frames: int, fps: float, rng: np.random.Generator
) -> np.ndarray:
    """(N, E) expression coefficients for the whole timeline.

    Args:
      clips: Clips covering the timeline in order (frame i belongs to the last clip started by i/fps).
      n_frames: N.
      fps: frame rate.
      rng: source of blink times and idle motion.
    """
    exp = emotion_track(clips, n_frames, fps)
    idle = scipy.ndimage.gaussian_filter1d(rng.standard_normal((n_frames, 3)), IDLE_S * fps, axis=0)
    idle *= np.array([0.08, 0.08, 0.05]) / max(idle.std(), 1e-6)
    exp[:, _IX["brow_inner_raise"]] += idle[:, 0]
    exp[:, _IX["brow_outer_raise"]] += idle[:, 1]
    exp[:, _IX["smile_left"]] += idle[:, 2]
    exp[:, _IX["smile_right"]] += idle[:, 2]
    mouth = mouth_tracks(clips, n_frames, fps)
    for k, name in enumerate(("jaw_open", "lip_round", "lip_spread", "lip_press")):
        exp[:, _IX[name]] += mouth[:, k]
    exp[:, _IX["jaw_open"]] = np.clip(exp[:, _IX["jaw_open"]], 0, JAW_MAX)
    blink = blink_track(n_frames, fps, rng)
    for name in ("eye_wide", "eye_squint"):
        exp[:, _IX[name]] *= 1 - blink
    exp[:, _IX["blink"]] = blink
    return exp.astype(np.float32)


def head_viewmats(
    n_frames: int, fps: float, t0: np.ndarray, rng: np.random.Generator, moving: bool
) -> np.ndarray:
    """(N, 4, 4) world→camera matrices: [I | t0] for a static head, else small smooth rotations
    (yaw, pitch, roll sums of two sinusoids) and translations of the head in front of the camera."""
    mats = np.tile(np.eye(4), (n_frames, 1, 1))
    mats[:, :3, 3] = t0
    if not moving:
        return mats
    t = np.arange(n_frames) / fps
    freqs = rng.uniform(0.08, 0.35, (6, 2))
    phases = rng.uniform(0, 2 * np.pi, (6, 2))
    waves = (np.sin(2 * np.pi * freqs[None] * t[:, None, None] + phases[None]) * [0.7, 0.3]).sum(-1)
    yaw, pitch, roll = (np.deg2rad(HEAD_DEG) * waves[:, :3]).T
    cy, sy, cp, sp, cr, sr = (
        np.cos(yaw),
        np.sin(yaw),
        np.cos(pitch),
        np.sin(pitch),
        np.cos(roll),
        np.sin(roll),
    )
    ry = np.stack([[cy, 0 * cy, sy], [0 * cy, 1 + 0 * cy, 0 * cy], [-sy, 0 * cy, cy]]).transpose(
        2, 0, 1
    )
    rx = np.stack([[1 + 0 * cp, 0 * cp, 0 * cp], [0 * cp, cp, -sp], [0 * cp, sp, cp]]).transpose(
        2, 0, 1
    )
    rz = np.stack([[cr, -sr, 0 * cr], [sr, cr, 0 * cr], [0 * cr, 0 * cr, 1 + 0 * cr]]).transpose(
        2, 0, 1
    )
    mats[:, :3, :3] = rz @ rx @ ry
    mats[:, :3, 3] += np.array(HEAD_SHIFT) * waves[:, 3:]
    return mats
