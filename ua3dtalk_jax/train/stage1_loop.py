"""The state and loop shared by the stage-1 trainers (Prior Extraction and Emotion Distillation).

Each trainer builds `step(state, data, key) -> (state, metrics)`, a jitted pure function that samples
its own batch from the device-resident `data` dict with `key`; `run_steps` threads the key with
`fold_in(key, step)` and keeps the metrics of every step on the host (a few scalars).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import flax.struct
import jax
import numpy as np
import optax


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


def run_steps(
    step: Callable, state: TrainState, data: dict, key: jax.Array, n_steps: int,
    log: Callable[[str], None] | None = None, name: str = "",
) -> tuple[TrainState, dict]:  # fmt: skip
    """Runs `n_steps` steps; returns the state and {metric: (n_steps,) array, "seconds": float}.

    The first step's compile time is included in "seconds" and reported apart as "compile_s".
    """
    hist: dict[str, list] = {}
    t0 = time.perf_counter()
    compile_s = 0.0
    for i in range(n_steps):
        state, metrics = step(state, data, jax.random.fold_in(key, i))
        metrics = jax.device_get(metrics)
        if i == 0:
            compile_s = time.perf_counter() - t0
        for k, v in metrics.items():
            hist.setdefault(k, []).append(float(v))
        if log is not None and (i % max(1, n_steps // 5) == 0 or i == n_steps - 1):
            log(f"{name} step {i + 1}/{n_steps} " + " ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
    out = {k: np.asarray(v) for k, v in hist.items()}
    out["seconds"] = time.perf_counter() - t0
    out["compile_s"] = compile_s
    return state, out
