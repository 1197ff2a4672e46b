"""Stage 2 driver (paper §2.3–§2.4): face and mouth branches, the fuse step, held-out evaluation.

`run_stage2(cfg, subject, workdir)` needs the stage-1 checkpoint in workdir (its per-frame f_exp,
f_tone, f_emo-attn come from `train.features.stage1_features`) unless `stage1.features.source` is
"subject" (the subject's UA-3DTalk extras instead), trains face → mouth → fuse (each
resumable), evaluates the held-out split and writes workdir/stage2/model (the trained heads, read
by `load_stage2`) and workdir/summary.json. Validation renders go to workdir/val/*.png as
prediction | ground truth | |error| strips, and to TensorBoard (workdir/tb).
"""

from __future__ import annotations

import os
import time

import cv2
import jax
import jax.numpy as jnp
import numpy as np

from ua3dtalk_jax.data.images import to_float
from ua3dtalk_jax.data.stage2_audio import match_subject
from ua3dtalk_jax.losses import image as image_losses
from ua3dtalk_jax.losses.regularizers import rect_mask
from ua3dtalk_jax.train import parallel
from ua3dtalk_jax.train.checkpoint import Checkpointer, finished_steps, write_json_atomic
from ua3dtalk_jax.train.stage1 import CKPT_DIR as STAGE1_DIR
from ua3dtalk_jax.train.stage1 import has_stage1
from ua3dtalk_jax.train.stage2_data import KEYS
from ua3dtalk_jax.train.stage2_loop import train_branch, train_fuse
from ua3dtalk_jax.train.stage2_render import render_branch, render_fused
from ua3dtalk_jax.train.stage2_state import build_network, init_branch, scene_extent

MODEL_DIR = os.path.join("stage2", "model")
FORMAT = "ua3dtalk_jax/stage2/v1"


class Stage1Missing(FileNotFoundError):
    """Stage 2 was asked for before stage 1 produced its checkpoint."""


def stage1_arrays(subject, workdir: str, emotion=None, cfg=None) -> dict:
    """Per-frame f_exp, f_tone, f_emo of `subject`: from the stage-1 checkpoint in `workdir`, or,
    when `cfg` (the full config) says `stage1.features.source=subject`, from the subject's
    UA-3DTalk extras (`train.features.subject_features`; no emotion override there)."""
    from ua3dtalk_jax.train import features

    if features.feature_source(cfg) == "subject":
        if emotion not in (None, "audio"):
            raise ValueError(
                f"emotion={emotion!r}: an emotion override needs stage 1's per-class f_emo means; "
                "this model reads the subject's precomputed features (stage1.features.source="
                "subject)")  # fmt: skip
        return features.subject_features(subject, cfg.stage1.features)
    if not has_stage1(workdir):
        path = os.path.join(os.path.abspath(workdir), STAGE1_DIR)
        raise Stage1Missing(
            f"{path}: no stage-1 checkpoint. Stage 2 consumes stage 1's features: run "
            f"`python -m experiments.train --stage=1` (or --stage=all) with this --workdir first.")
    return features.stage1_features(subject, workdir, emotion=emotion)


def _png(path: str, rows: list[np.ndarray]) -> None:
    strip = np.concatenate([np.clip(r, 0, 1) for r in rows], axis=1)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    cv2.imwrite(path, cv2.cvtColor((strip * 255).round().astype(np.uint8), cv2.COLOR_RGB2BGR))


def make_validator(cfg, subject, features, workdir, writer=None):
    """validate(phase, state(s), net(s), it): renders the first held-out frame to a PNG strip."""
    val = subject.split("val")
    idx = int(val[0]) if len(val) else 0
    h, w = subject.size

    def validate(phase, state, net, it):
        f = {k: jnp.asarray(v) for k, v in _frame(subject, features, idx).items()}
        if phase == "fuse":
            heads = {p: (net[p], state[p].net, state[p].gaussians) for p in ("face", "mouth")}
            pred = render_fused(heads["face"], heads["mouth"], f, width=w, height=h,
                                backend=cfg.backend, use_deform=cfg.train.deform)["rgb"]  # fmt: skip
        else:
            pred = render_branch(net, state.net, state.gaussians, f, width=w, height=h,
                                 use_deform=cfg.train.deform and it > cfg.train[phase].warmup,
                                 backend=cfg.backend)["rgb"]  # fmt: skip
        gt = np.asarray(to_float(f["image"]))
        pred = np.asarray(pred)
        err = np.abs(pred - gt)
        _png(os.path.join(workdir, "val", f"{phase}_{it:06d}.png"), [pred, gt, err])
        if writer is not None:
            writer.add_image(f"{phase}/pred_gt_err", np.concatenate([pred, gt, err], 1), it,
                             dataformats="HWC")  # fmt: skip

    return validate


def _frame(subject, features, i: int) -> dict:
    f = subject.frame(i, keys=KEYS + ("mouth_mask",))
    for k, v in features.items():
        f[k] = np.asarray(v[i], np.float32)
    return f


