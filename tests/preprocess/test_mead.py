"""MEAD release layout → clip list, stratified split by clip, and a labelled subject."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.preprocess import media
from ua3dtalk_jax.data import Subject
from ua3dtalk_jax.preprocess import mead
from ua3dtalk_jax.types import EMOTIONS


def _tree(root, speaker="M003", groups=None, audio=True, make=None):
    """Writes <root>/<speaker>/video/front/<emotion>/level_<n>/<NNN>.mp4 (+ audio/… .m4a)."""
    groups = groups or {("angry", 1): 3, ("angry", 3): 2, ("neutral", 1): 4, ("sad", 2): 1}
    for (emotion, level), count in groups.items():
        vdir = os.path.join(root, speaker, "video", "front", emotion, f"level_{level}")
        adir = os.path.join(root, speaker, "audio", emotion, f"level_{level}")
        os.makedirs(vdir, exist_ok=True)
        os.makedirs(adir, exist_ok=True)
        for k in range(count):
            path = os.path.join(vdir, f"{k + 1:03d}.mp4")
            make(path, emotion, level, k) if make else open(path, "wb").close()
            if audio and not make:
                open(os.path.join(adir, f"{k + 1:03d}.m4a"), "wb").close()
    os.makedirs(os.path.join(root, speaker, "video", "left_30", "angry", "level_1"), exist_ok=True)
    return root


def test_find_and_split(tmp_path):
    root = _tree(str(tmp_path))
    clips = mead.find_clips(root, "M003")
    assert len(clips) == 10 and all(c.audio and c.audio.endswith(".m4a") for c in clips)
    assert [c.emotion for c in clips[:5]] == ["angry"] * 5 and clips[3].level == 3
    assert mead.find_clips(os.path.join(root, "M003")) == clips  # the speaker folder itself
    assert len(mead.find_clips(root, "M003", emotions=["sad"], levels=[2])) == 1
    train, test = mead.split_clips(clips)
    # one test clip per group of ≥ 2 (stratified), the last by name; a single clip stays in train
    assert sorted((c.emotion, c.level, c.name) for c in test) == [
        ("angry", 1, "003"),
        ("angry", 3, "002"),
        ("neutral", 1, "004"),
    ]
    assert len(train) == 7 and not set(train) & set(test)
    train, test = mead.split_clips(clips, max_per_group=2)
    assert len(train) + len(test) == 7


def test_layout_errors(tmp_path):
    root = _tree(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="speakers found: M003"):
        mead.find_clips(root, "M030")
    with pytest.raises(FileNotFoundError, match="no clips match"):
        mead.find_clips(root, "M003", emotions=["happy"])
    with pytest.raises(ValueError, match="unknown emotions"):
        mead.find_clips(root, "M003", emotions=["joyful"])
    with pytest.raises(ValueError, match="unknown MEAD view"):
        mead.find_clips(root, "M003", view="back")
    os.makedirs(os.path.join(root, "M003", "video", "front", "bored", "level_1"))
    with pytest.raises(ValueError, match="unknown emotion folder"):
        mead.find_clips(root, "M003")


def test_cli_selects_clips_and_reports_a_bad_one(tmp_path):
    """experiments.make_mead's flags reach find_clips (levels as ints) and errors exit cleanly."""
    root = _tree(str(tmp_path / "MEAD"))
    cmd = [
        sys.executable,
        "-m",
        "experiments.make_mead",
        f"--root={root}",
        "--speaker=M003",
        f"--out={tmp_path}/o",
        "--emotions=angry,sad",
        "--levels=2",
    ]
    repo = Path(__file__).resolve().parents[2]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=repo, check=False)
    # angry has levels 1 and 3, sad level 2: the filter is (emotion in list) and (level in list),
    # so sad/level_2 matches and preprocessing starts — on the empty placeholder mp4: unreadable
    assert proc.returncode == 1 and "sad/level_2/001.mp4: unreadable" in proc.stderr
    assert "Traceback" not in proc.stderr and not os.path.exists(tmp_path / "o" / "subject.json")


def test_build_labelled_subject(tmp_path):
    """4 one-second clips of the (moving) astronaut; audio beside for some, in the mp4 for others."""

    def make(path, emotion, level, k):
        frames = media.astronaut_frames(30, media.ASTRONAUT_SIDE, seed=k + 10 * level)
        wav = media.tone(1.0, freq=200 + 50 * k)
        if k == 0:  # audio beside the video (MEAD's audio/ tree), none in the mp4
            media.write_video(path, frames, 30)
            adir = os.path.dirname(path).replace("/video/front/", "/audio/")
            media.write_video(
                os.path.join(adir, "001.m4a").replace(".m4a", ".mp4"), frames[:2], 30, wav
            )
            os.rename(os.path.join(adir, "001.mp4"), os.path.join(adir, "001.m4a"))
        else:
            media.write_video(path, frames, 30, wav)

    root = _tree(str(tmp_path / "MEAD"), groups={("happy", 2): 2, ("neutral", 1): 2}, make=make)
    out = mead.build_subject(
        root, str(tmp_path / "M003"), speaker="M003", size=96, workers=1, progress=False
    )
    s = Subject.open(out)
    assert len(s) == 120 and s.fps == 30 and s.size == (96, 96)
    labels = [
        (EMOTIONS[s.frame(i)["emotion"]], int(s.frame(i)["intensity"])) for i in (0, 35, 65, 95)
    ]
    # groups in EMOTIONS order (neutral first); train clips, then the test clips
    assert labels == [("neutral", 1), ("happy", 2), ("neutral", 1), ("happy", 2)]
    np.testing.assert_array_equal(s.split("val"), np.arange(60, 120))  # the two test clips
    meta = json.loads(Path(out, "subject.json").read_text())
    assert meta["source"] == "MEAD M003"
    order = [c["video"].split("front/")[1] for c in meta["metadata"]["preprocess"]["clips"]]
    assert order[2:] == ["neutral/level_1/002.mp4", "happy/level_2/002.mp4"]
    assert s.wav().shape[0] == 120 * 16000 // 30
