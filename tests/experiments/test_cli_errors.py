"""Every command-line tool, given bad input, exits non-zero with ONE line on stderr ("<tool>: …", no
traceback, no absl usage text) and leaves nothing new where it would have written.

The table below is the audit of issue 27 §3 plus cases of our own. Each tool runs all its cases in
one process (`cli_cases.py`), so the table costs one interpreter start per tool.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import soundfile

from tests.data import tg_layout
from ua3dtalk_jax.configs import apply_overrides, get_config
from ua3dtalk_jax.data import Subject
from ua3dtalk_jax.data.stage2_audio import resolve_audio
from ua3dtalk_jax.head.workdir import Workdir

# (arguments, regex the one stderr line must match, folders that must not change); names in
# capitals are replaced by the paths of the `world` fixture.
CASES = {
    "train": [
        (["--set=train.face.iterations=abc"], r"train.face.iterations takes a int", []),
        (["--set=seed=1.5"], r"seed takes a int \(like 0\), not 1.5", []),
        (["--set=train.checkpoint_every=0"], r"train.checkpoint_every=0: must be ≥ 1", []),
        (["--set=train.face.iterations=-5"], r"must be a finite number ≥ 0", []),
        (["--set=data.batch_size=0"], r"data.batch_size=0: must be ≥ 1", []),
        (["--set=data.audio_feature=wav"], r"data.audio_feature='wav': choose one of", []),
        (["--set=nope=1"], r"unknown config key 'nope'", []),
        (["--subject=EMPTY", "--workdir=WNEW"], r"transforms_train.json: missing", ["ROOT"]),
        (["--subject=EMPTY", "--workdir=WNEW", "--novideo"], r"transforms_train.json", ["ROOT"]),
        (["--subject=nope", "--data_root=ROOT"], r"--subject=nope: neither a directory", ["ROOT"]),
        (
            ["--subject=TG", "--workdir=WOTHER", "--config=tiny"],
            r"trained with another config \(differs in seed\)",
            ["WOTHER", "TG"],
        ),
        (
            ["--subject=TG", "--workdir=WNEW", "--config=tiny", "--stage=2"],
            r"no stage-1 checkpoint.*--stage=1",
            ["ROOT"],
        ),
        (
            ["--subject=TG", "--workdir=WNEW", "--set=data.audio_feature=hubert"],
            r"aud_hu.npy: missing; data.audio_feature=hubert reads it",
            ["ROOT"],
        ),
        (
            ["--subject=TG", "--workdir=WNEW", "--config=paper"],
            (
                r"stage1.syncnet.pretrained: the paper preset uses Prior Extraction's SyncNet; pass "
                r"--set=stage1.syncnet.pretrained=/path/lipsync_expert.pth, or .*=none"
            ),
            ["ROOT"],
        ),
        (["--stage=3"], r"flag --stage=3: value should be one of", []),
        (["--bogus=1"], r"Unknown command line flag 'bogus'", []),
        (["positional"], r"unexpected arguments \['positional'\]", []),
    ],
    "infer": [
        ([], r"--workdir is required", []),
        (
            ["--workdir=NOPE", "--out=OUT/o.mp4", "--audio=SPEECH"],
            r"--workdir=.*nope: no such directory",
            ["OUT"],
        ),
        (["--workdir=WCFG", "--out=OUT/o.avi", "--audio=SPEECH"], r"expected a .mp4", ["OUT"]),
        (["--workdir=WCFG", "--out=OUT/o.mp4"], r"--audio is missing: .*--audio=NEW.wav", ["OUT"]),
        (["--workdir=WCFG", "--out=OUT/o.mp4", "--audio=OUT/none.wav"], r"none.wav", ["OUT"]),
        (["--workdir=WCFG", "--out=OUT/o.mp4", "--audio=SILENT"], r"the audio is silent", ["OUT"]),
        (
            ["--workdir=WCFG", "--out=OUT/o.mp4", "--audio=GARBAGE"],
            r"garbage.wav: cannot decode",
            ["OUT"],
        ),
        (
            [
                "--workdir=WCFG",
                "--out=OUT/o.mp4",
                "--audio=SPEECH",
                "--emotion=happy",
                "--emotion_mix=sad:1",
            ],
            r"--emotion and --emotion_mix are exclusive",
            ["OUT"],
        ),
        (
            [
                "--workdir=WCFG",
                "--out=OUT/o.mp4",
                "--audio=SPEECH",
                "--emotion=happy",
                "--intensity=5",
            ],
            r"--intensity=5: must be one of",
            ["OUT"],
        ),
        (
            ["--workdir=WCFG", "--out=OUT/o.mp4", "--audio=SPEECH", "--audio_features=FEATS"],
            r"trained on mel .* drop the audio features",
            ["OUT"],
        ),
        (
            ["--workdir=WCFG", "--out=OUT/o.mp4", "--audio=SPEECH", "--poses=OUT/p.npy"],
            r"p.npy",
            ["OUT"],
        ),
    ],
    "evaluate": [
        ([], r"--workdir is required", []),
        (["--workdir=NOPE"], r"--workdir=.*nope: no such directory", []),
        (["--workdir=WCFG"], r"--subject=synthetic: no subject directory", ["WCFG"]),
        (["--split=test"], r"flag --split=test", []),
    ],
    "visualize": [
        ([], r"--workdir is required", []),
        (["--workdir=NOPE"], r"--workdir=.*nope: no such directory", []),
        (["--what=bogus"], r"flag --what=bogus", []),
    ],
    "ablate": [
        (["--set=model.ablation.prior=False"], r"the ablation sets model.ablation", ["ROOT"]),
        (["--configurations=Bogus"], r"--configurations: unknown \['Bogus'\]", ["ROOT"]),
        (["--set=seed=1.5"], r"seed takes a int", ["ROOT"]),
    ],
    "preprocess": [
        ([], r"--video is required", []),
        (["--video=OUT/missing.mp4", "--out=OUT/subj"], r"missing.mp4", ["OUT"]),
        (["--video=ZERO", "--out=OUT/subj"], r"zero.mp4", ["OUT"]),
        (["--video=ZERO", "--out=OUT/subj", "--size=-3"], r"--size must be in", ["OUT"]),
        (["--video=ZERO", "--out=SPEECH"], r"is a file, not a folder", ["OUT"]),
    ],
    "make_subject": [
        ([], r"--out is required", []),
        (["--out=TG"], r"is not empty; pass --overwrite", ["TG"]),
        (
            ["--out=OUT/s", "--photo=OUT/missing.jpg"],
            r"--photo=.*missing.jpg: no such file",
            ["OUT"],
        ),
        (["--out=OUT/s", "--size=-3"], r"--size must be in \[48, 4096\], got -3", ["OUT"]),
        (["--out=OUT/s", "--fps=0"], r"--fps must be in", ["OUT"]),
    ],
    "make_mead": [
        ([], r"--root is required", []),
        (["--root=OUT/nope", "--out=OUT/m"], r"--root=.*nope: no such folder", ["OUT"]),
        (["--root=EMPTY", "--out=OUT/m", "--levels=a"], r"--levels=a: expected integers", ["OUT"]),
        (["--root=EMPTY", "--out=OUT/m"], r"empty: no video/ folder; pass a speaker", ["OUT"]),
    ],
}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The files the cases point at."""
    root = tmp_path_factory.mktemp("cli")
    w = {k: root / k.lower() for k in ("ROOT", "EMPTY", "OUT", "TG", "WOTHER", "WCFG")}
    for k in ("ROOT", "EMPTY", "OUT"):
        w[k].mkdir()
    w["WNEW"] = w["ROOT"] / "wnew"
    w["NOPE"] = root / "nope"
    tg_layout.write_tg_subject(str(w["TG"]), 12)
    other = apply_overrides(get_config("tiny"), ["seed=5"])
    resolve_audio(other.data, other.model.audio, Subject.open(str(w["TG"])))
    Workdir(str(w["WOTHER"])).check_config(other)
    cfg = get_config("tiny")
    cfg.data.audio_feature = "mel"
    Workdir(str(w["WCFG"])).check_config(cfg)
    rng = np.random.default_rng(0)
    w["SPEECH"] = root / "speech.wav"
    soundfile.write(w["SPEECH"], tg_layout.speech_like(16000, rng), 16000)
    w["SILENT"] = root / "silent.wav"
    soundfile.write(w["SILENT"], np.zeros(16000), 16000)
    w["GARBAGE"] = root / "garbage.wav"
    w["GARBAGE"].write_bytes(b"RIFF" + bytes(rng.integers(0, 256, 2000, dtype=np.uint8)))
    w["ZERO"] = root / "zero.mp4"
    w["ZERO"].write_bytes(b"")
    w["FEATS"] = root / "feats.npy"
    np.save(w["FEATS"], np.zeros((25, 16, 29), np.float32))
    return w


