"""The one config system: `get_config(preset)` → a ConfigDict for the presets paper, cpu and tiny.

    config.preset     "paper" | "cpu" | "tiny"
    config.seed       the run's one seed (stage 1's modules, batches and synthetic corpus;
                      stage 2's Gaussian init, member draws, frame order)
    config.backend    rasterizer backend ("auto", "ffi", "reference")
    config.synthetic  size preset of the embedded synthetic subject built on first use
    config.data       `data.data_config`   (loader knobs; library code gets only this)
    config.model      `model.model_config` (stage-2 sizes, ablation switches P/E/U, densification)
    config.train      `train.train_config` (stage-2 schedule of face, mouth and fuse)
    config.stage1     `stage1.stage1_config` (Prior Extraction and Emotion Distillation)

Each value lives in one place: the densification schedule in `train.<part>`, its thresholds in
`model.gaussians.<part>`. Only `experiments/*.py` fold absl flags into this (`apply_overrides`);
the resolved config is saved in the workdir as `config.json` (`configs.io`, read back through
`configs.migrate`).
"""

from __future__ import annotations

import ml_collections

from ua3dtalk_jax.configs.data import data_config
from ua3dtalk_jax.configs.model import PRESETS, model_config
from ua3dtalk_jax.configs.overrides import apply_overrides, check_config
from ua3dtalk_jax.configs.stage1 import stage1_config
from ua3dtalk_jax.configs.train import train_config

_SYNTHETIC = {"paper": "default", "cpu": "default", "tiny": "tiny"}


def get_config(preset: str = "cpu") -> ml_collections.ConfigDict:
    """The whole run configuration of `preset` ∈ PRESETS."""
    if preset not in PRESETS:
        raise ValueError(f"unknown config {preset!r}; choose one of {PRESETS}")
    cfg = ml_collections.ConfigDict()
    cfg.preset = preset
    cfg.seed = 0
    cfg.backend = "auto"
    cfg.synthetic = _SYNTHETIC[preset]
    cfg.data = data_config(preset)
    cfg.model = model_config(preset)
    cfg.train = train_config(preset)
    cfg.stage1 = stage1_config(preset)
    return cfg


__all__ = ["PRESETS", "apply_overrides", "check_config", "get_config"]
