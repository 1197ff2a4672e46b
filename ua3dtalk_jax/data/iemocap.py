"""Reader of IEMOCAP's released layout for speech-emotion pre-training (paper §2.2).

IEMOCAP (USC SAIL; by signed release form only — nothing is downloaded here) is laid out as
    <root>/Session{1..5}/dialog/EmoEvaluation/<dialog>.txt
    <root>/Session{1..5}/sentences/wav/<dialog>/<utterance>.wav
and each EmoEvaluation file has one summary line per utterance:
    [6.2901 - 8.2357]\tSes01F_impro01_F000\tneu\t[2.5000, 2.5000, 2.5000]
Labels: neu hap exc sad ang fru fea sur dis oth xxx (xxx = no majority). `label_set="four"` is
CA-MSER's 4-class protocol (neutral, happy + excited, sad, angry; everything else dropped);
`label_set="full"` keeps every label but xxx. `iemocap_corpus` turns the utterances into the
pre-training corpus dict of `train/stage1/emotion.py` (one stream, windows inside utterances).
"""

from __future__ import annotations

import glob
import os
import re

from ua3dtalk_jax.audio import emotion_inputs, features

FOUR_CLASSES = ("neutral", "happy", "sad", "angry")
FOUR_MAP = {"neu": 0, "hap": 1, "exc": 1, "sad": 2, "ang": 3}
FULL_LABELS = ("neu", "hap", "exc", "sad", "ang", "fru", "fea", "sur", "dis", "oth")
_LINE = re.compile(r"^\[([\d.]+) - ([\d.]+)\]\s+(\S+)\s+(\S+)\s+\[")


def read_evaluation(path: str) -> list[tuple[str, str, float, float]]:
    """(utterance id, label code, start s, end s) for each summary line of an EmoEvaluation file."""
    out = []
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            m = _LINE.match(line.strip())
            if m:
                out.append((m.group(3), m.group(4), float(m.group(1)), float(m.group(2))))
    return out


def list_utterances(root: str, label_set: str = "four", sessions=(1, 2, 3, 4, 5)) -> list[dict]:
    """Labelled utterances of an IEMOCAP release.

    Args:
      root: the folder holding Session1..Session5.
      label_set: "four" (CA-MSER's 4 classes) or "full" (all but xxx).
      sessions: which sessions to read (speaker-independent splits leave one out).
    Returns:
      [{"id", "wav" (path), "label" (int), "session"}] sorted by id; class names via `class_names`.
    Raises:
      FileNotFoundError: no EmoEvaluation file under `root`.
    """
    if label_set not in ("four", "full"):
        raise ValueError(f"label_set must be 'four' or 'full', got {label_set!r}")
    out = []
    found = False
    for s in sessions:
        sess = os.path.join(root, f"Session{s}")
        for ev in sorted(glob.glob(os.path.join(sess, "dialog", "EmoEvaluation", "*.txt"))):
            found = True
            dialog = os.path.splitext(os.path.basename(ev))[0]
            for utt, code, _, _ in read_evaluation(ev):
                if label_set == "four":
                    label = FOUR_MAP.get(code)
                else:
                    label = FULL_LABELS.index(code) if code in FULL_LABELS else None
                wav = os.path.join(sess, "sentences", "wav", dialog, f"{utt}.wav")
                if label is not None and os.path.exists(wav):
                    out.append({"id": utt, "wav": wav, "label": label, "session": s})
    if not found:
        raise FileNotFoundError(f"{root}: no Session*/dialog/EmoEvaluation/*.txt (IEMOCAP layout)")
    return sorted(out, key=lambda u: u["id"])


def class_names(label_set: str) -> tuple[str, ...]:
    return FOUR_CLASSES if label_set == "four" else FULL_LABELS


def iemocap_corpus(utterances: list[dict], emotion_cfg) -> dict:
    """Concatenates utterances (half a window of silence between) into a pre-training corpus.

    Returns:
      {"stream", "centres" (M,), "labels" (M,)} with window centres every `clip_hop_s` inside each
      utterance (at least its middle), numpy arrays.
    """
    wavs = (features.load_audio(u["wav"]) for u in utterances)
    return emotion_inputs.clips_corpus(wavs, [u["label"] for u in utterances], emotion_cfg)
