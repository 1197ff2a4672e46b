"""The resolved run config in the workdir: `config.json` (written once, read by resume/inference).

JSON turns tuples into lists; `load_config` turns them back where the code hashes or compares them
(the stage-1 layer specs, via `train.stage1._config`), so a reloaded config equals the saved one.
"""

from __future__ import annotations

import copy
import json
import os

import ml_collections

CONFIG_NAME = "config.json"
# Fields added after workdirs were first written, with the value that reproduces what those
# workdirs did: a saved config without one reads as having it (resuming, comparing, loading).
LEGACY_DEFAULTS = {("stage1", "features", "source"): "stage1",
                   ("stage1", "prior"): {"face_recon_weights": ""},
                   ("stage1", "checkpoint_every"): 500,
                   ("model", "uncertainty", "fusion"): "dense"}  # fmt: skip
# Values that meant something else when those workdirs were written: before training resolved
# data.audio_feature, "auto" was saved as it was, and the audio network was always built for our
# 32-wide mel windows.
LEGACY_VALUES = {("data", "audio_feature"): ("auto", "mel")}


# Fields that are gone (copies of another, or never read): workdirs written before keep them in
# their config.json (the densification schedule was copied from train.<part> into
# model.gaussians.<part>).
LEGACY_REMOVED = [("model", "gaussians", part, key) for part in ("face", "mouth")
                  for key in ("densify_from", "densify_every", "densify_until", "size_prune_from",
                              "sh_every")]  # fmt: skip
# data.fps, data.seed, data.shuffle and data.keys were never read (the subject's fps, config.seed)
LEGACY_REMOVED += [("data", key) for key in ("fps", "seed", "shuffle", "keys")]


def with_legacy_defaults(d: dict) -> dict:
    """A copy of a saved config dict with the missing `LEGACY_DEFAULTS` fields filled in, the
    `LEGACY_VALUES` rewritten and the `LEGACY_REMOVED` copies dropped (where their parent section
    exists)."""
    out = copy.deepcopy(d)
    for path in LEGACY_REMOVED:
        node = _parent(out, path)
        if node is not None:
            node.pop(path[-1], None)
    for path, value in LEGACY_DEFAULTS.items():
        node = _parent(out, path)
        if node is not None:
            node.setdefault(path[-1], copy.deepcopy(value))
    for path, (old, new) in LEGACY_VALUES.items():
        node = _parent(out, path)
        if node is not None and node.get(path[-1]) == old:
            node[path[-1]] = new
    return out


def _parent(d: dict, path: tuple):
    node = d
    for key in path[:-1]:
        node = node.get(key) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else None


def save_config(cfg: ml_collections.ConfigDict, workdir: str) -> str:
    """Writes workdir/config.json atomically; returns its path."""
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, CONFIG_NAME)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(cfg.to_dict(), f, indent=2, sort_keys=True)
    os.replace(tmp, path)
    return path


def load_config(workdir: str) -> ml_collections.ConfigDict:
    """Reads workdir/config.json.

    Raises:
      FileNotFoundError: the workdir has no config (not a training workdir).
    """
    from ua3dtalk_jax.train.stage1 import _config

    path = os.path.join(workdir, CONFIG_NAME)
    if not os.path.isdir(workdir):
        raise FileNotFoundError(f"--workdir={workdir}: no such directory")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: not found; is {workdir} a training workdir?")
    with open(path) as f:
        d = with_legacy_defaults(json.load(f))
    cfg = ml_collections.ConfigDict(d)
    cfg.stage1 = _config(d["stage1"])
    return cfg
