"""The stage-2 phase loops: a branch (face or mouth) and the fuse step, resumable and NaN-safe.

Schedule of a branch of `iterations` steps (reference §2–§4, scaled by the preset), iteration i:
  i < warmup            static Gaussians (no deformation)
  warmup ≤ i < ens      deformation with one random ensemble member per view ("train" mode)
  i ≥ ensemble_from     the full ensemble ("eval" mode, Eq. 10–12)
  i ≥ lpips_from        the late LPIPS terms
  i ≥ final_from        the mouth's final phase: black background, motion and geometry frozen
  every densify_every   (densify_from < i < densify_until) clone/split/prune on the fixed buffers,
                        then the green-background clean-up seen from that iteration's (first)
                        training camera (the face's to the end of training)
  every sh_every        one more SH degree
The fuse step trains colours and the face opacity for `fuse.iterations` steps.

Checkpoints (orbax, atomic, keep-last-k) go to workdir/stage2/<phase>, the logged metrics to
workdir/stage2/<phase>_metrics.jsonl (one JSON object per `log_every` iterations: the means
over those iterations; a resumed or rolled-back phase first drops the lines past the iteration it
restarts from, so each iteration is logged once); the frames of an iteration
are a function of the iteration (`sampler`), so a killed run restarted with the same command ends
with the same parameters. A non-finite loss or gradient skips the update (the step leaves the
state unchanged); `max_bad_steps` in a row roll back to the newest checkpoint.
"""

from __future__ import annotations

import jax
import numpy as np

from ua3dtalk_jax.gaussians import (
    check_capacity,
    densify_and_prune,
    densify_config,
    grow_sh_degree,
    init_grad_stats,
    should_densify,
)
from ua3dtalk_jax.gaussians.densify import background_cleanup, should_clean
from ua3dtalk_jax.gaussians.params import camera_center, trainable
from ua3dtalk_jax.losses.branches import Variant
from ua3dtalk_jax.train import parallel
from ua3dtalk_jax.train.side_by_side import Stopped
from ua3dtalk_jax.train.stage2.phase import Phase
from ua3dtalk_jax.train.stage2.sampler import FrameSampler, Prefetcher
from ua3dtalk_jax.train.stage2.state import gaussian_optimizer, init_branch, zero_moments
from ua3dtalk_jax.train.stage2.step import make_branch_step, make_fuse_step

PHASES = ("face", "mouth", "fuse")


def variant(cfg, b, it: int) -> Variant:
    deform = bool(cfg.train.deform) and it >= b.warmup
    # A static step never runs the ensemble: one variant (and one compilation) for all of them.
    return Variant(deform=deform, mode="eval" if it >= b.ensemble_from or not deform else "train")


def flags(b, part: str, it: int) -> dict:
    hair = part == "face" and b.warmup < it < b.hair_until and it % 7 != 0
    final = part == "mouth" and it >= b.final_from
    return {
        "hair": np.bool_(hair),
        "erode": np.bool_(part == "face" and it >= b.mouth_erode_from),
        "late": np.bool_(it >= b.lpips_from),
        "final": np.bool_(final),
    }


def branch_key(cfg, part: str) -> jax.Array:
    """The PRNG key a branch is initialised and trained from."""
    return jax.random.fold_in(jax.random.PRNGKey(cfg.seed), {"face": 1, "mouth": 2}[part])


def variants_of(cfg, b) -> list:
    """The distinct step variants of a branch's schedule, in the order it first reaches them, each
    with its first iteration: [(Variant, it), ...]."""
    out = {}
    for it in sorted({0, b.warmup, b.ensemble_from}):
        if it < b.iterations:
            out.setdefault(variant(cfg, b, it), it)
    return list(out.items())


