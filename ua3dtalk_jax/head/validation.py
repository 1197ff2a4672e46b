"""The training validator: the first held-out frame rendered as a PNG strip and to TensorBoard.

`make_validator(cfg, subject, features, workdir, writer)` returns `validate(phase, state, net, it)`,
which the stage-2 loop calls every `val_every` iterations; it writes prediction | ground truth |
|error| to workdir/val/<phase>_<it>.png (`Workdir.val_png`). It renders the model and scores
nothing, so training calls it directly (the held-out metrics are `eval.heldout`).

Each render is one compiled program (`branch_render`, `fused_render`): run op by op, the first
validation of each phase compiled hundreds of small programs (13 s for the face branch, 9 s for
the mouth on the cpu preset; 6.4 s and 5.9 s as programs, and each later render 0.1 s instead of
0.6 s); as a program it is compiled once, or found in the persistent cache
(`train.stage2.precompile`).
"""

from __future__ import annotations

import os

import cv2
import jax
import jax.numpy as jnp
import numpy as np

from ua3dtalk_jax.data.images import to_float
from ua3dtalk_jax.head.features import frame_with_features
from ua3dtalk_jax.head.render import render_branch, render_fused
from ua3dtalk_jax.head.workdir import Workdir


def _png(path: str, rows: list[np.ndarray]) -> None:
    strip = np.concatenate([np.clip(r, 0, 1) for r in rows], axis=1)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    cv2.imwrite(path, cv2.cvtColor((strip * 255).round().astype(np.uint8), cv2.COLOR_RGB2BGR))


def branch_render(net, *, width: int, height: int, use_deform: bool, backend: str):
    """The jitted validation render of one branch: (params, gaussians, frame) → (H, W, 3) rgb."""

    def validation_branch(params, gaussians, frame):
        kw = {"width": width, "height": height, "use_deform": use_deform, "backend": backend}
        return render_branch(net, params, gaussians, frame, **kw)["rgb"]

    return jax.jit(validation_branch)


def fused_render(nets: dict, *, width: int, height: int, use_deform: bool, backend: str):
    """The jitted validation render of the fused head: ({part: params}, {part: gaussians}, frame)
    → (H, W, 3) rgb."""

    def validation_fused(params, gaussians, frame):
        face, mouth = ((nets[p], params[p], gaussians[p]) for p in ("face", "mouth"))
        kw = {"width": width, "height": height, "use_deform": use_deform, "backend": backend}
        return render_fused(face, mouth, frame, **kw)["rgb"]

    return jax.jit(validation_fused)


def validation_frame(subject, features) -> dict:
    """The frame every validation renders: the first held-out one (frame 0 without any)."""
    val = subject.split("val")
    idx = int(val[0]) if len(val) else 0
    return {k: jnp.asarray(v) for k, v in frame_with_features(subject, features, idx).items()}


def host(params, gaussians) -> tuple:
    """(params, gaussians) fetched to the host: the renders' inputs are then placed the same way
    whatever program made them (a training step's replicated outputs, a densification's), so each
    render compiles once (and `train.stage2.precompile` can compile it ahead)."""
    return jax.device_get((params, gaussians))


def make_validator(cfg, subject, features, workdir, writer=None):
    """validate(phase, state(s), net(s), it): renders the first held-out frame to a PNG strip."""
    h, w = subject.size
    kw = {"width": w, "height": h, "backend": cfg.backend}
    renders = {}

    def validate(phase, state, net, it):
        f = validation_frame(subject, features)
        if phase == "fuse":
            if phase not in renders:
                renders[phase] = fused_render(net, use_deform=cfg.train.deform, **kw)
            parts = ("face", "mouth")
            params, gaussians = (
                {p: getattr(state[p], k) for p in parts} for k in ("net", "gaussians")
            )
            pred = renders[phase](*host(params, gaussians), f)
        else:
            deform = bool(cfg.train.deform and it > cfg.train[phase].warmup)
            if (phase, deform) not in renders:
                renders[phase, deform] = branch_render(net, use_deform=deform, **kw)
            pred = renders[phase, deform](*host(state.net, state.gaussians), f)
        gt = np.asarray(to_float(f["image"]))
        pred = np.asarray(pred)
        err = np.abs(pred - gt)
        _png(Workdir(workdir).val_png(phase, it), [pred, gt, err])
        if writer is not None:
            writer.add_image(
                f"{phase}/pred_gt_err", np.concatenate([pred, gt, err], 1), it, dataformats="HWC"
            )

    return validate
