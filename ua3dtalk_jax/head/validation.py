"""The training validator: the first held-out frame rendered as a PNG strip and to TensorBoard.

`make_validator(cfg, subject, features, workdir, writer)` returns `validate(phase, state, net, it)`,
which the stage-2 loop calls every `val_every` iterations; it writes prediction | ground truth |
|error| to workdir/val/<phase>_<it>.png (`Workdir.val_png`). It renders the model and scores
nothing, so training calls it directly (the held-out metrics are `eval.heldout`).
"""

from __future__ import annotations

import os

import cv2
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


def make_validator(cfg, subject, features, workdir, writer=None):
    """validate(phase, state(s), net(s), it): renders the first held-out frame to a PNG strip."""
    val = subject.split("val")
    idx = int(val[0]) if len(val) else 0
    h, w = subject.size

    def validate(phase, state, net, it):
        f = {k: jnp.asarray(v) for k, v in frame_with_features(subject, features, idx).items()}
        if phase == "fuse":
            heads = {p: (net[p], state[p].net, state[p].gaussians) for p in ("face", "mouth")}
            pred = render_fused(
                heads["face"],
                heads["mouth"],
                f,
                width=w,
                height=h,
                backend=cfg.backend,
                use_deform=cfg.train.deform,
            )["rgb"]
        else:
            pred = render_branch(
                net,
                state.net,
                state.gaussians,
                f,
                width=w,
                height=h,
                use_deform=cfg.train.deform and it > cfg.train[phase].warmup,
                backend=cfg.backend,
            )["rgb"]
        gt = np.asarray(to_float(f["image"]))
        pred = np.asarray(pred)
        err = np.abs(pred - gt)
        _png(Workdir(workdir).val_png(phase, it), [pred, gt, err])
        if writer is not None:
            writer.add_image(
                f"{phase}/pred_gt_err", np.concatenate([pred, gt, err], 1), it, dataformats="HWC"
            )

    return validate
