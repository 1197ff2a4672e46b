"""Workdirs as version 0 wrote them (before config.json carried `config_version`), for the tests
that old workdirs still resume and load (`configs.migrate`)."""

from __future__ import annotations

import json
import os

from ua3dtalk_jax.configs import get_config
from ua3dtalk_jax.configs.io import CONFIG_NAME, save_config
from ua3dtalk_jax.configs.migrate import VERSION_KEY


def tiny_resolved(overrides=()):
    """The tiny preset as training saves it: its audio kind resolved (synthetic subject: mel)."""
    from ua3dtalk_jax.configs import apply_overrides

    return apply_overrides(get_config("tiny"), ["data.audio_feature=mel", *overrides])


def write_version0(workdir: str, edit=None) -> dict:
    """Writes workdir/config.json of `tiny_resolved()` without a version, after `edit(dict)`;
    returns the dict written."""
    path = save_config(tiny_resolved(), workdir)
    with open(path) as f:
        saved = json.load(f)
    saved.pop(VERSION_KEY)
    if edit is not None:
        edit(saved)
    with open(os.path.join(workdir, CONFIG_NAME), "w") as f:
        json.dump(saved, f)
    return saved
