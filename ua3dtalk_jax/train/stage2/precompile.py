"""Stage 2's programs compiled ahead, while stage 1 trains (issue 30 §1; opt-in: `--precompile`).

Each stage-2 step variant takes 15–40 s to compile on 2 CPU cores, and a branch stands still for
it. Nothing in a step program depends on stage 1's values, only on the config, the subject's
frame size, its cameras' extent and the widths of the per-frame features. `Precompiler` compiles
every step variant of both branches, their validation renders, the fuse step and its render in a
background thread, at the lowest CPU priority, into the persistent compilation cache
(`train.run.enable_compile_cache`); stage 2 then finds each program there (a cache hit: the same
program under the same key) and loads it in about a second. Without a persistent cache it does
nothing: an executable held in memory would not reach the jitted steps the loops build.

Measured on the cpu main job (BUILD_NOTES, "Where the main job's CPU time goes"): stage 2 ran
66 s faster, but stage 1 took 293 s longer — on 2 cores the emotion thread already fills what
Prior Extraction leaves, so there is no idle core to compile on. Hence off by default; it is for
machines whose CPU cores idle while stage 1 trains (on a GPU).

The programs are built from the loops' own pieces (`loop.branch_key`, `loop.variants_of`,
`loop.fuse_inputs`, `step.make_branch_step`, `step.make_fuse_step`, `head.validation`) with
stand-in features of the real widths; `tests/train/stage2/test_precompile.py` checks that the
loops' programs are cache hits. A failure here costs only the time: it is logged and stage 2
compiles as before.
"""

from __future__ import annotations

import os
import threading
import time

import jax
import numpy as np

from ua3dtalk_jax.head import validation
from ua3dtalk_jax.head.features import WIDTHS
from ua3dtalk_jax.train import parallel
from ua3dtalk_jax.train.stage2.loop import (
    branch_key,
    flags,
    fuse_inputs,
    global_batch,
    variants_of,
)
from ua3dtalk_jax.train.stage2.sampler import load_frames
from ua3dtalk_jax.train.stage2.state import init_branch, scene_extent
from ua3dtalk_jax.train.stage2.step import make_branch_step, make_fuse_step

PARTS = ("face", "mouth")
NICE = 19  # the compile thread's priority: it only takes what stage 1 leaves idle


def cache_enabled() -> bool:
    """Whether JAX writes compiled programs to a persistent cache (`enable_compile_cache`)."""
    return bool(jax.config.jax_compilation_cache_dir)


