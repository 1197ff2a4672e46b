"""Ablation study of the paper's Table 2: Baseline, +P, +E, +P+U, +P+E+U on one subject.

Each configuration is the base config with `model.ablation` = {prior P, emotion E, uncertainty U}
set as below (models/motion.py honours them: P adds the f_exp and f_tone views, E the emotion view
(face branch only), U replaces the plain concatenation of the views by the uncertainty blocks and
Gaussian fusion). "Baseline" is the paper's "without any proposed modules": TalkingGaussian's
deformation from the audio view alone (+ the xyz encoding). U is not tried without P because, as the
paper notes, uncertainty fusion needs several views.

Stage 1 does not read `model.ablation`, so it is trained once (in root/stage1_shared, or taken from
`stage1_from`) and its checkpoint copied into every configuration's workdir root/<slug>, where
the training function then finds it and trains only stage 2. That function (`train.run.train`) is
passed in by the caller, experiments/ablate.py: eval/ comes after train/ and does not import it. A configuration is resumable: its stage 2
resumes from its own checkpoints, and a finished, evaluated one (eval_val.json newer than its
model, with every column of this table) is read back instead of rerun; one evaluated by an older
version (a column missing, e.g. "Emo-acc (subject)") is evaluated again, not retrained. Each is
evaluated with `evaluation.evaluate`; the table is root/ablation.{md,csv,json}.
"""

from __future__ import annotations

import copy
import json
import os
import shutil

from ua3dtalk_jax.configs.io import saved_config
from ua3dtalk_jax.eval import metrics
from ua3dtalk_jax.eval.metrics import EFD_OWN, EMO_SUBJECT
from ua3dtalk_jax.head.features import feature_source
from ua3dtalk_jax.head.workdir import Workdir

CONFIGURATIONS = {  # Table 2 row → (prior, emotion, uncertainty)
    "Baseline": (False, False, False),
    "+P": (True, False, False),
    "+E": (False, True, False),
    "+P+U": (True, False, True),
    "+P+E+U": (True, True, True),
}
SLUGS = {"Baseline": "baseline", "+P": "p", "+E": "e", "+P+U": "p_u", "+P+E+U": "p_e_u"}
SHARED_STAGE1 = "stage1_shared"
COLUMNS = (
    "configuration",
    "P",
    "E",
    "U",
    "LMD",
    "PSNR",
    "LPIPS",
    "SSIM",
    "Sync-C",
    EFD_OWN,
    "Sync-C (own)",
    "Emo-acc",
    EMO_SUBJECT,
)


def ablation_config(base, name: str):
    """A copy of `base` with the Table 2 switches of configuration `name`."""
    if name not in CONFIGURATIONS:
        raise ValueError(f"unknown configuration {name!r}; choose from {list(CONFIGURATIONS)}")
    cfg = copy.deepcopy(base)
    p, e, u = CONFIGURATIONS[name]
    cfg.model.ablation.prior, cfg.model.ablation.emotion, cfg.model.ablation.uncertainty = p, e, u
    return cfg


def parse_configurations(spec: str | None) -> list[str]:
    """'Baseline,+P' → names (None or "all": all five, in Table 2's order)."""
    if spec in (None, "", "all"):
        return list(CONFIGURATIONS)
    names = [s.strip() for s in spec.split(",") if s.strip()]
    bad = [n for n in names if n not in CONFIGURATIONS]
    if bad:
        raise ValueError(f"--configurations: unknown {bad}; choose from {list(CONFIGURATIONS)}")
    return names


def check_overrides(overrides) -> None:
    """--set may not touch model.ablation: the study sets it per configuration."""
    bad = [o for o in overrides or () if o.strip().startswith("model.ablation")]
    if bad:
        raise ValueError(f"--set {bad[0]!r}: the ablation sets model.ablation per configuration")


def _stage1_config(workdir: str) -> dict:
    """What a stage 1 was trained with: the stage-1 section and the run seed."""
    saved = saved_config(workdir)
    return {**saved["stage1"], "seed": saved["seed"]}


def shared_stage1(
    train, base, subject_path: str, root: str, stage1_from: str | None, log=print
) -> str | None:
    """The workdir whose stage-1 checkpoint every configuration copies (trained here with
    `train`, `train.run.train`'s signature, if needed); None when stage 2 reads the subject's
    precomputed features (`stage1.features.source`)."""
    if feature_source(base.stage1.features) == "subject":
        log("ablation: no stage 1 (stage1.features.source=subject)")
        return None
    src = stage1_from or os.path.join(root, SHARED_STAGE1)
    if stage1_from and not Workdir(src).has_stage1():
        raise FileNotFoundError(
            f"--stage1_from={stage1_from}: no stage-1 checkpoint in {Workdir(src).stage1_dir}"
        )
    if not stage1_from:
        log(f"ablation: stage 1 (shared by all configurations) in {src}")
        train(ablation_config(base, "+P+E+U"), subject_path, src, "1", log=log)
    want = {**json.loads(json.dumps(base.stage1.to_dict())), "seed": base.seed}
    if _stage1_config(src) != want:
        raise ValueError(f"{src}: its stage 1 was trained with another stage1 config than this run")
    return src