def _listing(path) -> list[str]:
    if not os.path.exists(path):
        return []
    return sorted(
        os.path.relpath(os.path.join(d, f), path)
        for d, _, files in os.walk(path)
        for f in files + [""]
    )


def _fill(arg: str, world: dict) -> str:
    for key in sorted(world, key=len, reverse=True):
        arg = arg.replace(key, str(world[key]))
    return arg


@pytest.mark.parametrize("tool", sorted(CASES))
def test_bad_input_is_one_line_and_leaves_nothing(tool, world, tmp_path):
    cases = CASES[tool]
    args = [[_fill(a, world) for a in argv] for argv, _, _ in cases]
    watched = [[_fill(w, world) for w in watch] for _, _, watch in cases]
    before = [{w: _listing(w) for w in watch} for watch in watched]
    with open(tmp_path / "cases.json", "w") as f:
        json.dump(args, f)
    env = {**os.environ, "UA3D_DEBUG_LOG": str(tmp_path / "debug.log")}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.experiments.cli_cases",
            tool,
            str(tmp_path / "cases.json"),
            str(tmp_path / "results.json"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(tmp_path / "results.json") as f:
        results = json.load(f)
    for (argv, pattern, _), res, watch, was in zip(cases, results, watched, before):
        lines = [line for line in res["stderr"].splitlines() if line.strip()]
        what = f"{tool} {argv}: {res}"
        assert res["code"] not in (0, -1), what
        assert len(lines) == 1 and "Traceback" not in res["stderr"], what
        assert lines[0].startswith(f"{tool}: "), what
        assert re.search(pattern, lines[0]), what
        assert {w: _listing(w) for w in watch} == was, what