def global_batch(cfg, mesh) -> int:
    n = mesh.devices.size
    return int(-(-cfg.data.batch_size * jax.process_count() // n) * n)


def train_branch(
    cfg,
    part,
    subject,
    features,
    workdir,
    *,
    extent,
    mesh,
    writer=None,
    log=print,
    validate=None,
    stop=None,
    position=0,
):
    """Trains one branch to `train.<part>.iterations`; returns (BranchState, MotionNetwork).

    Args:
      cfg: run config; part: "face" or "mouth"; subject: `data.Subject`; features: stage-1 arrays.
      workdir: run directory; extent: scene extent; mesh: the device mesh.
      validate: optional callable(part, state, net, it) for periodic validation renders.
      stop: optional `threading.Event` (branches trained side by side): once set, the branch checkpoints
        where it is and raises `side_by_side.Stopped`.
      position: the progress bar's line.
    """
    b = cfg.train[part]
    h, w = subject.size
    state, net, g_tx, n_tx = init_branch(cfg, part, branch_key(cfg, part), extent, subject)
    ph = Phase(part, b.iterations, cfg, workdir, writer, log)
    state, start = ph.restore(state)
    if start >= b.iterations:
        ph.close()
        return state, net
    dcfg = densify_config(cfg.model.gaussians[part], b)
    sampler = FrameSampler(subject, features, part, b, cfg.seed, global_batch(cfg, mesh))
    steps = {}

    def step(state, batch, it):
        v = variant(cfg, b, it)
        if v not in steps:
            steps[v] = make_branch_step(cfg, part, net, g_tx, n_tx, v, width=w, height=h, mesh=mesh)
        return steps[v](state, batch, flags(b, part, it))

    def after(state, it):
        if it % b.sh_every == 0:  # the SH degree of the steps from `it` on
            state = state.replace(gaussians=grow_sh_degree(state.gaussians, it, b.sh_every))
        if should_densify(dcfg, it):
            state = _densify(dcfg, state, it, extent, ph, cfg.train.strict_capacity)
        if should_clean(dcfg, it):
            # the camera of iteration it − 1 (just done); every host draws the same frames
            view = subject.viewmat(int(sampler.indices(it - 1)[0]))
            state = _clean(dcfg, state, np.asarray(camera_center(np.asarray(view))), ph)
        if validate is not None and (it % cfg.train.val_every == 0 or it == b.iterations):
            validate(part, state, net, it)
        return state

    state = _run(cfg, ph, state, start, sampler, mesh, step, after, stop, position)
    log(
        f"[{part}] {b.iterations} iterations, {int(np.sum(state.gaussians.active))} Gaussians, "
        f"{len(steps)} compiled step variants, {ph.cleaned} green-background Gaussians hit by "
        f"the clean-up ({dcfg.bg_cleanup})"
    )
    return state, net


def _run(
    cfg,
    ph: Phase,
    state,
    start: int,
    sampler: FrameSampler,
    mesh,
    step,
    after,
    stop=None,
    position: int = 0,
):
    """The loop of one phase from iteration `start` to `ph.total`.

    `step(state, batch, it)` → (state, metrics) runs iteration `it`; `after(state, it)` → state
    runs once `it` iterations are done (densification, validation), before the checkpoint. A
    roll-back (Phase.after_step) restarts the frame prefetcher at the restored iteration. A set
    `stop` event ends the loop between iterations: the state is checkpointed (a resumed run goes
    on from there) and `side_by_side.Stopped` raised.
    """
    rows = parallel.process_slice(sampler.batch)

    def prefetcher(it):
        return Prefetcher(
            lambda i: _slice(sampler.load(i), rows),
            it,
            ph.total,
            depth=cfg.data.prefetch,
            workers=cfg.data.num_workers,
        )

    # Every state that does not come out of the step itself (initialised, restored, densified,
    # SH-grown) is placed like the step's replicated outputs; otherwise each such change of
    # sharding would be a retrace and a recompilation of the step.
    def place(s):
        return jax.device_put(s, parallel.replicated(mesh))

    state = place(state)
    pre = prefetcher(start)
    ph.progress(start, position)
    it = start
    try:
        while it < ph.total:
            if stop is not None and stop.is_set():
                if it > start and it % cfg.train.checkpoint_every:
                    ph.save(state, it)
                raise Stopped(f"[{ph.name}] stopped at iteration {it} (checkpointed)")
            batch = parallel.put_batch(pre.get(it), mesh)
            state, metrics = step(state, batch, it)
            back = ph.after_step(it, metrics, state)
            if back is not None:
                state, it = place(back[0]), back[1]
                pre.close()
                pre = prefetcher(it)
                continue
            it += 1
            changed = after(state, it)
            state = state if changed is state else place(changed)
            if it % cfg.train.checkpoint_every == 0 or it == ph.total:
                ph.save(state, it)
    finally:
        pre.close()
        ph.close()
    return state


def _slice(batch: dict, rows: slice) -> dict:
    return {k: v[rows] for k, v in batch.items()}


def _densify(dcfg, state, it, extent, ph, strict: bool):
    key = jax.random.fold_in(jax.random.fold_in(state.key, state.step), 99)
    g, info = densify_and_prune(
        dcfg, state.gaussians, state.stats, key, extent=extent, iteration=it
    )
    if strict:
        check_capacity(info, g.capacity)
    elif int(info.n_overflow) > 0 and not ph.warned_capacity:
        ph.warned_capacity = True
        ph.log(
            f"[{ph.name}] iteration {it}: the {g.capacity}-slot Gaussian buffer is full; "
            f"{int(info.n_overflow)} densification candidates skipped (warned once; raise "
            f"model.gaussians.{ph.name}.capacity, or set train.strict_capacity=True to stop)"
        )
    return state.replace(
        gaussians=g,
        g_opt=zero_moments(state.g_opt, info.changed),
        stats=init_grad_stats(g.capacity),
    )


def _clean(dcfg, state, campos, ph):
    g, stats, hit = background_cleanup(dcfg, state.gaussians, state.stats, campos)
    ph.cleaned += int(np.sum(hit))
    # pruned slots are free slots: no moments; faded ones keep theirs (edited in place)
    g_opt = zero_moments(state.g_opt, hit) if dcfg.bg_cleanup == "prune" else state.g_opt
    return state.replace(gaussians=g, stats=stats, g_opt=g_opt)


def fuse_inputs(cfg, branches, extent) -> tuple[dict, dict, dict]:
    """(nets, Gaussian optimisers, states) of the fuse step, each {"face": …, "mouth": …}, from
    the trained branches {part: (BranchState, MotionNetwork)}: fresh optimiser moments, step 0."""
    nets = {p: branches[p][1] for p in ("face", "mouth")}
    txs = {
        p: gaussian_optimizer(
            cfg.train[p], extent, branches[p][0].gaussians.sh.shape[1], fuse=cfg.train.fuse, part=p
        )
        for p in ("face", "mouth")
    }
    states = {
        p: branches[p][0].replace(
            g_opt=txs[p].init(trainable(branches[p][0].gaussians)), step=branches[p][0].step * 0
        )
        for p in ("face", "mouth")
    }
    return nets, txs, states


def train_fuse(
    cfg,
    subject,
    features,
    workdir,
    branches,
    *,
    extent,
    mesh,
    writer=None,
    log=print,
    validate=None,
):
    """The fuse step over the trained branches {"face": (state, net), "mouth": (state, net)}.

    Returns:
      {"face": BranchState, "mouth": BranchState} after `train.fuse.iterations` steps.
    """
    f = cfg.train.fuse
    h, w = subject.size
    nets, txs, states = fuse_inputs(cfg, branches, extent)
    ph = Phase("fuse", f.iterations, cfg, workdir, writer, log)
    states, start = ph.restore(states)
    if start >= f.iterations:
        ph.close()
        return states
    sampler = FrameSampler(subject, features, "fuse", None, cfg.seed, global_batch(cfg, mesh))
    steps = {}

    def step(states, batch, it):
        if not steps:
            steps[0] = make_fuse_step(cfg, nets, txs, width=w, height=h, mesh=mesh)
        return steps[0](states, batch, np.bool_(it >= f.lpips_from))

    def after(states, it):
        if validate is not None and (it % cfg.train.val_every == 0 or it == f.iterations):
            validate("fuse", states, nets, it)
        return states

    states = _run(cfg, ph, states, start, sampler, mesh, step, after)
    return states
