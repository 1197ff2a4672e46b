"""The `paper` preset end to end: stage 1, stage 2 and the held-out evaluation through
`train.run.train`, at the paper's network sizes, on the tiny synthetic subject (64², 167 frames).

Only iteration counts, batch sizes, the emotion window and the Gaussian capacity are overridden
(`OVERRIDES`); every network keeps its paper size: the Wav2Lip SyncNet and generator, StyleNet's
2×640 BiLSTM, CA-MSER with AlexNet on 224×336 images and the wav2vec-2.0-sized encoder, the
xyz hexplane at res 64 × scales (1, 2, 4, 8) × 16 channels, T = 10 uncertainty members of latent
D = 48, fused in the low-rank form (`model.uncertainty.fusion`). Each branch runs all three of its
step programs (static warm-up, one random member per view, the full ensemble with the late LPIPS
terms) and a densification round; the fuse step runs twice.

It takes minutes (the paper-sized stage-1 networks run over every frame), so it carries the
`paper` marker, which `pytest.ini` leaves out of the default run:

    python -m pytest -q -m paper tests/train/test_paper_preset.py

The quick tests below (the preset's sizes and the legacy-config default) run by default.
"""

import json
import os

import numpy as np
import pytest

from tests.configs.legacy import tiny_resolved, write_version0
from ua3dtalk_jax.configs import apply_overrides, get_config
from ua3dtalk_jax.configs.io import load_config
from ua3dtalk_jax.eval.heldout import evaluate_heldout
from ua3dtalk_jax.head.workdir import Workdir
from ua3dtalk_jax.models.motion import motion_spec
from ua3dtalk_jax.train import run

CAPACITY = 4096  # Gaussians per branch: the paper's 65,536 × 1/16 (the cost is linear in it)
BRANCH = {
    "iterations": 4,
    "warmup": 1,
    "ensemble_from": 2,
    "lpips_from": 3,
    "densify_from": 1,
    "densify_every": 2,
    "densify_until": 4,
    "sh_every": 2,
}
OVERRIDES = (
    [f"train.{p}.{k}={v}" for p in ("face", "mouth") for k, v in BRANCH.items()]
    + [
        f"model.gaussians.{p}.{k}={v}"
        for p in ("face", "mouth")
        for k, v in (("capacity", CAPACITY), ("init_num", 2000))
    ]
    # the paper's patch-LPIPS sizes (64-96 px) are for 512² frames; the tiny subject is 64²
    + ["train.patch_sizes_face=(32, 32)", "train.patch_sizes_mouth=(32, 32)"]
    + [
        "train.fuse.iterations=2",
        "train.fuse.lpips_from=1",
        "train.checkpoint_every=2",
        "train.log_every=1",
        "train.val_every=4",
    ]
    + [f"stage1.{m}.steps={2}" for m in ("syncnet", "lip_expert", "expr_prior", "stylenet")]
    + [
        "stage1.syncnet.batch=4",
        "stage1.lip_expert.batch=2",
        "stage1.expr_prior.batch=4",
        "stage1.stylenet.batch=2",
        "stage1.emotion.pretrain_steps=2",
        "stage1.emotion.finetune_steps=2",
        "stage1.emotion.batch=4",
        "stage1.emotion.corpus_clips=1",
        "stage1.emotion.window_s=1.0",
    ]
    # the pretrained parts are substituted explicitly (configs.pretrained): no files here
    + [
        "stage1.syncnet.pretrained=none",
        "stage1.prior.face_recon_weights=none",
        "stage1.emotion.wav2vec_weights=none",
        "stage1.emotion.corpus=synthetic",
    ]
)


def test_paper_preset_has_the_paper_sizes():
    cfg = get_config("paper")
    spec = motion_spec(cfg.model, "face")
    assert (spec.members, spec.latent, spec.hidden) == (10, 48, 64)
    assert (spec.grid_res, spec.grid_multires, spec.grid_channels) == (64, (1, 2, 4, 8), 16)
    assert spec.fusion == "lowrank"
    assert cfg.model.gaussians.face.capacity == cfg.model.gaussians.mouth.capacity == 65536
    # the short presets keep the dense form, so their recorded results do not move
    for preset in ("cpu", "tiny"):
        assert motion_spec(get_config(preset).model, "face").fusion == "dense"


