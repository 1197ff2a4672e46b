"""A folder from TalkingGaussian's / UA-3DTalk's own preprocessing, end to end, deformation on.

tests/data/tg_layout.py writes the folder as those tools leave it: aud_ds.npy DeepSpeech windows
[N, 16, 29], track_params.pt (torch dict id/exp/euler/trans/focal), au.csv with leading-space
column names, parsing colours, torso_imgs RGBA, teeth_mask/*.npy, bc.jpg, 25 fps, and the UA
per-frame .pth extras; no exp_coeffs.npy, emotion.csv or subject.json. The runs, with the `tiny`
preset and the deformation on (the default):

  (a) `--stage=1` then `--stage=2`: the headline command; stage 2 reads the DeepSpeech windows
  (b) `--set=stage1.features.source=subject --stage=all`: stage 2 from the authors' extras
  (c) `experiments.infer` with a new wav and its .npy windows; the refusals; the frame count
  (d) `experiments.evaluate` on the workdir, and a resume with another audio kind refused
  (e) HuBERT [N, 2, 1024] and esperanto [N, 16, 44] folders: one deformed training step each

Cost (2 cores): every stage-1 module runs one step; each stage-2 branch two iterations (the second
deformed, densifying after the first) and the fuse step one, so each phase compiles its steps
once. The compilation cache stays off: nothing carries over between these configurations.
"""

import hashlib
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
import soundfile

from tests.data import tg_layout
from ua3dtalk_jax.configs import apply_overrides, get_config
from ua3dtalk_jax.data import Subject
from ua3dtalk_jax.data import video as V
from ua3dtalk_jax.data.stage2_audio import resolve_audio
from ua3dtalk_jax.head.checkpoint import Checkpointer
from ua3dtalk_jax.head.features import subject_features
from ua3dtalk_jax.head.workdir import Workdir
from ua3dtalk_jax.infer import trained_model as tm
from ua3dtalk_jax.train import parallel
from ua3dtalk_jax.train.stage2.loop import train_branch

N = 12  # frames: 10 train, 2 held out
STAGE1 = [f"stage1.{m}.steps=1" for m in ("syncnet", "lip_expert", "expr_prior", "stylenet")]
STAGE1 += ["stage1.emotion.pretrain_steps=1", "stage1.emotion.finetune_steps=1"]
BRANCH = {
    "iterations": 2,
    "warmup": 1,
    "ensemble_from": 1,
    "densify_from": 0,
    "densify_every": 1,
    "densify_until": 2,
    "lpips_from": 1,
}
STAGE2 = [f"train.{b}.{k}={v}" for b in ("face", "mouth") for k, v in BRANCH.items()]
STAGE2 += ["train.fuse.iterations=1", "train.fuse.lpips_from=0"]
EXP_STATS_TOL = 1e-5  # float32 mean / s.d. of 10 rows
NEW_FRAMES = 20  # the new clip: 0.8 s at 25 fps


def _cli(module, *args):
    cmd = [sys.executable, "-m", f"experiments.{module}", "--compile_cache=", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)


def _train(subject, workdir, stage, extra=()):
    sets = (f"--set={s}" for s in STAGE1 + STAGE2 + list(extra))
    return _cli(
        "train",
        f"--subject={subject}",
        f"--stage={stage}",
        "--config=tiny",
        f"--workdir={workdir}",
        *sets,
    )


def _digests(root):
    out = {}
    for d, _, files in os.walk(root):
        for f in files:
            with open(os.path.join(d, f), "rb") as fh:
                out[os.path.relpath(os.path.join(d, f), root)] = hashlib.sha1(fh.read()).hexdigest()
    return out


def _heldout(workdir):
    with open(os.path.join(workdir, "summary.json")) as f:
        return json.load(f)["heldout"]


@pytest.fixture(scope="module")
def may(tmp_path_factory):
    """(a): the folder, then `--stage=1` and `--stage=2` into one workdir."""
    root = tmp_path_factory.mktemp("tg")
    subject, workdir = root / "May", root / "work"
    truth = tg_layout.write_tg_subject(str(subject), N)
    tg_layout.write_ua_extras(str(subject), N)
    before = _digests(subject)
    fresh = _train(subject, root / "fresh", "2")
    r1 = _train(subject, workdir, "1")
    assert r1.returncode == 0, r1.stderr[-3000:]
    r2 = _train(subject, workdir, "2")
    assert r2.returncode == 0, r2.stderr[-3000:]
    return {
        "subject": subject,
        "workdir": workdir,
        "truth": truth,
        "before": before,
        "fresh": fresh,
        "r1": r1,
        "r2": r2,
        "root": root,
    }


