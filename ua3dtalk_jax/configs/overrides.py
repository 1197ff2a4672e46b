"""Command-line overrides of a preset (`--set=dotted.key=value`) and the checks every run config gets.

`apply_overrides(cfg, ["train.face.iterations=3000", ...])` parses each value as a Python literal
(else keeps the text), refuses an unknown key, a value of another type than the preset's field
(naming both) and a key that training sets from the subject (`RESOLVED`), then `check_config`
refuses numbers no run can use. Both raise ValueError with one
line naming the key, so the CLIs print it instead of a traceback.

`check_config` rules (every preset satisfies them; `tests/configs` checks that):
  * every number is finite and ≥ 0 (no field of any preset is negative);
  * counts that something is divided or looped by are ≥ 1: fields named `*iterations`, `*steps`,
    `*_every`, `batch`, `batch_size`, `capacity`, `members`, `keep_checkpoints`.
"""

from __future__ import annotations

import ast
import math

import ml_collections

POSITIVE_SUFFIXES = ("iterations", "steps", "_every")
POSITIVE_NAMES = frozenset({"batch", "batch_size", "capacity", "members", "keep_checkpoints"})
# Keys training overwrites with what the subject holds (`data.stage2_audio.resolve_audio`), so a
# value given for them would be lost: the kind of audio features is chosen instead.
RESOLVED = {"model.audio.steps": "data.audio_feature", "model.audio.in_dim": "data.audio_feature"}


def apply_overrides(cfg: ml_collections.ConfigDict, overrides) -> ml_collections.ConfigDict:
    """Applies "dotted.key=value" strings in order, then `check_config`.

    Raises:
      ValueError naming the override: no "=", an unknown key, a value of the wrong type; or a
        `check_config` refusal.
    """
    for item in overrides or ():
        if "=" not in item:
            raise ValueError(f"--set {item!r}: expected dotted.key=value")
        key, raw = item.split("=", 1)
        key = key.strip()
        if key in RESOLVED:
            raise ValueError(
                f"--set {item!r}: {key} is set from the subject's audio features; "
                f"choose them with {RESOLVED[key]}"
            )
        parts = key.split(".")
        parent = cfg
        for p in parts[:-1]:
            if not isinstance(parent, ml_collections.ConfigDict) or p not in parent:
                raise ValueError(f"--set {item!r}: unknown config key {key!r}")
            parent = parent[p]
        if not isinstance(parent, ml_collections.ConfigDict) or parts[-1] not in parent:
            raise ValueError(f"--set {item!r}: unknown config key {key!r}")
        old = parent[parts[-1]]
        if isinstance(old, ml_collections.ConfigDict):
            raise ValueError(f"--set {item!r}: {key!r} is a section; set one of its fields")
        try:
            parent[parts[-1]] = _typed(item, key, old, _parse(raw))
        except TypeError as e:  # ml_collections' own field types (FieldReference)
            raise ValueError(f"--set {item!r}: {e}") from None
    check_config(cfg)
    return cfg


def _parse(raw: str):
    try:
        return ast.literal_eval(raw)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return raw


def _typed(item: str, key: str, old, value):
    """`value` converted to the type of the field's current value, or a ValueError."""
    if isinstance(old, tuple) and isinstance(value, list):
        return tuple(value)
    if old is None or isinstance(old, (tuple, list)) and isinstance(value, (tuple, list)):
        return value
    want = type(old)
    ok = isinstance(value, want)
    if want is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if want is int and isinstance(value, bool) or want is not bool and isinstance(value, bool):
        ok = False
    if not ok:
        raise ValueError(
            f"--set {item!r}: {key} takes a {want.__name__} (like {old!r}), not {value!r}"
        )
    return value


def check_config(cfg: ml_collections.ConfigDict) -> None:
    """Refuses numbers no run can use (module docstring); ValueError naming the first key."""
    for key, value in _leaves(cfg):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        name = key.rsplit(".", 1)[-1]
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"config {key}={value!r}: must be a finite number ≥ 0")
        if (name.endswith(POSITIVE_SUFFIXES) or name in POSITIVE_NAMES) and value < 1:
            raise ValueError(f"config {key}={value!r}: must be ≥ 1")


def _leaves(d, prefix: str = ""):
    for k, v in d.items():
        if isinstance(v, (dict, ml_collections.ConfigDict)):
            yield from _leaves(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v
