"""Atomic, resumable checkpoints with orbax (keep the last k).

A checkpoint holds one pytree of arrays (Gaussians, network parameters,
optimizer states, step, RNG key data) plus a small JSON document (data-order
state, phase name, config hash, format version). Orbax writes each step into a
temporary directory and renames it when complete, so a run killed at any
moment (SIGKILL included) leaves only whole checkpoints behind; restarting the
same command restores the newest one. A step is present only once orbax has finished it
(`finished_steps`): the temporary folder a killed save leaves behind (`<step>.orbax-checkpoint-tmp`)
is never read, and a writing `Checkpointer` deletes such leftovers when it opens the directory.

`write_json_atomic` gives small JSON documents (summary.json) the same guarantee: a reader sees
the old file or the new one, never a truncated one.
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

FORMAT_VERSION = 1


class Checkpointer:
    """Saves and restores (state pytree, JSON metadata) pairs under `directory`.

    Args:
      directory: where step folders are written (created if missing; the unfinished step
        folders of a killed save in it are deleted).
      max_to_keep: how many of the newest checkpoints are kept.
    """

    def __init__(self, directory: str, *, max_to_keep: int = 3):
        self.directory = os.path.abspath(directory)
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep,
            create=True,
            enable_async_checkpointing=False,
            cleanup_tmp_directories=True,
        )
        self._manager = ocp.CheckpointManager(
            self.directory, options=options, item_names=("state", "meta")
        )

    def latest_step(self) -> int | None:
        """The newest complete step, or None when nothing was saved yet."""
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def save(self, step: int, state: Any, meta: dict | None = None) -> None:
        """Writes `state` (a pytree of arrays) and `meta` (JSON) for `step`, atomically."""
        state = jax.tree.map(np.asarray, jax.device_get(state))
        meta = dict(meta or {}, format_version=FORMAT_VERSION, step=int(step))
        self._manager.save(
            int(step),
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)
            ),
            force=True,
        )
        self._manager.wait_until_finished()

    def restore(self, like: Any, step: int | None = None) -> tuple[Any, dict]:
        """Restores (state, meta) for `step` (default: newest) with the structure of `like`.

        Raises:
          FileNotFoundError: no checkpoint exists in the directory.
          ValueError: the checkpoint was written by another format version.
        """
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        abstract = jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(np.shape(x), np.asarray(x).dtype), like
        )
        out = self._manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()
            ),
        )
        meta = dict(out["meta"])
        if meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"checkpoint {self.directory}/{step} has format version "
                f"{meta.get('format_version')}, this ua3dtalk_jax reads {FORMAT_VERSION}"
            )
        return out["state"], meta

    def close(self) -> None:
        self._manager.close()


def finished_steps(directory: str) -> list[int]:
    """The steps orbax has finished writing in `directory` (sorted; [] when it does not exist).

    Reads only: creates nothing and leaves a killed save's temporary folders where they are (the
    next `Checkpointer` that writes there deletes them).
    """
    if not os.path.isdir(directory):
        return []
    return sorted(ocp.utils.checkpoint_steps(directory))


def write_json_atomic(path: str, obj: Any) -> None:
    """Writes `obj` as indented JSON to `path` through `path + ".tmp"` and `os.replace`, so a
    crash, or a value JSON cannot encode, leaves the previous file (or none), never a part."""
    text = json.dumps(obj, indent=2)  # a value JSON cannot encode fails here, before any write
    tmp = path + ".tmp"
    try:
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