def _finished(workdir: str, split: str) -> dict | None:
    """The evaluated rendered row of a configuration, when its evaluation is newer than its model
    and has every column of this table (an older evaluation is redone; the model is kept)."""
    wd = Workdir(workdir)
    res, model = wd.eval_file(split), wd.model_dir
    if not (os.path.isfile(res) and os.path.isdir(model)):
        return None
    if os.path.getmtime(res) < os.path.getmtime(model):
        return None
    with open(res) as f:
        row = json.load(f)["rows"][0]
    return row if all(c in row for c in COLUMNS[4:]) else None


def run_configuration(
    train,
    cfg,
    name: str,
    subject_path: str,
    root: str,
    stage1_src: str | None,
    *,
    split: str = "val",
    syncnet_weights=None,
    max_frames=None,
    log=print,
) -> dict:
    """Trains (or resumes, with `train`: `train.run.train`'s signature) and evaluates one
    configuration; returns its table row."""
    from ua3dtalk_jax.eval.evaluation import evaluate

    wd = os.path.join(root, SLUGS[name])
    work = Workdir(wd)
    work.check_config(cfg)  # a workdir of another config (other --set) is refused, not mixed
    row = _finished(wd, split)
    if row is None:
        if not os.path.isdir(work.model_dir):
            if stage1_src is not None and not os.path.isdir(work.stage1_dir):
                shutil.copytree(Workdir(stage1_src).stage1_dir, work.stage1_dir)
            log(f"ablation {name}: training stage 2 in {wd}")
            train(cfg, subject_path, wd, "all", log=log)
        log(f"ablation {name}: evaluating")
        row = evaluate(
            wd,
            subject_path,
            split=split,
            syncnet_weights=syncnet_weights,
            max_frames=max_frames,
            log=log,
        )["rows"][0]
    else:
        log(f"ablation {name}: finished and evaluated in {wd}, not rerun")
    p, e, u = CONFIGURATIONS[name]
    out = {
        "configuration": name,
        "P": "✓" if p else "",
        "E": "✓" if e else "",
        "U": "✓" if u else "",
        "workdir": wd,
    }
    out.update({c: row.get(c) for c in COLUMNS[4:]})
    return out


def run_ablation(
    train,
    base,
    subject_path: str,
    root: str,
    names=None,
    *,
    stage1_from=None,
    split: str = "val",
    syncnet_weights=None,
    max_frames=None,
    log=print,
) -> dict:
    """Trains (with `train`, `train.run.train`'s signature) and evaluates the configurations
    `names` (default all five) under `root`.

    Returns:
      {"rows": one row per configuration, "table": printed text, "paths": written files}.
    """
    from ua3dtalk_jax.configs import pretrained
    from ua3dtalk_jax.data import Subject
    from ua3dtalk_jax.data.stage2_audio import resolve_audio

    names = list(names or CONFIGURATIONS)
    base = copy.deepcopy(base)  # every row: the subject's audio kind, stage 1's pretrained parts
    subject = Subject.open(subject_path, audio_feature=base.data.audio_feature)
    log(resolve_audio(base.data, base.model.audio, subject))
    pretrained.resolve(
        base.stage1,
        trains_stage1=stage1_from is None and feature_source(base.stage1.features) == "stage1",
    )
    os.makedirs(root, exist_ok=True)
    src = shared_stage1(train, base, subject_path, root, stage1_from, log)
    rows = []
    for name in names:
        rows.append(
            run_configuration(
                train,
                ablation_config(base, name),
                name,
                subject_path,
                root,
                src,
                split=split,
                syncnet_weights=syncnet_weights,
                max_frames=max_frames,
                log=log,
            )
        )
        metrics.write_results(rows, root, stem="ablation", columns=COLUMNS)  # after each: partial
    paths = metrics.write_results(
        rows,
        root,
        stem="ablation",
        columns=COLUMNS,
        extra={
            "subject": os.path.abspath(subject_path),
            "split": split,
            "max_frames": max_frames,
            "workdirs": {r["configuration"]: r["workdir"] for r in rows},
        },
    )
    return {"rows": rows, "table": metrics.format_table(rows, COLUMNS), "paths": paths}
