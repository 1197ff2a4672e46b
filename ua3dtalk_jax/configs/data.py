"""Data and audio-feature knobs: `data_config(preset)` for the presets paper, cpu and tiny.

The training config nests this under `config.data`; library code receives only this sub-config.
    audio_feature  stage 2's audio windows (`audio.precomputed`): "auto" (aud_ds.npy, else
                   aud_hu.npy, else aud_eo.npy, else "mel"), "deepspeech", "hubert", "esperanto", "mel" (ours,
                   from aud.wav). Training replaces "auto" by the kind it loaded, and the workdir
                   keeps that: a resumed run, evaluation and inference refuse another kind.
    batch_size     frames per host per step (TalkingGaussian trains one frame per iteration)
    prefetch       batches the loader threads keep ready (train.parallel.Prefetcher)
    num_workers    loader threads
The frame rate is the subject's (subject.json; plain TalkingGaussian folders: 25) and the run has
one seed, `config.seed`.
"""

from __future__ import annotations

import ml_collections

_PRESETS = {
    # paper: TalkingGaussian / UA-3DTalk train one frame per step on one GPU.
    "paper": {"batch_size": 1, "prefetch": 4, "num_workers": 4},
    "cpu": {"batch_size": 1, "prefetch": 2, "num_workers": 2},
    "tiny": {"batch_size": 2, "prefetch": 1, "num_workers": 1},
}


def data_config(preset: str = "paper") -> ml_collections.ConfigDict:
    """Returns the data sub-config of a preset ("paper", "cpu" or "tiny")."""
    if preset not in _PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {sorted(_PRESETS)}")
    cfg = ml_collections.ConfigDict()
    cfg.audio_feature = "auto"
    cfg.update(_PRESETS[preset])
    return cfg
