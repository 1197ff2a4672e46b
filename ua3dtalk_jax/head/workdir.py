"""A training workdir: the one place that knows its files, its subject, its version and its model.

    config.json        the resolved config of the run (`configs.io`, versioned: `configs.migrate`)
    subject.json       {"subject": absolute path} of the first training call
    summary.json       the run's summary: held-out metrics, timings, substitutes
    stage1/            the stage-1 checkpoint (`head.stage1_model`)
    stage1_progress/   per-module checkpoints of an unfinished stage 1
    stage2/<phase>/    stage-2 training checkpoints, stage2/<phase>_metrics.jsonl their logs
    stage2/model/      the trained heads (`head.stage2_model`)
    val/, tb/          validation PNG strips and TensorBoard events
    eval_<split>.*     evaluation tables (`eval.evaluation`)

A workdir is refused, never mixed, when its config differs from a run's (`check_config`) or was
written by another version (`check_version`).
"""

from __future__ import annotations

import json
import os

import ml_collections

from ua3dtalk_jax.configs import get_config
from ua3dtalk_jax.configs.io import CONFIG_NAME, as_saved, load_config, save_config, saved_config
from ua3dtalk_jax.data.stage2_audio import open_for_model, trained_on
from ua3dtalk_jax.head import features as features_lib
from ua3dtalk_jax.head.checkpoint import finished_steps, write_json_atomic
from ua3dtalk_jax.head.stage1_model import Stage1Model, load_stage1
from ua3dtalk_jax.head.stage2_model import load_stage2
from ua3dtalk_jax.head.trained import TrainedModel


class Stage1Missing(FileNotFoundError):
    """Stage 2 was asked for before stage 1 produced its checkpoint."""


