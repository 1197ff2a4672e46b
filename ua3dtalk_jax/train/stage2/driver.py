"""Stage 2 driver (paper §2.3–§2.4): face and mouth branches, the fuse step.

`run_stage2(cfg, subject, workdir)` needs the stage-1 checkpoint in workdir (its per-frame f_exp,
f_tone, f_emo-attn come from `head.features.stage1_features`) unless `stage1.features.source` is
"subject" (the subject's UA-3DTalk extras instead), trains face → mouth → fuse (each resumable),
writes workdir/stage2/model (the trained heads, `head.stage2_model`) and returns the summary
(`train.run` writes it to summary.json). Validation renders go to workdir/val/*.png as
prediction | ground truth | |error| strips, and to TensorBoard (workdir/tb) (`head.validation`).
With `evaluate` (`eval.heldout.evaluate_heldout`, passed in: train/ does not import eval/) the
held-out split is scored too.
"""

from __future__ import annotations

import time

import numpy as np

from ua3dtalk_jax.data.stage2_audio import match_subject
from ua3dtalk_jax.head.stage2_model import save_stage2
from ua3dtalk_jax.head.validation import make_validator
from ua3dtalk_jax.head.workdir import Workdir
from ua3dtalk_jax.train import parallel
from ua3dtalk_jax.train.stage2.loop import train_branch, train_fuse
from ua3dtalk_jax.train.stage2.state import scene_extent


def run_stage2(
    cfg, subject, workdir: str, *, log=print, writer=None, on_frame=None, evaluate=None
) -> dict:
    """Trains stage 2 and, with `evaluate`, scores the held-out split.

    Args:
      evaluate: `eval.heldout.evaluate_heldout` or a function of its signature; None: the summary
        has no "heldout" entry.
      on_frame: `on_frame(index, rgb)` receives every rendered held-out frame (e.g. to write a
        video).
    Returns:
      the summary dict (`train.run` writes it): "heldout", "seconds", "extent", "gaussians".
    """
    match_subject(cfg.data, cfg.model.audio, subject)
    wd = Workdir(workdir)
    features = wd.stage1_features(subject, cfg)
    mesh = parallel.global_mesh()
    extent = scene_extent(np.stack([subject.viewmat(int(i)) for i in subject.split("train")]))
    validate = make_validator(cfg, subject, features, workdir, writer)
    times, branches = {}, {}
    for part in ("face", "mouth"):
        t = time.time()
        branches[part] = train_branch(
            cfg,
            part,
            subject,
            features,
            workdir,
            extent=extent,
            mesh=mesh,
            writer=writer,
            log=log,
            validate=validate,
        )
        times[part] = time.time() - t
    t = time.time()
    states = train_fuse(
        cfg,
        subject,
        features,
        workdir,
        branches,
        extent=extent,
        mesh=mesh,
        writer=writer,
        log=log,
        validate=validate,
    )
    times["fuse"] = time.time() - t
    save_stage2(cfg, wd.model_dir, states, extent)
    summary = {}
    if evaluate is not None:
        t = time.time()
        heads = {p: (branches[p][1], states[p].net, states[p].gaussians) for p in ("face", "mouth")}
        summary["heldout"] = evaluate(
            cfg, subject, features, heads, on_frame=on_frame, use_deform=cfg.train.deform
        )
        times["eval"] = time.time() - t
    summary |= {
        "seconds": times,
        "extent": extent,
        "gaussians": {p: int(np.sum(states[p].gaussians.active)) for p in states},
    }
    return summary
