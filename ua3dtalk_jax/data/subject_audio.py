"""A subject's stage-2 audio windows, loaded once when `Subject.open` runs.

The windows come from a precomputed aud_*.npy (DeepSpeech, HuBERT, Esperanto: `audio.precomputed`)
or from our mel f_audio of aud.wav, cached as aud_mel.npy under `f_audio_cache_params` (which the
writer shares, so a freshly written subject needs no recompute). Either source is checked against
the video's length: more than `MAX_AV_MISMATCH_S` apart is an error, a frame or more is a warning,
and the windows are trimmed or padded (last row repeated) to one per img_id.
"""

from __future__ import annotations

import os
import warnings

import numpy as np

from ua3dtalk_jax.audio import features as audio_features
from ua3dtalk_jax.audio import precomputed
from ua3dtalk_jax.audio.cache import cached_array
from ua3dtalk_jax.data import layout

MAX_AV_MISMATCH_S = 1.0  # beyond this an audio/video length difference is an error


def f_audio_cache_params(fps: float, n_frames: int, n_mels: int) -> dict:
    """The parameters aud_mel.npy is keyed on (shared by the writer and the loader)."""
    window = audio_features.F_AUDIO_WINDOW
    return {"fps": float(fps), "n": int(n_frames), "n_mels": int(n_mels), "window": window, "v": 1}


def load_windows(path: str, info: dict, fps: float, num_ids: int, choice: str):
    """Loads a subject's audio windows, one per img_id.

    Args:
      path: the subject directory.
      info: its subject.json ({} for a plain TalkingGaussian dir); `audio.n_mels` sets mel's F.
      fps: the video frame rate the lengths are compared at.
      num_ids: rows wanted (one per img_id / aud_id).
      choice: `data.audio_feature` ("auto", a kind or a file name; see `Subject.open`).

    Returns:
      (windows (num_ids, Wa, F) float32, kind, the file name read).

    Raises:
      FileNotFoundError naming the missing file; ValueError when audio and video lengths differ by
      more than MAX_AV_MISMATCH_S.
    """
    kind = precomputed.kind_of_file(choice) or precomputed.check_choice(choice)
    if kind == precomputed.AUTO:
        kind = next(
            (k for k, f in precomputed.FILES.items() if os.path.exists(os.path.join(path, f))),
            precomputed.MEL,
        )
    if kind != precomputed.MEL:
        name = precomputed.FILES[kind]
        src = os.path.join(path, name)
        if not os.path.exists(src):
            raise FileNotFoundError(
                f"{src}: missing; data.audio_feature={kind} reads it (auto picks "
                f"whichever of {', '.join(precomputed.FILES.values())} exists, else mel "
                "from aud.wav)"
            )
        feats = precomputed.load_windows(src, kind)
        check_av(src, len(feats) / fps, num_ids, fps)
    else:
        name = layout.WAV
        src = os.path.join(path, layout.WAV)
        if not os.path.exists(src):
            raise FileNotFoundError(f"{src}: missing (and no precomputed aud_*.npy)")
        check_av(src, wav_seconds(src), num_ids, fps)
        n_mels = int(info.get("audio", {}).get("n_mels", audio_features.F_AUDIO_DIM))
        params = f_audio_cache_params(fps, num_ids, n_mels)

        def compute():
            wav = audio_features.load_audio(src)
            return audio_features.f_audio(wav, fps, num_ids, n_mels=n_mels)

        feats = cached_array(path, layout.MEL_FEATURE, params, compute, source=src)
    if len(feats) != num_ids:
        pad = max(num_ids - len(feats), 0)
        feats = np.concatenate([feats[:num_ids], np.repeat(feats[-1:], pad, axis=0)])
    return np.asarray(feats, np.float32), kind, name


def check_av(path: str, source_s: float, n_frames: int, fps: float):
    """Refuses audio more than MAX_AV_MISMATCH_S off the video's length; warns from one frame."""
    video_s = n_frames / fps
    diff = source_s - video_s
    if abs(diff) > MAX_AV_MISMATCH_S:
        raise ValueError(
            f"{path}: audio lasts {source_s:.2f} s but the {n_frames} frames at {fps:g} fps "
            f"last {video_s:.2f} s (difference over {MAX_AV_MISMATCH_S:g} s)"
        )
    if abs(diff) * fps >= 1:
        what = "padded" if diff < 0 else "trimmed"
        warnings.warn(f"{path}: audio and video differ by {diff:+.3f} s; audio {what}")


def wav_seconds(path: str) -> float:
    """The duration of a wav file (its header; decoding it when the header is unreadable)."""
    import soundfile

    try:
        return soundfile.info(path).duration
    except (soundfile.LibsndfileError, RuntimeError):
        return len(audio_features.load_audio(path)) / audio_features.SAMPLE_RATE
