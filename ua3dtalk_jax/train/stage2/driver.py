"""Stage 2 driver (paper §2.3–§2.4): face and mouth branches, the fuse step.

`run_stage2(cfg, subject, workdir)` needs the stage-1 checkpoint in workdir (its per-frame f_exp,
f_tone, f_emo-attn come from `head.features.stage1_features`) unless `stage1.features.source` is
"subject" (the subject's UA-3DTalk extras instead), trains the face and mouth branches side by
side (two threads; one after the other across several processes), then the fuse step (each
resumable), writes workdir/stage2/model (the trained heads, `head.stage2_model`) and returns the summary
(`train.run` writes it to summary.json). Validation renders go to workdir/val/*.png as
prediction | ground truth | |error| strips, and to TensorBoard (workdir/tb) (`head.validation`).
With `evaluate` (`eval.heldout.evaluate_heldout`, passed in: train/ does not import eval/) the
held-out split is scored too.
"""

from __future__ import annotations

import functools
import time

import jax
import numpy as np

from ua3dtalk_jax.data.stage2_audio import match_subject
from ua3dtalk_jax.head.stage2_model import save_stage2
from ua3dtalk_jax.head.validation import make_validator
from ua3dtalk_jax.head.workdir import Workdir
from ua3dtalk_jax.train import heap, parallel
from ua3dtalk_jax.train.side_by_side import run as side_by_side_run
from ua3dtalk_jax.train.stage2.loop import train_branch, train_fuse
from ua3dtalk_jax.train.stage2.state import scene_extent

PARTS = ("face", "mouth")


def run_stage2(
    cfg,
    subject,
    workdir: str,
    *,
    log=print,
    writer=None,
    on_frame=None,
    evaluate=None,
    side_by_side: bool = True,
) -> dict:
    """Trains stage 2 and, with `evaluate`, scores the held-out split.

    Args:
      side_by_side: train the face and mouth branches at once, in two threads (the CLI's
        `--side_by_side`; each branch is a function of its own keys and frames, so the result is
        that of one after the other); False, or several processes: one after the other.
      evaluate: `eval.heldout.evaluate_heldout` or a function of its signature; None: the summary
        has no "heldout" entry.
      on_frame: `on_frame(index, rgb)` receives every rendered held-out frame (e.g. to write a
        video).
    Returns:
      the summary dict (`train.run` writes it): "heldout", "seconds" (per phase; "branches": the
      wall time of face and mouth together), "extent", "gaussians".
    """
    match_subject(cfg.data, cfg.model.audio, subject)
    wd = Workdir(workdir)
    features = wd.stage1_features(subject, cfg)
    mesh = parallel.global_mesh()
    extent = scene_extent(np.stack([subject.viewmat(int(i)) for i in subject.split("train")]))
    validate = make_validator(cfg, subject, features, workdir, writer)
    times = {}
    branches = _train_branches(
        cfg,
        subject,
        features,
        workdir,
        side_by_side,
        times,
        extent=extent,
        mesh=mesh,
        writer=writer,
        log=log,
        validate=validate,
    )
    heap.release(programs=False)  # free heap (train.heap)
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
        heap.release(programs=False)
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


def _train_branches(cfg, subject, features, workdir, side_by_side, times, **kw) -> dict:
    """{"face": (state, net), "mouth": (state, net)}, trained side by side (one process) or one
    after the other; each branch's wall time, and both together ("branches"), into `times`."""

    def branch(part, stop=None, position=0):
        t = time.time()
        out = train_branch(
            cfg, part, subject, features, workdir, stop=stop, position=position, **kw
        )
        times[part] = time.time() - t
        return out

    t = time.time()
    if side_by_side and jax.process_count() == 1:
        jobs = {p: functools.partial(branch, p, position=i) for i, p in enumerate(PARTS)}
        branches = side_by_side_run(jobs)  # each job is branch(part, stop)
    else:  # several processes: every host must issue the same collectives in the same order
        branches = {}
        for p in PARTS:
            branches[p] = branch(p)
            heap.release(programs=False)
    times["branches"] = time.time() - t
    return branches
