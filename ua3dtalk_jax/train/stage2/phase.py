"""Bookkeeping of one stage-2 phase (face, mouth or fuse): checkpoints, the progress bar, the
NaN guard's skips and roll-backs, and the metrics history (workdir/stage2/<phase>_metrics.jsonl).
"""

from __future__ import annotations

import json
import os
import time

import jax
import numpy as np
from tqdm import tqdm

from ua3dtalk_jax.head.checkpoint import Checkpointer
from ua3dtalk_jax.head.workdir import Workdir

MAX_ROLLBACKS = 3  # then the run stops with FloatingPointError instead of looping


class Phase:
    """Bookkeeping shared by the branch and fuse loops: checkpoints, progress, logging."""

    def __init__(self, name, total, cfg, workdir, writer=None, log=print):
        self.name, self.total, self.cfg, self.log, self.writer = name, total, cfg, log, writer
        self.ckpt = Checkpointer(
            Workdir(workdir).phase_dir(name), max_to_keep=cfg.train.keep_checkpoints
        )
        self.bad = 0
        self.t0 = time.time()
        self.bar = None
        self.warned_capacity = False
        self.rollbacks = 0
        self.window = []
        self.cleaned = 0  # Gaussians hit by the green-background clean-up (since this start)
        self.history = Workdir(workdir).phase_history(name)

    def restore(self, state):
        """(state, iteration) from the newest checkpoint, or (state, 0); the metrics history keeps
        only the lines up to that iteration (the later ones will be logged again)."""
        self.window = []
        if self.ckpt.latest_step() is None:
            truncate_history(self.history, 0)
            return state, 0
        restored, meta = self.ckpt.restore(state)
        restored = jax.tree.map(jax.numpy.asarray, restored)
        self.log(f"[{self.name}] resumed at iteration {meta['iteration']}")
        truncate_history(self.history, int(meta["iteration"]))
        return restored, int(meta["iteration"])

    def save(self, state, it: int):
        self.ckpt.save(it, state, {"phase": self.name, "iteration": it, "total": self.total})

    def done(self) -> bool:
        return self.ckpt.latest_step() == self.total

    def progress(self, start: int, position: int = 0):
        """Starts the progress bar (`position`: its line, for branches trained side by side)."""
        self.bar = tqdm(
            total=self.total,
            initial=start,
            desc=f"stage2/{self.name}",
            dynamic_ncols=True,
            mininterval=1.0,
            position=position,
        )
        self.t0, self.i0 = time.time(), start

    def after_step(self, it: int, metrics, state) -> tuple[object, int] | None:
        """Handles NaN skips and logging; returns (state, iteration) to roll back to, or None."""
        ok = float(metrics["finite"]) > 0
        self.bad = 0 if ok else self.bad + 1
        if not ok:
            self.log(f"[{self.name}] iteration {it}: non-finite loss or gradient, update skipped")
            if self.bad >= self.cfg.train.max_bad_steps:
                self.bad = 0
                self.rollbacks += 1
                if self.ckpt.latest_step() is None or self.rollbacks > MAX_ROLLBACKS:
                    raise FloatingPointError(
                        f"[{self.name}] training diverged at iteration {it}: "
                        f"{self.cfg.train.max_bad_steps} non-finite steps in a row "
                        + (
                            "before the first checkpoint"
                            if self.ckpt.latest_step() is None
                            else f"after {MAX_ROLLBACKS} roll-backs"
                        )
                    )
                self.log(f"[{self.name}] {self.cfg.train.max_bad_steps} bad steps: rolling back")
                return self.restore(state)
        self.bar.update(1)
        self.window.append({k: float(v) for k, v in metrics.items()})
        if (it + 1) % self.cfg.train.log_every == 0 or it + 1 == self.total:
            # means over the steps since the last log line (single frames are noisy)
            m = {k: float(np.mean([w[k] for w in self.window])) for k in self.window[0]}
            self.window = []
            rate = (it + 1 - self.i0) / max(time.time() - self.t0, 1e-9)
            self.bar.set_postfix(
                loss=f"{m['loss']:.4f}", psnr=f"{m['psnr']:.2f}", its=f"{rate:.1f}"
            )
            with open(self.history, "a") as fh:
                fh.write(json.dumps({"iteration": it + 1, "iters_per_s": rate, **m}) + "\n")
            if self.writer is not None:
                for k, v in m.items():
                    self.writer.add_scalar(f"{self.name}/{k}", v, it + 1)
                self.writer.add_scalar(f"{self.name}/iters_per_s", rate, it + 1)
        return None

    def close(self):
        if self.bar is not None:
            self.bar.close()
        self.ckpt.close()


def truncate_history(path: str, iteration: int) -> None:
    """Drops the lines of a metrics .jsonl past `iteration` (and a line a kill cut short), so a
    resumed phase logs each iteration once; the file is rewritten atomically."""
    if not os.path.exists(path):
        return
    with open(path) as f:
        lines = f.read().splitlines()
    keep = []
    for line in lines:
        try:
            if json.loads(line)["iteration"] <= iteration:
                keep.append(line)
        except (ValueError, KeyError, TypeError):
            continue  # the partial last line of a killed write
    if len(keep) < len(lines):
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write("".join(line + "\n" for line in keep))
        os.replace(tmp, path)
