"""IEMOCAP reader on a miniature release written in the real layout (2 sessions, 5 utterances)."""

import os

import numpy as np
import pytest
import soundfile

from ua3dtalk_jax.configs.stage1 import stage1_config
from ua3dtalk_jax.data import iemocap

EVAL = """% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]

[6.2901 - 8.2357]\t{d}_F000\tneu\t[2.5000, 2.5000, 2.5000]
C-E2:\tNeutral;\t()

[10.0100 - 11.3925]\t{d}_F001\texc\t[3.5000, 3.5000, 3.0000]

[14.8872 - 18.0175]\t{d}_M000\tfru\t[2.0000, 3.5000, 3.5000]

[19.2900 - 20.7875]\t{d}_M001\txxx\t[2.5000, 3.0000, 3.0000]
"""


@pytest.fixture()
def release(tmp_path):
    for s, d in ((1, "Ses01F_impro01"), (2, "Ses02M_script01_1")):
        ev = tmp_path / f"Session{s}" / "dialog" / "EmoEvaluation"
        ev.mkdir(parents=True)
        (ev / f"{d}.txt").write_text(EVAL.format(d=d))
        # an AppleDouble file, as Mac-made copies of the release carry: not an evaluation file
        (ev / f"._{d}.txt").write_bytes(b"\x00\x05\x16\x07 Mac OS X")
        wd = tmp_path / f"Session{s}" / "sentences" / "wav" / d
        wd.mkdir(parents=True)
        for u in ("F000", "F001", "M000", "M001"):
            tone = 0.1 * np.sin(np.arange(8000) * 0.03 * (1 + len(u)))
            soundfile.write(str(wd / f"{d}_{u}.wav"), tone.astype(np.float32), 16000)
    os.remove(
        tmp_path
        / "Session2"
        / "sentences"
        / "wav"
        / "Ses02M_script01_1"
        / "Ses02M_script01_1_F000.wav"
    )  # a missing wav is skipped
    return str(tmp_path)


def test_four_class_mapping(release):
    utts = iemocap.list_utterances(release, "four")
    got = {(u["id"], u["label"]) for u in utts}
    assert got == {
        ("Ses01F_impro01_F000", 0),
        ("Ses01F_impro01_F001", 1),
        ("Ses02M_script01_1_F001", 1),
    }
    assert iemocap.class_names("four")[1] == "happy"


def test_full_label_set_and_sessions(release):
    utts = iemocap.list_utterances(release, "full", sessions=(1,))
    assert [iemocap.FULL_LABELS[u["label"]] for u in utts] == ["neu", "exc", "fru"]
    with pytest.raises(FileNotFoundError):
        iemocap.list_utterances(os.path.join(release, "nothing"))


def test_corpus_windows_stay_inside_utterances(release):
    e = stage1_config("tiny").emotion
    utts = iemocap.list_utterances(release, "four")
    corpus = iemocap.iemocap_corpus(utts, e)
    assert len(corpus["centres"]) == len(corpus["labels"]) == 3 * 5  # 0.5 s / 0.1 s hop each
    assert corpus["labels"].tolist() == [0] * 5 + [1] * 5 + [1] * 5
