"""Saved configs of earlier versions, read as this version's: `migrate(d)`.

config.json (and the stage-1 checkpoint's copy of the stage-1 section) carries `config_version`;
one written before that field existed is version 0. `migrate` applies the steps from the saved
version to `VERSION` in order, so resuming, evaluation and inference see one shape of config
whatever wrote it, and the code reads every field directly. A step only reproduces what the
workdir did: a field added later gets the value that behaves as its absence did.

Values are JSON-shaped (lists, not tuples) to compare equal with a config read back from JSON.
"""

from __future__ import annotations

import copy

VERSION = 1
VERSION_KEY = "config_version"


def migrate(d: dict, version: int | None = None) -> dict:
    """A copy of the saved config dict `d`, brought to `VERSION`.

    Args:
      d: a whole run config as saved (`VERSION_KEY` at its top, or none: version 0), or a part of
        one such as {"stage1": ...} with `version` given (the stage-1 checkpoint's copy).
      version: the dict's version when it carries no `VERSION_KEY`.
    Returns:
      the migrated dict, without `VERSION_KEY`. Sections `d` lacks are left out.
    Raises:
      ValueError: `d` was written by a newer version.
    """
    out = copy.deepcopy(d)
    saved = int(out.pop(VERSION_KEY, 0 if version is None else version))
    if saved > VERSION:
        raise ValueError(
            f"config version {saved} is newer than this ua3dtalk_jax reads ({VERSION})"
        )
    for step in _STEPS[saved:]:
        step(out)
    return out


# Version 0 → 1 (the config before it carried a version).
# Copies and never-read fields that are gone: the densification schedule copied from
# train.<part> into model.gaussians.<part>; data.fps, .seed, .shuffle, .keys (the subject's fps
# and the run seed are what runs used); stage1.seed and stage1.emotion.corpus_seed, which equal
# the run seed in every preset (stage 1 now draws from `seed`); model.preset, a copy of `preset`.
_REMOVED_1 = [
    *(
        ("model", "gaussians", part, key)
        for part in ("face", "mouth")
        for key in ("densify_from", "densify_every", "densify_until", "size_prune_from", "sh_every")
    ),
    *(("data", key) for key in ("fps", "seed", "shuffle", "keys")),
    ("stage1", "seed"),
    ("stage1", "emotion", "corpus_seed"),
    ("model", "preset"),
]
# Fields added later, with the value that behaves as their absence did.
_ADDED_1 = {
    ("stage1", "checkpoint_every"): 500,
    ("stage1", "prior"): {"face_recon_weights": ""},
    ("stage1", "features"): {"standardise": False, "scale": 0.3, "source": "stage1"},
    ("stage1", "features", "source"): "stage1",
    ("stage1", "syncnet", "pretrained"): "",
    ("stage1", "syncnet", "mel_offset"): 0,
    ("stage1", "syncnet", "centre"): False,
    ("stage1", "syncnet", "nce_weight"): 0.0,
    ("stage1", "syncnet", "nce_scale"): 10.0,
    ("stage1", "lip_expert", "audio_norm"): "group",
    ("stage1", "lip_expert", "audio_all_stages"): False,
    ("stage1", "lip_expert", "audio_proj"): False,
    ("stage1", "lip_expert", "mouth_weight"): 1.0,
    ("stage1", "stylenet", "frame_mlp"): [],
    ("stage1", "stylenet", "frame_dropout"): 0.0,
    ("stage1", "stylenet", "out_scale"): 0.0,
    ("stage1", "fuse", "exp_dropout"): 0.0,
    ("stage1", "emotion", "wav2vec_weights"): "",
    ("model", "uncertainty", "fusion"): "dense",
    ("model", "decoder"): {
        part: {"xyz_gain": 1.0, "zero_init": [], "channel_attention": part == "face"}
        for part in ("face", "mouth")
    },
}
# Values that meant something else: "auto" was saved unresolved, and it always meant our mel.
_RENAMED_1 = {("data", "audio_feature"): ("auto", "mel")}


def _to_1(d: dict) -> None:
    for path in _REMOVED_1:
        node = _parent(d, path)
        if node is not None:
            node.pop(path[-1], None)
    for path, value in _ADDED_1.items():
        node = _parent(d, path)
        if node is not None:
            node.setdefault(path[-1], copy.deepcopy(value))
    for path, (old, new) in _RENAMED_1.items():
        node = _parent(d, path)
        if node is not None and node.get(path[-1]) == old:
            node[path[-1]] = new


_STEPS = [_to_1]  # _STEPS[v] brings version v to v + 1
assert len(_STEPS) == VERSION


def _parent(d: dict, path: tuple) -> dict | None:
    """The dict holding `path[-1]`, or None where a section on the way is absent."""
    node = d
    for key in path[:-1]:
        node = node.get(key) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else None
