"""`python -m experiments.train --stage=1` then `--stage=2` on a folder in TalkingGaussian's layout,
as its preprocessing leaves it (tests/data/tg_layout.py: 40×48 frames, aud.wav, no aud_*.npy): no
exp_coeffs.npy, emotion.csv or subject.json, so stage 1's f_gt-exp comes from track_params.pt's BFM
`exp` and emotion fine-tuning has no labels.

Cost (the suite runs on 2 cores): every stage-1 training runs one step; stage 2 trains static
heads (`train.deform=False`: 118 → 86 s for this test), each branch two iterations (densifying after
the first) and the fuse step one (with its patch LPIPS), so each phase compiles one step. The deformation reads nothing of a TalkingGaussian folder that the loader tests do not check
(aud windows, au.csv's AUs, the stage-1 features of the same widths), and `tiny_trained` trains
every variant. The compilation cache stays off: nothing carries over (stage 1's f_gt-exp is
79-wide here, 16 on the synthetic subject; with `tiny_trained`'s cache every stage-2 step still
compiled anew, and the held-out render closes over the trained heads).
"""

import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.data import tg_layout
from ua3dtalk_jax.eval.trained_model import load_trained
from ua3dtalk_jax.train.checkpoint import Checkpointer
from ua3dtalk_jax.train.stage1 import load_stage1

N = 12  # frames: 10 train, 2 held out
STAGE1 = [f"stage1.{m}.steps=1" for m in ("syncnet", "lip_expert", "expr_prior", "stylenet")]
STAGE1 += ["stage1.emotion.pretrain_steps=1", "stage1.emotion.finetune_steps=1"]
BRANCH = {"iterations": 2, "warmup": 0, "ensemble_from": 0, "densify_from": 0, "densify_every": 1,
          "densify_until": 2, "lpips_from": 1}  # fmt: skip
STAGE2 = [f"train.{b}.{k}={v}" for b in ("face", "mouth") for k, v in BRANCH.items()]
STAGE2 += ["train.fuse.iterations=1", "train.fuse.lpips_from=0", "train.deform=False"]
EXP_STATS_TOL = 1e-5  # float32 mean / s.d. of 10 rows


def _train(subject, workdir, stage, extra=()):
    cmd = [sys.executable, "-m", "experiments.train", f"--subject={subject}", f"--stage={stage}",
           "--config=tiny", f"--workdir={workdir}", "--compile_cache=",
           *(f"--set={s}" for s in STAGE1 + STAGE2 + list(extra))]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)


def _digests(root):
    out = {}
    for d, _, files in os.walk(root):
        for f in files:
            with open(os.path.join(d, f), "rb") as fh:
                out[os.path.relpath(os.path.join(d, f), root)] = hashlib.sha1(fh.read()).hexdigest()
    return out


@pytest.mark.slow
def test_stage1_then_stage2_on_a_talkinggaussian_folder(tmp_path):
    subject = tmp_path / "May"
    truth = tg_layout.write_tg_subject(str(subject), N, aud_ds=False)
    before = _digests(subject)

    fresh = _train(subject, tmp_path / "fresh", "2")
    assert fresh.returncode != 0
    assert "run `python -m experiments.train --stage=1` (or --stage=all)" in fresh.stderr

    workdir = tmp_path / "work"
    r1 = _train(subject, workdir, "1")
    assert r1.returncode == 0, r1.stderr[-3000:]
    assert "no emotion labels" in r1.stdout and "RuntimeWarning" not in r1.stderr
    s1 = load_stage1(str(workdir))  # f_gt-exp was track_params.pt's exp, standardised on train
    train = truth["exp"][: int(N * 10 / 11)]
    np.testing.assert_allclose(s1.exp_mean, train.mean(0), atol=EXP_STATS_TOL)
    np.testing.assert_allclose(s1.exp_std, train.std(0), rtol=EXP_STATS_TOL)

    r2 = _train(subject, workdir, "2")
    assert r2.returncode == 0, r2.stderr[-3000:]
    for phase, total in (("face", 2), ("mouth", 2), ("fuse", 1)):
        assert Checkpointer(str(workdir / "stage2" / phase)).all_steps()[-1] == total, phase
    with open(workdir / "summary.json") as f:
        held = json.load(f)["heldout"]
    assert held["frames"] == N - int(N * 10 / 11) and np.isfinite(held["psnr"])
    assert (workdir / "heldout.mp4").stat().st_size > 0
    after = _digests(subject)  # the user's files untouched (our caches sit beside them)
    assert {k: after[k] for k in before} == before


@pytest.mark.slow
def test_stage2_on_ua3dtalk_extras_without_a_stage_1(tmp_path):
    """A folder of the authors' preprocessing with their precomputed f_exp / f_tone / f_emo .pth
    files trains stage 2 from them (`stage1.features.source=subject`); `--stage=all` skips stage 1,
    and the model refuses new audio (which has no such features) with a message. Static heads as
    above (32 s; with the deformation 64 s): that stage 2 receives exactly the extras is
    test_ua_extras_source.py's check of `stage1_arrays`, the one call `run_stage2` makes."""
    subject = tmp_path / "May"
    tg_layout.write_tg_subject(str(subject), N, aud_ds=False)
    tg_layout.write_ua_extras(str(subject), N)
    workdir = tmp_path / "work"
    r = _train(subject, workdir, "all", ["stage1.features.source=subject"])
    assert r.returncode == 0, r.stderr[-3000:]
    assert "stage 1: skipped (stage1.features.source=subject" in r.stdout
    assert not (workdir / "stage1").exists()
    with open(workdir / "summary.json") as f:
        held = json.load(f)["heldout"]
    assert held["frames"] == N - int(N * 10 / 11) and np.isfinite(held["psnr"])
    with pytest.raises(ValueError, match="precomputed UA-3DTalk features"):
        load_trained(str(workdir))
