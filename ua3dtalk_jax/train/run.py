"""One training run: subject resolution, config overrides, stage 1 then stage 2 (what the CLI does).

`experiments/train.py` folds flags into `configs.get_config(preset)` with `apply_overrides` and
calls `train(cfg, subject_path, workdir, stage)`. The resolved config is saved as
workdir/config.json; restarting the same command in the same workdir resumes, and a workdir trained
with a different config is refused (naming the fields that differ) rather than mixed.
"""

from __future__ import annotations

import ast
import json
import os
import time

import ml_collections

from ua3dtalk_jax.configs import sync_schedule
from ua3dtalk_jax.train.checkpoint import write_json_atomic
from ua3dtalk_jax.train.config_io import CONFIG_NAME, save_config, with_legacy_defaults
from ua3dtalk_jax.train.stage1 import CKPT_DIR as STAGE1_DIR
from ua3dtalk_jax.train.stage1 import has_stage1

STAGES = ("1", "2", "all")
SUBJECT_RECORD = "subject.json"  # {"subject": absolute path} of the first training call


def enable_compile_cache(path: str | None) -> None:
    """Persistent XLA compilation cache in `path` (None/"" leaves it off).

    The stage-2 steps take 20–40 s each to compile on a 2-core CPU; with the cache a resumed run, a
    second subject or an ablation row reuses them (the executables are keyed by program and flags).
    """
    import jax  # noqa: PLC0415

    if not path:
        return
    os.makedirs(path, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def apply_overrides(cfg: ml_collections.ConfigDict, overrides) -> ml_collections.ConfigDict:
    """Applies "dotted.key=value" strings (values parsed as Python literals, else strings).

    Raises:
      ValueError: a malformed override or an unknown key (named).
    """
    for item in overrides or ():
        if "=" not in item:
            raise ValueError(f"--set {item!r}: expected dotted.key=value")
        key, raw = item.split("=", 1)
        node, *path = key.strip().split(".")
        parent, parts = cfg, [node, *path]
        for p in parts[:-1]:
            if p not in parent:
                raise ValueError(f"--set {item!r}: unknown config key {key!r}")
            parent = parent[p]
        if parts[-1] not in parent:
            raise ValueError(f"--set {item!r}: unknown config key {key!r}")
        try:
            value = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            value = raw
        old = parent[parts[-1]]
        if isinstance(old, tuple) and isinstance(value, list):
            value = tuple(value)
        if isinstance(old, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        parent[parts[-1]] = value
    sync_schedule(cfg)
    return cfg


def resolve_subject(subject: str, data_root: str, synthetic_preset: str, log=print) -> str:
    """A subject directory: a path, a folder under data_root, or "synthetic" (built if absent)."""
    from ua3dtalk_jax.data.synthetic.generate import ensure_synthetic  # noqa: PLC0415

    if subject == "synthetic":
        path = os.path.join(data_root, f"synthetic_{synthetic_preset}")
        if not os.path.isdir(path):
            log(f"building the embedded synthetic subject ({synthetic_preset}) in {path} ...")
        return ensure_synthetic(data_root, f"synthetic_{synthetic_preset}", synthetic_preset)
    for cand in (subject, os.path.join(data_root, subject)):
        if os.path.isdir(cand):
            return cand
    raise FileNotFoundError(
        f"--subject={subject}: neither a directory nor a folder under --data_root={data_root}")


def check_workdir(cfg, workdir: str) -> None:
    """Saves the config, or checks that the workdir was trained with the same one."""
    path = os.path.join(workdir, CONFIG_NAME)
    if os.path.exists(path):
        with open(path) as f:
            old = with_legacy_defaults(json.load(f))
        new = json.loads(json.dumps(cfg.to_dict()))
        diff = sorted(_diff(old, new))
        if diff:
            raise ValueError(
                f"{workdir} was trained with another config (differs in {', '.join(diff[:8])}); "
                "use a new --workdir or the same flags to resume")
        return
    save_config(cfg, workdir)


def record_subject(workdir: str, subject_path: str) -> None:
    """Writes workdir/subject.json (the subject's absolute path) unless it is there already, so
    the tools that read a finished workdir find its subject without --subject."""
    path = os.path.join(workdir, SUBJECT_RECORD)
    if os.path.exists(path):
        return
    os.makedirs(workdir, exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump({"subject": os.path.abspath(subject_path)}, f)
    os.replace(path + ".tmp", path)


def recorded_subject(workdir: str) -> str | None:
    """The subject path recorded by `record_subject`, or None (older workdirs have none)."""
    try:
        with open(os.path.join(workdir, SUBJECT_RECORD)) as f:
            return json.load(f)["subject"]
    except (OSError, ValueError, KeyError):
        return None


def _diff(a, b, prefix=""):
    if isinstance(a, dict) and isinstance(b, dict):
        for k in set(a) | set(b):
            yield from _diff(a.get(k), b.get(k), f"{prefix}{k}.")
    elif a != b:
        yield prefix.rstrip(".")


def run_stage1(cfg, subject, workdir: str, log=print) -> dict:
    """Trains stage 1 unless its checkpoint exists; computes (and caches) the per-frame features."""
    from ua3dtalk_jax.train.stage1 import train_stage1  # noqa: PLC0415
    from ua3dtalk_jax.train.stage1_data import Stage1Data  # noqa: PLC0415
    from ua3dtalk_jax.train.stage2 import stage1_arrays  # noqa: PLC0415

    t = time.time()
    ckpt = os.path.join(workdir, STAGE1_DIR)
    metrics = {}
    if has_stage1(workdir):
        log(f"stage 1: checkpoint found in {ckpt}, not retrained")
    else:
        log("stage 1: Prior Extraction and Emotion Distillation ...")
        data = Stage1Data.from_subject(subject, cfg.stage1)
        _, metrics = train_stage1(data, cfg.stage1, workdir, log=log)
    stage1_arrays(subject, workdir)
    return {"seconds": time.time() - t, "metrics": metrics}


def train(cfg, subject_path: str, workdir: str, stage: str = "all", *, log=print,
          on_frame=None) -> dict:  # fmt: skip
    """Runs stage 1 and/or stage 2; returns the summary (stage 2 also writes summary.json)."""
    from tensorboardX import SummaryWriter  # noqa: PLC0415

    from ua3dtalk_jax.data import Subject  # noqa: PLC0415
    from ua3dtalk_jax.train.features import feature_source  # noqa: PLC0415
    from ua3dtalk_jax.train.stage2 import run_stage2  # noqa: PLC0415

    if stage not in STAGES:
        raise ValueError(f"--stage must be one of {STAGES}, got {stage!r}")
    source = feature_source(cfg)  # a bad value fails here, before any training
    check_workdir(cfg, workdir)
    subject = Subject.open(subject_path)
    record_subject(workdir, subject_path)
    out = {"subject": os.path.abspath(subject_path), "workdir": os.path.abspath(workdir)}
    if stage == "all" and source == "subject":
        log("stage 1: skipped (stage1.features.source=subject: stage 2 reads the subject's "
            "precomputed UA-3DTalk features)")  # fmt: skip
    elif stage in ("1", "all"):
        out["stage1"] = run_stage1(cfg, subject, workdir, log)
    if stage in ("2", "all"):
        writer = SummaryWriter(os.path.join(workdir, "tb"))
        try:
            out["stage2"] = run_stage2(cfg, subject, workdir, log=log, writer=writer,
                                       on_frame=on_frame)  # fmt: skip
        finally:
            writer.close()
        if "stage1" in out:
            out["stage2"]["seconds"]["stage1"] = out["stage1"]["seconds"]
            write_json_atomic(os.path.join(workdir, "summary.json"), out["stage2"])
    return out