@pytest.mark.long
@pytest.mark.slow
def test_a_stage1_then_stage2_on_deepspeech_windows(may):
    assert may["fresh"].returncode != 0
    assert "run `python -m experiments.train --stage=1` (or --stage=all)" in may["fresh"].stderr
    r1, r2, workdir = may["r1"], may["r2"], may["workdir"]
    line = "stage 2 audio: deepspeech (aud_ds.npy, windows [16, 29]) for 12 frames"
    assert line in r1.stdout and line in r2.stdout
    assert "no emotion labels" in r1.stdout and "RuntimeWarning" not in r1.stderr
    s1 = Workdir(
        str(workdir)
    ).load_stage1()  # f_gt-exp was track_params.pt's exp, standardised on train
    train = may["truth"]["exp"][: int(N * 10 / 11)]
    np.testing.assert_allclose(s1.exp_mean, train.mean(0), atol=EXP_STATS_TOL)
    np.testing.assert_allclose(s1.exp_std, train.std(0), rtol=EXP_STATS_TOL)
    with open(workdir / "config.json") as f:
        cfg = json.load(f)
    assert cfg["data"]["audio_feature"] == "deepspeech" and cfg["train"]["deform"] is True
    assert (cfg["model"]["audio"]["steps"], cfg["model"]["audio"]["in_dim"]) == (16, 29)
    for phase, total in (("face", 2), ("mouth", 2), ("fuse", 1)):
        assert Checkpointer(str(workdir / "stage2" / phase)).all_steps()[-1] == total, phase
    held = _heldout(workdir)
    assert held["frames"] == N - int(N * 10 / 11) and np.isfinite(held["psnr"])
    assert (workdir / "heldout.mp4").stat().st_size > 0
    with open(workdir / "summary.json") as f:  # the tiny preset substitutes all four parts
        assert len(json.load(f)["substitutes"]) == 4
    assert "substitute: Prior Extraction: SyncNet trained on the subject" in r1.stdout
    after = _digests(may["subject"])  # the user's files untouched (our caches sit beside them)
    assert {k: after[k] for k in may["before"]} == may["before"]


@pytest.mark.long
@pytest.mark.slow
def test_c_infer_takes_the_new_clips_windows_beside_its_wav(may, tmp_path):
    rng = np.random.default_rng(7)
    wav = tmp_path / "new.wav"
    soundfile.write(wav, tg_layout.speech_like(int((NEW_FRAMES + 1) / 25 * 16000), rng), 16000)
    npy = tmp_path / "new_ds.npy"  # one frame shorter than the wav: rounding, tolerated
    np.save(npy, rng.normal(size=(NEW_FRAMES, 16, 29)).astype(np.float32))
    out = tmp_path / "out.mp4"
    wd = f"--workdir={may['workdir']}"
    r = _cli("infer", wd, f"--audio={wav}", f"--audio_features={npy}", f"--out={out}")
    assert r.returncode == 0, r.stderr[-3000:]
    assert V.probe(out)["frames"] == NEW_FRAMES  # the feature file's count

    alone = _cli("infer", wd, f"--audio={wav}", f"--out={tmp_path / 'x.mp4'}")
    assert alone.returncode != 0 and "Traceback" not in alone.stderr
    assert "trained on deepspeech (aud_ds.npy, windows [16, 29]) features" in alone.stderr
    assert f"python -m experiments.infer {wd} --audio=NEW.wav --audio_features=NEW_ds.npy" in (
        alone.stderr
    )
    no_wav = _cli("infer", wd, f"--audio_features={npy}", f"--out={tmp_path / 'x.mp4'}")
    assert no_wav.returncode != 0 and "--audio is missing" in no_wav.stderr
    assert sorted(os.listdir(tmp_path)) == ["new.wav", "new_ds.npy", "out.mp4"]

    model = Workdir(str(may["workdir"])).load_trained()  # the notebook API takes the same pair
    assert model.needs_audio_features and model.audio_kind == "deepspeech"
    feats = tm.audio_features(model, str(wav), features=np.load(npy))
    assert feats["aud"].shape == (NEW_FRAMES, 16, 29) and feats["f_exp"].shape == (NEW_FRAMES, 64)
    long = np.zeros((NEW_FRAMES + 5, 16, 29), np.float32)
    with pytest.raises(
        ValueError,
        match=rf"has {NEW_FRAMES + 5} frames .* = {NEW_FRAMES + 1} "
        "frames at 25 fps",
    ):
        tm.audio_features(model, str(wav), features=long)
    with pytest.raises(
        ValueError,
        match=r"windows of shape \(20, 2, 1024\), but the model was "
        r"trained on deepspeech",
    ):
        tm.audio_features(model, str(wav), features=np.zeros((20, 2, 1024), np.float32))


