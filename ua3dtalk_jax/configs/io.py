"""The resolved run config in the workdir: `config.json` (written once, read by resume/inference).

`save_config` writes the config with its `config_version` (`configs.migrate`); `load_config` and
`saved_config` read any version as this one's. JSON turns tuples into lists; `stage1_from_dict`
turns them back where the code hashes or compares them (the stage-1 layer specs), so a reloaded
config equals the saved one.
"""

from __future__ import annotations

import json
import os

import ml_collections

from ua3dtalk_jax.configs.migrate import VERSION, VERSION_KEY, migrate

CONFIG_NAME = "config.json"
# Stage-1 fields that are tuples in the presets (lists once through JSON).
_STAGE1_TUPLES = (
    ("syncnet", "face_specs"),
    ("syncnet", "audio_specs"),
    ("lip_expert", "audio_specs"),
    ("lip_expert", "channels"),
    ("expr_prior", "channels"),
    ("stylenet", "mlp"),
    ("emotion", "image_hw"),
)


def as_saved(cfg: ml_collections.ConfigDict) -> dict:
    """`cfg` as `save_config` writes it (JSON values, no version): what a saved one compares to."""
    return json.loads(json.dumps(cfg.to_dict()))


def save_config(cfg: ml_collections.ConfigDict, workdir: str) -> str:
    """Writes workdir/config.json atomically; returns its path."""
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, CONFIG_NAME)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump({**cfg.to_dict(), VERSION_KEY: VERSION}, f, indent=2, sort_keys=True)
    os.replace(tmp, path)
    return path


def saved_config(workdir: str) -> dict:
    """workdir/config.json as a dict of this version (`configs.migrate`).

    Raises:
      FileNotFoundError: the workdir has no config (not a training workdir).
    """
    path = os.path.join(workdir, CONFIG_NAME)
    if not os.path.isdir(workdir):
        raise FileNotFoundError(f"--workdir={workdir}: no such directory")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: not found; is {workdir} a training workdir?")
    with open(path) as f:
        return migrate(json.load(f))


def load_config(workdir: str) -> ml_collections.ConfigDict:
    """workdir/config.json as a ConfigDict of this version (`saved_config`)."""
    d = saved_config(workdir)
    cfg = ml_collections.ConfigDict(d)
    cfg.stage1 = stage1_from_dict(d["stage1"])
    return cfg


def saved_stage1(d: dict, version: int) -> ml_collections.ConfigDict:
    """A stage-1 section saved at `version` (the stage-1 checkpoint's copy), as this version's."""
    return stage1_from_dict(migrate({"stage1": d}, version)["stage1"])


def stage1_from_dict(d: dict) -> ml_collections.ConfigDict:
    """A stage-1 section read back from JSON, its layer specs and sizes tuples again."""
    cfg = ml_collections.ConfigDict(d)
    for sub, key in _STAGE1_TUPLES:
        cfg[sub][key] = _tuples(cfg[sub][key])
    return cfg


def _tuples(x):
    return tuple(_tuples(v) for v in x) if isinstance(x, (list, tuple)) else x
