"""Stage 2's audio input: which kind of per-frame audio windows a subject is trained on.

TalkingGaussian / ER-NeRF / UA-3DTalk preprocessing writes the windows of a pretrained speech
network beside the frames; this project computes its own log-mel windows from aud.wav when there
are none (`audio.features.f_audio`). `data.audio_feature` names the kind:

    auto        the folder's precomputed windows in the order aud_ds.npy, aud_hu.npy, aud_eo.npy;
                else mel
    deepspeech  aud_ds.npy   DeepSpeech 0.1 character logits  [N, 16, 29]
    hubert      aud_hu.npy   HuBERT-large hidden states       [N, 2, 1024] (two 50 Hz steps)
    esperanto   aud_eo.npy   wav2vec 2.0 (ER-NeRF's esperanto) [N, 16, 44]
    mel         aud.wav      our 32-band log-mel windows      [N, 16, 32]

Shapes accepted in a .npy (`load_windows`), all returned as (N, Wa, F) float32 — Wa steps of F
features per video frame, time before features, the layout TalkingGaussian saves and then
transposes to [N, F, Wa] for its Conv1d:
  * [N, Wa, F]: as saved (DeepSpeech and esperanto Wa = 16, HuBERT Wa = 2);
  * [N, F, Wa] with F the kind's known width and Wa ≤ 16: the transposed layout, turned back;
  * [N, F]: one vector per frame (ER-NeRF-family encoders such as SyncTalk's audio-visual
    encoder), read as Wa = 1;
  * integer [N, 16] DeepSpeech labels (ER-NeRF's --emb mode) are refused: the network takes logits.
The network's input width follows what was loaded (AudioNet's first convolution); the workdir
records the kind and the window shape, and inference for such a model takes the new clip's .npy
beside its wav, as TalkingGaussian's `--aud` does.
"""

from __future__ import annotations

import os

import numpy as np

MEL = "mel"
AUTO = "auto"
FILES = {"deepspeech": "aud_ds.npy", "hubert": "aud_hu.npy", "esperanto": "aud_eo.npy"}
KINDS = (*FILES, MEL)  # what a trained model can have been trained on
CHOICES = (AUTO, *KINDS)  # what data.audio_feature accepts
WIDTHS = {"deepspeech": 29, "hubert": 1024, "esperanto": 44}  # the tools' own feature widths
MAX_STEPS = 16  # the longest window any of these tools writes per frame


def check_choice(choice: str, what: str = "data.audio_feature") -> str:
    """`choice` if it is one of CHOICES, else a ValueError naming `what`."""
    if choice not in CHOICES:
        raise ValueError(f"{what}={choice!r}: choose one of {', '.join(CHOICES)}")
    return choice


def kind_of_file(name: str) -> str | None:
    """The kind a file name stands for ("aud_ds.npy" → "deepspeech"), or None."""
    base = os.path.basename(name)
    return next((k for k, f in FILES.items() if f == base), None)


def describe(kind: str, steps: int, width: int) -> str:
    """ "deepspeech (aud_ds.npy, windows [16, 29])" — for log lines and refusals."""
    source = FILES.get(kind, "aud.wav")
    return f"{kind} ({source}, windows [{steps}, {width}])"


def load_windows(path: str, kind: str | None = None) -> np.ndarray:
    """Reads precomputed per-frame audio windows (see the module docstring).

    Args:
      path: the .npy file.
      kind: its kind (for the transposed-layout rule and messages; None: from the file name).
    Returns:
      (N, Wa, F) float32.
    Raises:
      FileNotFoundError: no such file. ValueError naming the file: unreadable, empty, integer
        labels, a shape of another rank, non-finite values.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such audio feature file")
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise ValueError(f"{path}: unreadable .npy ({type(e).__name__}: {e})") from None
    kind = kind or kind_of_file(path)
    if arr.ndim not in (2, 3) or arr.shape[0] == 0 or arr.size == 0:
        raise ValueError(
            f"{path}: shape {arr.shape}; expected per-frame windows [N, steps, features] "
            "(e.g. DeepSpeech [N, 16, 29], HuBERT [N, 2, 1024]) or vectors [N, features]"
        )
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(
            f"{path}: {arr.dtype} values of shape {arr.shape}: label indices (ER-NeRF's --emb "
            "mode) are not supported; save the network's float outputs (DeepSpeech logits "
            "[N, 16, 29])"
        )
    if arr.ndim == 2:
        arr = arr[:, None, :]
    width = WIDTHS.get(kind)
    transposed = width is not None and arr.shape[2] != width and arr.shape[1] == width
    if transposed and arr.shape[2] <= MAX_STEPS:
        arr = np.swapaxes(arr, 1, 2)  # [N, F, Wa], the layout the Conv1d reads
    arr = np.ascontiguousarray(arr, np.float32)
    if not np.all(np.isfinite(arr)):
        bad = int(np.argmax(~np.isfinite(arr).reshape(len(arr), -1).all(1)))
        raise ValueError(f"{path}: non-finite values (first in frame {bad})")
    return arr