@pytest.mark.long
@pytest.mark.slow
def test_d_evaluate_and_a_resume_with_another_audio_kind(may, tmp_path):
    r = _cli("evaluate", f"--workdir={may['workdir']}", f"--max_frames={N}")
    assert r.returncode == 0, r.stderr[-3000:]
    with open(may["workdir"] / "eval_val.json") as f:
        rows = json.load(f)["rows"]
    assert rows[0]["frames"] == N - int(N * 10 / 11) and np.isfinite(rows[0]["PSNR"])
    mel = _train(may["subject"], may["workdir"], "2", ["data.audio_feature=mel"])
    assert mel.returncode != 0 and "Traceback" not in mel.stderr
    assert (
        "was trained on deepspeech (aud_ds.npy, windows [16, 29]) audio features; this run "
        "reads mel (aud.wav, windows [16, 32])" in mel.stderr
    )


@pytest.mark.long
@pytest.mark.slow
def test_b_stage2_on_ua3dtalk_extras_without_a_stage_1(may):
    """--stage=all skips stage 1 and stage 2 reads the extras (deformed); new audio is refused."""
    workdir = may["root"] / "extras"
    r = _train(may["subject"], workdir, "all", ["stage1.features.source=subject"])
    assert r.returncode == 0, r.stderr[-3000:]
    assert "stage 1: skipped (stage1.features.source=subject" in r.stdout
    assert not (workdir / "stage1").exists()
    held = _heldout(workdir)
    assert held["frames"] == N - int(N * 10 / 11) and np.isfinite(held["psnr"])
    with pytest.raises(ValueError, match="precomputed UA-3DTalk features"):
        Workdir(str(workdir)).load_trained()


@pytest.mark.slow
@pytest.mark.parametrize("kind, shape", [("hubert", (2, 1024)), ("esperanto", (16, 44))])
def test_e_hubert_and_esperanto_folders_train_a_deformed_step(tmp_path, kind, shape):
    subject_dir = tmp_path / "subj"
    tg_layout.write_tg_subject(
        str(subject_dir), N, aud_ds=False, aud_hu=kind == "hubert", aud_eo=kind == "esperanto"
    )
    tg_layout.write_ua_extras(str(subject_dir), N)
    cfg = apply_overrides(
        get_config("tiny"),
        ["stage1.features.source=subject", "train.face.iterations=1", "train.face.warmup=0"],
    )
    subject = Subject.open(str(subject_dir), audio_feature=cfg.data.audio_feature)
    resolve_audio(cfg.data, cfg.model.audio, subject)
    assert cfg.data.audio_feature == kind and (cfg.model.audio.steps, cfg.model.audio.in_dim) == (
        shape
    )
    features = subject_features(subject, cfg.stage1.features)
    state, _ = train_branch(
        cfg,
        "face",
        subject,
        features,
        str(tmp_path / "work"),
        extent=1.0,
        mesh=parallel.global_mesh(),
    )
    conv = state.net["audio"]["audio_net"]["Conv_0"]["kernel"]
    assert conv.shape == (3, shape[1], 32)  # the first convolution reads the loaded width
    assert int(state.step) == 1 and all(
        np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(state.net)
    )
    with open(tmp_path / "work" / "stage2" / "face_metrics.jsonl") as f:
        assert np.isfinite(json.loads(f.readline())["loss"])