def programs(cfg, subject, mesh=None) -> list[tuple[str, object]]:
    """[(name, lower)] of stage 2's step programs in the order training first runs them (the
    branches' static, "train" and "eval" variants side by side, then the fuse step); `lower()`
    builds its inputs and returns the `jax.stages.Lowered` program."""
    mesh = parallel.global_mesh() if mesh is None else mesh
    extent = scene_extent(np.stack([subject.viewmat(int(i)) for i in subject.split("train")]))
    n = len(subject)
    features = {k: np.zeros((n, w), np.float32) for k, w in WIDTHS}
    h, w = subject.size
    kw = {"width": w, "height": h, "backend": cfg.backend}
    rows = parallel.process_slice(global_batch(cfg, mesh))
    first = np.asarray(subject.split("train"))[: global_batch(cfg, mesh)][rows]
    batch = lambda: parallel.put_batch(load_frames(subject, features, first), mesh)
    branches = {}

    def branch(part):
        if part not in branches:  # random box points: the state's shapes are all that matter
            st, net, g_tx, n_tx = init_branch(cfg, part, branch_key(cfg, part), extent, None)
            branches[part] = (jax.device_put(st, parallel.replicated(mesh)), net, g_tx, n_tx)
        return branches[part]

    def lower_branch(part, v, it):
        st, net, g_tx, n_tx = branch(part)
        step = make_branch_step(cfg, part, net, g_tx, n_tx, v, width=w, height=h, mesh=mesh)
        return step.lower(st, batch(), flags(cfg.train[part], part, it))

    def lower_fuse():
        done = {p: (branch(p)[0], branch(p)[1]) for p in PARTS}
        nets, txs, states = fuse_inputs(cfg, done, extent)
        states = jax.device_put(states, parallel.replicated(mesh))
        step = make_fuse_step(cfg, nets, txs, width=w, height=h, mesh=mesh)
        return step.lower(states, batch(), np.bool_(False))

    def lower_val(part, deform):
        st, net = branch(part)[:2]
        render = validation.branch_render(net, use_deform=deform, **kw)
        frame = validation.validation_frame(subject, features)
        return render.lower(*validation.host(st.net, st.gaussians), frame)

    def lower_fuse_val():
        nets = {p: branch(p)[1] for p in PARTS}
        states = {p: branch(p)[0] for p in PARTS}
        render = validation.fused_render(nets, use_deform=bool(cfg.train.deform), **kw)
        params = {p: states[p].net for p in PARTS}
        gaussians = {p: states[p].gaussians for p in PARTS}
        frame = validation.validation_frame(subject, features)
        return render.lower(*validation.host(params, gaussians), frame)

    per_part = {p: variants_of(cfg, cfg.train[p]) for p in PARTS}
    out = []
    for k in range(max(len(v) for v in per_part.values())):
        for p in PARTS:
            if k < len(per_part[p]):
                v, it = per_part[p][k]
                name = f"{p}/{'static' if not v.deform else v.mode}"
                out.append((name, lambda p=p, v=v, it=it: lower_branch(p, v, it)))
    for p in PARTS:
        for deform in _validation_deform(cfg, p):
            name = f"{p}/validation{'' if deform else ' (static)'}"
            out.append((name, lambda p=p, d=deform: lower_val(p, d)))
    f = cfg.train.fuse
    if f.iterations > 0:
        out += [("fuse", lower_fuse), ("fuse/validation", lower_fuse_val)]
    return out


def _validation_deform(cfg, part) -> list[bool]:
    """The `use_deform` of the validations a branch runs (`head.validation`: every `val_every`
    iterations and at its last), in order, each once."""
    b = cfg.train[part]
    its = list(range(cfg.train.val_every, b.iterations + 1, cfg.train.val_every)) + [b.iterations]
    return list(dict.fromkeys(bool(cfg.train.deform and it > b.warmup) for it in its))


class Precompiler:
    """Compiles `programs(cfg, subject)` in a background thread into the persistent cache.

    `start()` returns at once; `join()` waits for the rest (call it before stage 2, so that no
    program is compiled twice at once) and logs what was compiled. `stop()` (stage 1 failed or
    was interrupted) returns at once; the thread (a daemon) ends after the program in hand.
    """

    def __init__(self, cfg, subject, log=print):
        self.cfg, self.subject, self.log = cfg, subject, log
        self.done: list[tuple[str, float]] = []
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stage2-precompile", daemon=True)

    def start(self) -> Precompiler:
        # XLA's thread pools are made with the backend, by the thread that first asks for it, and
        # inherit that thread's priority: made here, they keep the caller's
        jax.devices()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def join(self) -> list[tuple[str, float]]:
        """Waits for the thread; returns [(program, seconds)] compiled."""
        t = time.perf_counter()
        self._thread.join()
        waited = time.perf_counter() - t
        if self.error is not None:
            self.log(
                f"stage 2 precompile failed ({type(self.error).__name__}: {self.error}); "
                "stage 2 compiles its programs as it reaches them"
            )
        elif self.done:
            total = sum(s for _, s in self.done)
            self.log(
                f"stage 2: {len(self.done)} programs compiled during stage 1 in {total:.0f} s "
                f"({', '.join(n for n, _ in self.done)}); waited {waited:.0f} s for the last"
            )
        return self.done

    def _run(self) -> None:
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICE)
        except (AttributeError, OSError):  # not Linux: the thread keeps the normal priority
            pass
        try:
            for name, lower in programs(self.cfg, self.subject):
                if self._stop.is_set():
                    return
                t = time.perf_counter()
                lower().compile()
                self.done.append((name, time.perf_counter() - t))
        except Exception as e:  # noqa: BLE001 — costs only time; reported by join()
            self.error = e