def run_stage2(cfg, subject, workdir: str, *, log=print, writer=None, on_frame=None) -> dict:
    """Trains stage 2 and evaluates it. Returns the summary dict (also in workdir/summary.json).

    `on_frame(index, rgb)` receives every rendered held-out frame (e.g. to write a video).
    """
    match_subject(cfg.data, cfg.model.audio, subject)
    features = stage1_arrays(subject, workdir, cfg=cfg)
    mesh = parallel.global_mesh()
    extent = scene_extent(np.stack([subject.viewmat(int(i)) for i in subject.split("train")]))
    validate = make_validator(cfg, subject, features, workdir, writer)
    times, branches = {}, {}
    for part in ("face", "mouth"):
        t = time.time()
        branches[part] = train_branch(cfg, part, subject, features, workdir, extent=extent,
                                      mesh=mesh, writer=writer, log=log, validate=validate)  # fmt: skip
        times[part] = time.time() - t
    t = time.time()
    states = train_fuse(cfg, subject, features, workdir, branches, extent=extent, mesh=mesh,
                        writer=writer, log=log, validate=validate)  # fmt: skip
    times["fuse"] = time.time() - t
    save_stage2(cfg, workdir, states, extent)
    t = time.time()
    heads = {p: (branches[p][1], states[p].net, states[p].gaussians) for p in ("face", "mouth")}
    metrics = evaluate_heldout(cfg, subject, features, heads, on_frame=on_frame,
                               use_deform=cfg.train.deform)  # fmt: skip
    times["eval"] = time.time() - t
    summary = {"heldout": metrics, "seconds": times, "extent": extent,
               "gaussians": {p: int(np.sum(states[p].gaussians.active)) for p in states}}  # fmt: skip
    write_json_atomic(os.path.join(workdir, "summary.json"), summary)
    return summary


def evaluate_heldout(cfg, subject, features, heads, *, split: str = "val", use_deform=True,
                     frames=None, on_frame=None) -> dict:  # fmt: skip
    """Renders the held-out frames (full ensemble) and measures them against gt_imgs.

    Returns:
      {"psnr", "ssim", "lpips"} means over frames, "psnr_mouth" (pooled over the mouth-interior
      and teeth pixels of every frame), "psnr_lips" (pooled over the lips rectangles), "frames".
    """
    h, w = subject.size
    idx = subject.split(split) if frames is None else np.asarray(frames)

    @jax.jit
    def one(f):
        pred = render_fused(heads["face"], heads["mouth"], f, width=w, height=h,
                            backend=cfg.backend, use_deform=use_deform)["rgb"]  # fmt: skip
        gt = to_float(f["image"])
        mouth = (f["mouth_mask"] | f["teeth_mask"])[..., None]
        lips = rect_mask(f["lips_rect"], h, w)[..., None]
        se = (pred - gt) ** 2
        return pred, {
            "psnr": image_losses.psnr(pred, gt), "ssim": image_losses.ssim(pred, gt),
            "lpips": image_losses.lpips(pred[None], gt[None])[0],
            "se_mouth": jnp.sum(se * mouth), "n_mouth": 3.0 * jnp.sum(mouth),
            "se_lips": jnp.sum(se * lips), "n_lips": 3.0 * jnp.sum(lips),
        }  # fmt: skip

    acc = []
    for i in idx:
        pred, m = one({k: jnp.asarray(v) for k, v in _frame(subject, features, int(i)).items()})
        acc.append({k: float(v) for k, v in m.items()})
        if on_frame is not None:
            on_frame(int(i), np.asarray(pred))
    if not acc:
        raise ValueError(f"{subject.path}: the {split!r} split has no frames")

    def pooled(se, n):
        s, c = sum(a[se] for a in acc), sum(a[n] for a in acc)
        return float(10 * np.log10(c / s)) if c > 0 and s > 0 else float("nan")

    return {
        "psnr": float(np.mean([a["psnr"] for a in acc])),
        "ssim": float(np.mean([a["ssim"] for a in acc])),
        "lpips": float(np.mean([a["lpips"] for a in acc])),
        "psnr_mouth": pooled("se_mouth", "n_mouth"),
        "psnr_lips": pooled("se_lips", "n_lips"),
        "frames": len(acc),
    }


def save_stage2(cfg, workdir: str, states: dict, extent: float) -> str:
    """Writes the trained heads (Gaussians + network parameters of both branches)."""
    path = os.path.join(os.path.abspath(workdir), MODEL_DIR)
    tree = {p: {"gaussians": s.gaussians, "net": s.net} for p, s in states.items()}
    ck = Checkpointer(path, max_to_keep=1)
    ck.save(0, tree, {"format": FORMAT, "config": cfg.to_dict(), "extent": extent})
    ck.close()
    return path


def load_stage2(workdir: str, cfg=None):
    """Restores the trained heads of `workdir`.

    Returns:
      (cfg, heads) with heads = {"face": (net, params, gaussians), "mouth": (...)}.
    Raises:
      FileNotFoundError: stage 2 has not finished in this workdir.
      ValueError: the model was written by another version of this project.
    """
    from ua3dtalk_jax.configs.io import load_config

    path = os.path.join(os.path.abspath(workdir), MODEL_DIR)
    if not finished_steps(path):  # a save killed before orbax finished it leaves a tmp folder
        raise FileNotFoundError(
            f"{path}: no trained stage-2 model; run `python -m experiments.train --stage=2` "
            f"(or --stage=all) with --workdir={workdir}")
    cfg = cfg or load_config(workdir)
    like, nets = {}, {}
    for p in ("face", "mouth"):
        def arrays(k, p=p):
            st = init_branch(cfg, p, k, 1.0)[0]
            return {"gaussians": st.gaussians, "net": st.net}

        like[p] = jax.eval_shape(arrays, jax.random.PRNGKey(0))
        nets[p] = build_network(cfg.model, p)
    like = jax.tree.map(lambda x: np.zeros(x.shape, x.dtype), like)
    ck = Checkpointer(path, max_to_keep=1)
    try:
        tree, meta = ck.restore(like)
    finally:
        ck.close()
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: written as {meta.get('format')!r}, this version reads {FORMAT!r}")
    tree = jax.tree.map(jnp.asarray, tree)
    heads = {p: (nets[p], tree[p]["net"], tree[p]["gaussians"]) for p in ("face", "mouth")}
    return cfg, heads