def test_workdirs_saved_before_the_fusion_field_read_as_dense(tmp_path):
    write_version0(str(tmp_path), lambda d: d["model"]["uncertainty"].pop("fusion"))
    Workdir(str(tmp_path)).check_config(tiny_resolved())  # resumes
    assert load_config(str(tmp_path)).model.uncertainty.fusion == "dense"


@pytest.mark.long
@pytest.mark.slow
@pytest.mark.paper
def test_paper_preset_trains_end_to_end(tiny_trained, tmp_path):
    cfg = apply_overrides(get_config("paper"), OVERRIDES)
    lines = []
    workdir = str(tmp_path / "work")
    out = run.train(
        cfg, tiny_trained["subject"], workdir, "all", log=lines.append, evaluate=evaluate_heldout
    )
    summary = out["stage2"]
    held = summary["heldout"]
    assert held["frames"] > 0
    for k in ("psnr", "ssim", "lpips", "psnr_mouth"):
        assert np.isfinite(held[k]), (k, held)
    assert held["psnr"] > 5.0, held  # a rendered head over the true background, not garbage
    for phase in ("face", "mouth"):
        with open(os.path.join(workdir, "stage2", f"{phase}_metrics.jsonl")) as f:
            history = [json.loads(x) for x in f]
        assert [h["iteration"] for h in history] == [1, 2, 3, 4]
        assert all(np.isfinite(h["loss"]) and h["finite"] == 1.0 for h in history), history
        # static, one-member ("train") and full-ensemble ("eval") steps: three programs
        assert any(
            f"[{phase}] 4 iterations" in x and "3 compiled step variants" in x for x in lines
        ), lines
    assert summary["gaussians"]["face"] <= CAPACITY
    stage1 = out["stage1"]["metrics"]
    for module in ("syncnet", "lip_expert", "expr_prior", "stylenet_fuse"):
        assert np.isfinite(stage1[module]["loss_last"]), (module, stage1[module])
    assert np.isfinite(stage1["emotion"]["finetune"]["loss_last"])


@pytest.mark.optimized  # as users run: the jitted init is bitwise the eager one there (test_init)
def test_network_init_does_not_depend_on_the_buffer_size():
    """init_branch initialises the network on a few points (a full paper buffer ran a 65,536-slot
    full-ensemble forward): the parameters are bitwise those of an init on every slot."""
    import jax

    from ua3dtalk_jax.head.stage2_model import build_network, dummy_inputs
    from ua3dtalk_jax.train.stage2.state import init_branch

    cfg = get_config("tiny")
    state = init_branch(cfg, "face", jax.random.PRNGKey(3), 1.0)[0]
    k_n = jax.random.split(jax.random.PRNGKey(3), 3)[1]  # init_branch's network key
    full = build_network(cfg.model, "face").init(
        k_n, state.gaussians.means, dummy_inputs(cfg.model), mode="eval"
    )["params"]
    for a, b in zip(jax.tree.leaves(state.net), jax.tree.leaves(full), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_workdirs_with_the_schedule_copy_under_model_gaussians_resume(tmp_path):
    """Before the schedule had one home, config.json also held it under model.gaussians.<part>
    (a copy of train.<part>), and data had four keys nothing read: such a workdir resumes, and
    those fields are dropped."""

    def old(saved):
        for part in ("face", "mouth"):
            for key in (
                "densify_from",
                "densify_every",
                "densify_until",
                "size_prune_from",
                "sh_every",
            ):
                saved["model"]["gaussians"][part][key] = saved["train"][part][key]
        saved["data"].update(fps=None, seed=0, shuffle=True, keys=None)  # never read, gone too

    write_version0(str(tmp_path), old)
    Workdir(str(tmp_path)).check_config(tiny_resolved())  # resumes
    cfg = load_config(str(tmp_path))
    assert "densify_every" not in cfg.model.gaussians.face and "shuffle" not in cfg.data
