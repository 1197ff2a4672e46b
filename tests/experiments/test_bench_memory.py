"""experiments.bench_memory and the long-subject builder it trains on.

The builder's subject opens and agrees with itself (frames, records, audio length); the report's
table parses back to the figures it was made from; and (long) the bench trains two lengths of the
tiny subject end to end and prints a row per length with every phase's peak.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.tools import import_tool
from ua3dtalk_jax.data import Subject
from ua3dtalk_jax.data.synthetic.generate import ensure_synthetic
from ua3dtalk_jax.data.synthetic.tiled import tile_subject

SAMPLE_RATE = 16000
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return ensure_synthetic(str(tmp_path_factory.mktemp("memory")), "tiny", "tiny")


@pytest.mark.parametrize("factor", [0.5, 2.6])
def test_tiled_subject_opens_and_repeats_the_source(tiny, tmp_path, factor):
    src = Subject.open(tiny)
    n = int(len(src) * factor)
    s = Subject.open(tile_subject(tiny, str(tmp_path / "long"), n))
    assert len(s) == n and s.size == src.size and s.fps == src.fps
    assert len(s.split("train")) == int(n * 10 / 11) and len(s.split("val")) == n - len(
        s.split("train")
    )
    # audio and video lengths agree: 1/fps s of samples per frame, and one window per frame
    assert len(s.wav()) == round(n * SAMPLE_RATE / s.fps)
    assert s.audio.shape[0] == n
    keys = (
        "image",
        "viewmat",
        "landmarks",
        "exp",
        "au_exp",
        "emotion",
        "mouth_mask",
        "teeth_mask",
        "background",
        "lips_rect",
    )
    for k in sorted({0, min(len(src), n) - 1, n - 1}):
        got, want = s.frame(k, keys=keys), src.frame(k % len(src), keys=keys)
        for key in keys:
            np.testing.assert_array_equal(got[key], want[key], err_msg=f"frame {k}: {key}")
    # frame files are links to the source's, not copies
    a = os.stat(os.path.join(s.path, "gt_imgs", f"{n - 1}.jpg"))
    b = os.stat(os.path.join(tiny, "gt_imgs", f"{(n - 1) % len(src)}.jpg"))
    assert a.st_ino == b.st_ino


def test_tiled_subject_refuses_an_existing_folder_and_a_single_frame(tiny, tmp_path):
    (tmp_path / "there").mkdir()
    with pytest.raises(FileExistsError):
        tile_subject(tiny, str(tmp_path / "there"), 10)
    with pytest.raises(ValueError, match="n_frames"):
        tile_subject(tiny, str(tmp_path / "one"), 1)


def _row(frames, size, peaks):
    phases = {p: {"peak_gb": g, "end_gb": g / 2, "seconds": 1.0} for p, g in peaks.items()}
    return {
        "frames": frames,
        "size": size,
        "runtime_gb": 0.4,
        "phases": phases,
        "bytes": {
            "subject": 2e6,
            "stage-2 features": 1e6,
            "stage-1 data": 5e7,
            "state face": 3e8,
            "state mouth": 1e8,
            "state fuse": 4e8,
        },
    }


def test_table_parses_back_and_names_the_largest_phase():
    bench = import_tool("bench_memory")
    peaks = dict(zip(bench.PHASES, (0.6, 1.5, 2.5, 2.2, 2.0, 1.8)))
    rows = [_row(1000, 256, peaks), _row(5000, 512, dict(peaks, **{"stage 1": 2.9}))]
    progress = bench.table(rows[:1]).splitlines()[-2]  # the row line `main` prints as it goes
    text = progress + "\n" + bench.table(rows + [{"frames": 7, "size": 64, "exit_code": 1}])
    parsed = bench.parse_table(text)
    assert [(r["frames"], r["size"]) for r in parsed] == [(1000, 256), (5000, 512)]
    assert parsed[0]["phases"] == pytest.approx(peaks, abs=0.005)
    assert parsed[0]["peak_in"] == "face" and parsed[1]["peak_in"] == "stage 1"
    b = bench.breakdown(rows[0])
    assert b["parts"]["state"] == pytest.approx(0.3)
    assert sum(b["parts"].values()) == pytest.approx(2.5)
    assert b["dominant"] == "rest" and parsed[0]["dominates"] == "rest"
    # stage 1's peak counts its data among the per-frame arrays
    assert bench.breakdown(rows[1])["parts"]["per-frame"] == pytest.approx(0.053)


@pytest.mark.long
def test_bench_trains_two_lengths_and_prints_their_peaks(tiny, tmp_path):
    out = tmp_path / "rows.json"
    cmd = [
        sys.executable,
        "-m",
        "experiments.bench_memory",
        "--config=tiny",
        "--sizes=64",
        "--frames=40,90",
        f"--data_root={tmp_path}",
        f"--source={tiny}",
        "--eval_frames=2",
        f"--compile_cache={tmp_path / 'xla'}",
        f"--json={out}",
    ]
    res = subprocess.run(cmd, check=False, cwd=REPO, capture_output=True, text=True, timeout=1800)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    bench = import_tool("bench_memory")
    rows = bench.parse_table(res.stdout)
    assert [(r["frames"], r["size"]) for r in rows] == [(40, 64), (90, 64)]
    for r in rows:
        assert set(r["phases"]) == set(bench.PHASES)
        assert all(0.1 < g < 20 for g in r["phases"].values())
        assert r["dominates"] in ("runtime", "per-frame", "state", "rest")
    saved = json.loads(out.read_text())["rows"]
    assert [r["heldout"]["frames"] for r in saved] == [2, 2]
    assert saved[1]["bytes"]["subject"] > saved[0]["bytes"]["subject"]
