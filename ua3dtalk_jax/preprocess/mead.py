"""MEAD (Wang et al., ECCV 2020) → one subject: a speaker's frontal clips with emotion labels.

Users download MEAD themselves (research licence). The release layout, per speaker (M003, W011…):

    <root>/<ID>/video/<view>/<emotion>/level_<n>/<NNN>.mp4     views front, down, top, left_30, …
    <root>/<ID>/audio/<emotion>/level_<n>/<NNN>.m4a            the same clip's audio (48 kHz)

`root` may be the folder holding speaker folders or a speaker folder itself. Emotion folder names
are `types.EMOTIONS` (angry, contempt, disgusted, fear, happy, neutral, sad, surprised); neutral
has only level_1. The paper trains on M003 and M030 at 30 fps and 512² with EDTalk's fixed face
window (MEAD's camera moves between sessions): `build_subject` runs `preprocess.pipeline` on the
chosen clips with one automatic crop over all of them, labels every frame with its clip's emotion
and level, and splits train/test by clip: in every (emotion, level) group the last clips by name
(`test_fraction`, at least one when the group has two or more) are test clips.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re

from ua3dtalk_jax.preprocess.pipeline import Clip, preprocess
from ua3dtalk_jax.types import EMOTIONS

VIEWS = ("front", "down", "top", "left_30", "left_60", "right_30", "right_60")
AUDIO_EXTS = (".m4a", ".wav", ".aac", ".mp3")
TEST_FRACTION = 1 / 11  # ER-NeRF's 10/11 train share, applied per (emotion, level) group
MEAD_FPS, MEAD_SIZE = 30.0, 512  # the paper's emotional-data setting
_LEVEL = re.compile(r"level_(\d+)$")


@dataclasses.dataclass(frozen=True)
class MeadClip:
    """One MEAD clip: video path, its audio (None = the video's own track), labels and name."""

    video: str
    audio: str | None
    emotion: str
    level: int
    name: str


def speaker_dir(root: str, speaker: str | None = None) -> str:
    """The folder holding video/ (and audio/) for `speaker` under `root`.

    Raises:
      FileNotFoundError: naming what is missing and which speakers exist.
    """
    root = os.fspath(root)
    if speaker is None:
        if os.path.isdir(os.path.join(root, "video")):
            return root
        raise FileNotFoundError(f"{root}: no video/ folder; pass a speaker ({_speakers(root)})")
    for cand in (os.path.join(root, speaker), root):
        named = cand != root or os.path.basename(os.path.normpath(root)) == speaker
        if named and os.path.isdir(os.path.join(cand, "video")):
            return cand
    raise FileNotFoundError(
        f"{root}: no speaker {speaker!r} with a video/ folder ({_speakers(root)})"
    )


def _speakers(root: str) -> str:
    found = sorted(
        d
        for d in (os.listdir(root) if os.path.isdir(root) else [])
        if os.path.isdir(os.path.join(root, d, "video"))
    )
    return "speakers found: " + (", ".join(found) if found else "none")


def find_clips(
    root: str,
    speaker: str | None = None,
    *,
    view: str = "front",
    emotions=None,
    levels=None,
) -> list[MeadClip]:
    """Lists a speaker's clips of one view, sorted by (emotion, level, name).

    Args:
      root: MEAD root or speaker folder.
      speaker: e.g. "M003" (None when root is the speaker folder).
      view: camera view folder.
      emotions: names to keep (None = all of EMOTIONS found).
      levels: intensity levels to keep (None = all).

    Returns:
      the clips; audio is the matching file under audio/ when present.

    Raises:
      FileNotFoundError / ValueError when nothing matches or names are unknown.
    """
    if view not in VIEWS:
        raise ValueError(f"unknown MEAD view {view!r}; known {VIEWS}")
    bad = set(emotions or ()) - set(EMOTIONS)
    if bad:
        raise ValueError(f"unknown emotions {sorted(bad)}; known {EMOTIONS}")
    base = speaker_dir(root, speaker)
    vroot = os.path.join(base, "video", view)
    if not os.path.isdir(vroot):
        raise FileNotFoundError(f"{vroot}: no such view folder")
    clips = []
    for emotion in sorted(os.listdir(vroot)):
        edir = os.path.join(vroot, emotion)
        if not os.path.isdir(edir) or (emotions is not None and emotion not in emotions):
            continue
        if emotion not in EMOTIONS:
            raise ValueError(f"{edir}: unknown emotion folder (known {EMOTIONS})")
        for level_name in sorted(os.listdir(edir)):
            m = _LEVEL.match(level_name)
            if m is None or (levels is not None and int(m.group(1)) not in levels):
                continue
            ldir = os.path.join(edir, level_name)
            for fname in sorted(os.listdir(ldir)):
                stem, ext = os.path.splitext(fname)
                if ext.lower() != ".mp4":
                    continue
                audio = None
                for aext in AUDIO_EXTS:
                    cand = os.path.join(base, "audio", emotion, level_name, stem + aext)
                    if os.path.isfile(cand):
                        audio = cand
                        break
                clips.append(
                    MeadClip(os.path.join(ldir, fname), audio, emotion, int(m.group(1)), stem)
                )
    if not clips:
        raise FileNotFoundError(f"{vroot}: no clips match (emotions={emotions}, levels={levels})")
    return clips


def split_clips(clips, test_fraction: float = TEST_FRACTION, max_per_group: int | None = None):
    """Train/test split by clip, stratified by (emotion, level).

    Args:
      clips: MeadClip list (as from `find_clips`).
      test_fraction: share of each group's clips (the last by name) used for testing; a group of
        two or more clips gives at least one, a single clip stays in train.
      max_per_group: keep only the first clips of each group (None = all).

    Returns:
      (train, test) lists of MeadClip.
    """
    groups: dict = {}
    for c in clips:
        groups.setdefault((c.emotion, c.level), []).append(c)
    train, test = [], []
    for key in sorted(groups, key=lambda k: (EMOTIONS.index(k[0]), k[1])):
        group = sorted(groups[key], key=lambda c: c.name)[:max_per_group]
        n_test = 0 if len(group) < 2 else max(1, math.floor(len(group) * test_fraction + 0.5))
        train += group[: len(group) - n_test]
        test += group[len(group) - n_test :]
    return train, test


def build_subject(
    root: str,
    out_dir: str,
    *,
    speaker: str | None = None,
    emotions=None,
    levels=None,
    max_per_group: int | None = None,
    test_fraction: float = TEST_FRACTION,
    fps: float = MEAD_FPS,
    size: int = MEAD_SIZE,
    **preprocess_kw,
) -> str:
    """Builds one subject from a speaker's frontal clips (train clips first, then test).

    Args:
      root, speaker, emotions, levels: as `find_clips` (view "front").
      max_per_group, test_fraction: as `split_clips`.
      fps, size: output rate and side (the paper: 30 fps, 512²).
      **preprocess_kw: passed to `preprocess.pipeline.preprocess` (crop, workers, progress, …).

    Returns:
      out_dir, a subject with per-frame emotion and intensity labels; its validation split is the
      test clips.
    """
    clips = find_clips(root, speaker, emotions=emotions, levels=levels)
    train, test = split_clips(clips, test_fraction, max_per_group)
    jobs = [
        Clip(c.video, c.audio, c.emotion, c.level, split)
        for split, part in (("train", train), ("val", test))
        for c in part
    ]
    name = speaker or os.path.basename(os.path.normpath(root))
    return preprocess(jobs, out_dir, fps=fps, size=size, source=f"MEAD {name}", **preprocess_kw)