class Workdir:
    """The files of one training workdir (module docstring); `path` need not exist yet."""

    SUBJECT = "subject.json"
    SUMMARY = "summary.json"
    STAGE1 = "stage1"
    STAGE1_PROGRESS = "stage1_progress"
    STAGE2 = "stage2"
    MODEL = os.path.join("stage2", "model")
    VAL = "val"
    TENSORBOARD = "tb"

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)

    def __repr__(self) -> str:
        return f"Workdir({self.path!r})"

    def file(self, *names: str) -> str:
        return os.path.join(self.path, *names)

    @property
    def config_path(self) -> str:
        return self.file(CONFIG_NAME)

    @property
    def summary_path(self) -> str:
        return self.file(self.SUMMARY)

    @property
    def stage1_dir(self) -> str:
        return os.path.abspath(self.file(self.STAGE1))

    @property
    def stage1_progress_dir(self) -> str:
        return self.file(self.STAGE1_PROGRESS)

    @property
    def model_dir(self) -> str:
        return os.path.abspath(self.file(self.MODEL))

    def phase_dir(self, phase: str) -> str:
        """Checkpoints of a stage-2 training phase ("face", "mouth", "fuse")."""
        return self.file(self.STAGE2, phase)

    def phase_history(self, phase: str) -> str:
        """The metrics log (jsonl) of a stage-2 training phase."""
        return self.file(self.STAGE2, f"{phase}_metrics.jsonl")

    def val_png(self, phase: str, it: int) -> str:
        return self.file(self.VAL, f"{phase}_{it:06d}.png")

    @property
    def tensorboard_dir(self) -> str:
        return self.file(self.TENSORBOARD)

    def eval_file(self, split: str, ext: str = "json") -> str:
        """An evaluation result of a split (`eval.metrics.write_results` stem eval_<split>)."""
        return self.file(f"eval_{split}.{ext}")

    def has_stage1(self) -> bool:
        """Whether a finished stage-1 checkpoint is here (a save killed before orbax finished it
        leaves only a temporary folder, which does not count)."""
        return bool(finished_steps(self.stage1_dir))

    def has_model(self) -> bool:
        """Whether the trained stage-2 model is here (a finished save)."""
        return bool(finished_steps(self.model_dir))

    def require_stage1(self) -> None:
        """Raises `Stage1Missing` (naming the command to run) without a stage-1 checkpoint."""
        if not self.has_stage1():
            raise Stage1Missing(
                f"{self.stage1_dir}: no stage-1 checkpoint. Stage 2 consumes stage 1's features: "
                "run `python -m experiments.train --stage=1` (or --stage=all) with this --workdir "
                "first."
            )

    # -- config and version ------------------------------------------------------------------

    def load_config(self) -> ml_collections.ConfigDict:
        """The run's config. Raises FileNotFoundError: not a training workdir."""
        return load_config(self.path)

    def check_version(self) -> None:
        """Refuses a workdir whose config.json has other keys than this version's config.

        Raises:
          FileNotFoundError: no config.json (not a training workdir).
          ValueError: keys missing or unknown (written by another version of ua3dtalk_jax).
        """
        saved = self.load_config().to_dict()
        preset = saved.get("preset")
        try:
            current = get_config(preset).to_dict()
        except ValueError as e:
            raise ValueError(
                f"{self.config_path}: preset {preset!r} unknown to this version"
            ) from e
        missing, extra = (
            sorted(_keys(current) - _keys(saved)),
            sorted(_keys(saved) - _keys(current)),
        )
        if missing or extra:
            raise ValueError(
                f"{self.path} was written by another version of ua3dtalk_jax (config keys "
                f"missing: {missing[:6] or 'none'}; unknown: {extra[:6] or 'none'}); retrain it "
                "with this one"
            )

    def check_config(self, cfg, *, save: bool = True) -> None:
        """Saves the config (with `save`), or checks that the workdir was trained with the same one.

        Raises:
          ValueError: the workdir was trained with another config (the fields that differ named;
            another audio feature kind with the flag that reads it).
        """
        if not os.path.exists(self.config_path):
            if save:
                save_config(cfg, self.path)
            return
        old, new = saved_config(self.path), as_saved(cfg)  # both as this version writes them
        diff = sorted(_diff(old, new))
        if any(d == "data.audio_feature" or d.startswith("model.audio.") for d in diff):
            was = ml_collections.ConfigDict(old)
            raise ValueError(
                f"{self.path} was trained on {trained_on(was.data, was.model.audio)} audio "
                f"features; this run reads {trained_on(cfg.data, cfg.model.audio)}: pass "
                f"--set=data.audio_feature={was.data.audio_feature} (the subject must still have "
                "those features) or use a new --workdir"
            )
        if diff:
            raise ValueError(
                f"{self.path} was trained with another config (differs in {', '.join(diff[:8])}); "
                "use a new --workdir or the same flags to resume"
            )

    def stage1_config(self) -> dict:
        """The stage-1 section of config.json, as this version reads it (`configs.migrate`)."""
        return saved_config(self.path)["stage1"]

    # -- subject and summary -----------------------------------------------------------------

    def record_subject(self, subject_path: str) -> None:
        """Writes subject.json (the subject's absolute path) unless it is there already, so the
        tools that read a finished workdir find its subject without --subject."""
        path = self.file(self.SUBJECT)
        if os.path.exists(path):
            return
        os.makedirs(self.path, exist_ok=True)
        write_json_atomic(path, {"subject": os.path.abspath(subject_path)})

    def recorded_subject(self) -> str | None:
        """The subject path `record_subject` wrote, or None (none recorded)."""
        try:
            with open(self.file(self.SUBJECT)) as f:
                return json.load(f)["subject"]
        except (OSError, ValueError, KeyError):
            return None

    def subject_dir(self, subject: str | None, data_root: str) -> str:
        """The subject directory of this workdir for the tools that read it; never builds one.

        None: the recorded subject when that directory still exists, else as "synthetic".
        "synthetic" (experiments.train's default) is data_root/synthetic_<the config's synthetic
        preset>; anything else is a path or a folder under data_root.
        """
        if subject is None:
            rec = self.recorded_subject()
            if rec is not None and os.path.isdir(rec):
                return rec
            subject = "synthetic"
        if subject == "synthetic":
            cands = [os.path.join(data_root, f"synthetic_{self.load_config().synthetic}")]
        else:
            cands = [subject, os.path.join(data_root, subject)]
        for c in cands:
            if os.path.isdir(c):
                return c
        raise FileNotFoundError(
            f"--subject={subject}: no subject directory at "
            f"{' or '.join(cands)}; pass the subject the workdir was trained "
            "on"
        )

    def write_summary(self, summary: dict) -> None:
        """Replaces summary.json whole (a reader never sees half a file)."""
        write_json_atomic(self.summary_path, summary)

    # -- the trained model -------------------------------------------------------------------

    def load_stage1(self) -> Stage1Model:
        return load_stage1(self.stage1_dir)

    def stage1_features(self, subject, cfg=None, emotion=None) -> dict:
        """Per-frame f_exp, f_tone, f_emo of `subject`: from the stage-1 checkpoint here (cached
        in the subject folder), or, when `cfg` (the full config) says
        `stage1.features.source=subject`, from the subject's UA-3DTalk extras (no emotion
        override there). Raises `Stage1Missing` without the checkpoint it needs."""
        if features_lib.feature_source(_features(cfg)) == "subject":
            if emotion not in (None, "audio"):
                raise ValueError(
                    f"emotion={emotion!r}: an emotion override needs stage 1's per-class f_emo "
                    "means; this model reads the subject's precomputed features "
                    "(stage1.features.source=subject)"
                )
            return features_lib.subject_features(subject, cfg.stage1.features)
        self.require_stage1()
        return features_lib.stage1_features(subject, self.stage1_dir, emotion=emotion)

    def load_trained(self, subject: str | None = None, *, drivable: bool = True) -> TrainedModel:
        """Opens this workdir's finished model after the version check.

        Args:
          subject: path of the subject directory it was trained on (None: the recorded one).
          drivable: the model is for new audio (inference): refuse one whose stage 2 read the
            subject's precomputed features and load the frozen stage 1. False (held-out
            evaluation, which reads the subject's own features): `TrainedModel.stage1` is None.
        Raises:
          FileNotFoundError: no workdir / no config / no stage-1 checkpoint (drivable) / stage 2
            not finished / no subject recorded (named).
          ValueError: the workdir or its model was written by another version of this project,
            or (drivable) the model cannot be driven by new audio.
        """
        if not os.path.isdir(self.path):
            raise FileNotFoundError(f"--workdir={self.path}: no such directory")
        self.check_version()
        cfg = self.load_config()
        try:
            _, heads = load_stage2(self.model_dir, cfg)
        except (FileNotFoundError, ValueError):
            raise
        except Exception as e:  # orbax: a tree that does not match this version's model
            raise ValueError(
                f"{self.model_dir}: cannot be restored by this version "
                f"({type(e).__name__}: {str(e)[:300]})"
            ) from e
        stage1 = None
        if drivable:
            check_drivable(cfg, self.path)
            if not self.has_stage1():
                raise FileNotFoundError(
                    f"{self.stage1_dir}: no stage-1 checkpoint (needed for new audio's features)"
                )
            stage1 = self.load_stage1()
        if subject is None:
            subject = self.recorded_subject()
            if subject is None:
                raise FileNotFoundError(
                    f"{self.path}: no subject.json; pass subject= the subject "
                    "directory it was trained on"
                )
        subj = open_for_model(os.fspath(subject), cfg.data, cfg.model.audio)
        return TrainedModel(cfg, heads, subj, stage1, os.path.abspath(self.path))


def check_drivable(cfg, workdir: str) -> None:
    """Refuses a model whose stage 2 read the subject's UA-3DTalk extras: new audio has none."""
    if features_lib.feature_source(cfg.stage1.features) == "subject":
        raise ValueError(
            f"{workdir}: its stage 2 was trained on the subject's precomputed UA-3DTalk features "
            "(stage1.features.source=subject), which new audio does not have; train this "
            "project's stage 1 for a model that new audio can drive (stage1.features.source="
            "stage1); `python -m experiments.evaluate` still renders and scores its held-out "
            "frames"
        )


def _keys(d: dict, prefix: str = "") -> set[str]:
    out = set()
    for k, v in d.items():
        out |= _keys(v, f"{prefix}{k}.") if isinstance(v, dict) else {prefix + k}
    return out


def _diff(a, b, prefix=""):
    if isinstance(a, dict) and isinstance(b, dict):
        for k in set(a) | set(b):
            yield from _diff(a.get(k), b.get(k), f"{prefix}{k}.")
    elif a != b:
        yield prefix.rstrip(".")


def _features(cfg):
    """The stage-1 `features` block of a full config, or None."""
    return None if cfg is None else cfg.stage1.features
