"""The state and loop shared by the stage-1 trainers (Prior Extraction and Emotion Distillation).

Each trainer builds `step(state, data, key) -> (state, metrics)`, a jitted pure function that samples
its own batch from the device-resident `data` dict with `key`; `run_steps` threads the key with
`fold_in(key, step)` and keeps the metrics of every step on the host (a few scalars).

Resume: given a `Progress`, `run_steps` saves the state and the metrics so far every
`checkpoint_every` steps and at the module's last step (orbax, atomic: head/checkpoint.py) under
<root>/<module name>, and starts from the newest such checkpoint. Since the key of step i is
`fold_in(key, i)` whatever came before, a module resumed at step k ends with the parameters of one
run without a stop; a finished module is restored, not retrained.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable

import flax.struct
import jax
import numpy as np
import optax

from ua3dtalk_jax.head.checkpoint import Checkpointer


@flax.struct.dataclass
class TrainState:
    params: dict
    opt_state: optax.OptState
    step: jax.Array


def init_state(params: dict, tx: optax.GradientTransformation) -> TrainState:
    return TrainState(params=params, opt_state=tx.init(params), step=jax.numpy.zeros((), "int32"))


def apply_grads(state: TrainState, grads: dict, tx: optax.GradientTransformation) -> TrainState:
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    return TrainState(optax.apply_updates(state.params, updates), opt_state, state.step + 1)


class Progress:
    """Where and how often `run_steps` checkpoints the modules of one stage-1 run.

    Args:
      root: folder of the per-module checkpoint folders (e.g. workdir/stage1_progress).
      every: steps between checkpoints (≥ 1; the module's last step is always saved).
      fingerprint: any JSON-able description of what is trained (config, data sizes); a module
        checkpoint written under another one is refused rather than mixed in.
    Raises:
      ValueError: `every` is not a positive integer.
    """

    def __init__(self, root: str, every: int, fingerprint=None):
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(
                f"stage1.checkpoint_every={every!r}: must be a whole number of steps ≥ 1"
            )
        self.root, self.every = os.path.abspath(root), every
        text = json.dumps(fingerprint, sort_keys=True, default=str)
        self.fingerprint = hashlib.sha256(text.encode()).hexdigest()[:16]

    def open(self, name: str) -> Checkpointer:
        """The checkpointer of module `name` (close it when done)."""
        return Checkpointer(os.path.join(self.root, name), max_to_keep=1)

    def restore(self, ck: Checkpointer, state: TrainState, n_steps: int):
        """(state, metrics history, step) from `ck`'s newest checkpoint, or (state, {}, 0).

        Raises:
          ValueError: the checkpoint was written for another fingerprint or step count (named).
        """
        if ck.latest_step() is None:
            return state, {}, 0
        restored, meta = ck.restore(state)
        if (meta.get("fingerprint"), meta.get("n_steps")) != (self.fingerprint, n_steps):
            raise ValueError(
                f"{ck.directory}: a stage-1 checkpoint of another config or subject (or step "
                f"count); delete {self.root} to train stage 1 afresh"
            )
        hist = {k: list(map(float, v)) for k, v in meta["history"].items()}
        return jax.tree.map(jax.numpy.asarray, restored), hist, int(meta["step"])

    def save(self, ck: Checkpointer, state: TrainState, step: int, n_steps: int, hist: dict):
        ck.save(step, state, {"n_steps": n_steps, "history": hist, "fingerprint": self.fingerprint})


def run_steps(
    step: Callable,
    state: TrainState,
    data: dict,
    key: jax.Array,
    n_steps: int,
    log: Callable[[str], None] | None = None,
    name: str = "",
    progress: Progress | None = None,
) -> tuple[TrainState, dict]:
    """Runs `n_steps` steps; returns the state and {metric: (n_steps,) array, "seconds": float}.

    The first step's compile time is included in "seconds" and reported apart as "compile_s".
    With `progress`, starts from module `name`'s newest checkpoint and saves one every
    `progress.every` steps (module docstring); "seconds" then counts this call's steps only.
    """
    hist: dict[str, list] = {}
    start = 0
    ck = progress.open(name) if progress is not None and n_steps > 0 else None
    try:
        if ck is not None:
            state, hist, start = progress.restore(ck, state, n_steps)
            if log is not None and start:
                log(
                    f"{name}: "
                    + (
                        "finished before, restored"
                        if start == n_steps
                        else f"resumed at step {start}/{n_steps}"
                    )
                )
        t0 = time.perf_counter()
        compile_s = 0.0
        for i in range(start, n_steps):
            state, metrics = step(state, data, jax.random.fold_in(key, i))
            metrics = jax.device_get(metrics)
            if i == start:
                compile_s = time.perf_counter() - t0
            for k, v in metrics.items():
                hist.setdefault(k, []).append(float(v))
            if log is not None and (i % max(1, n_steps // 5) == 0 or i == n_steps - 1):
                log(
                    f"{name} step {i + 1}/{n_steps} "
                    + " ".join(f"{k}={v:.4f}" for k, v in metrics.items())
                )
            if ck is not None and ((i + 1) % progress.every == 0 or i + 1 == n_steps):
                progress.save(ck, state, i + 1, n_steps, hist)
    finally:
        if ck is not None:
            ck.close()
    out = {k: np.asarray(v) for k, v in hist.items()}
    out["seconds"] = time.perf_counter() - t0
    out["compile_s"] = compile_s
    return state, out
