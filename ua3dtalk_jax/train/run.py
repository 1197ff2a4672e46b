"""One training run: subject resolution, config overrides, stage 1 then stage 2 (what the CLI does).

`experiments/train.py` folds flags into `configs.get_config(preset)` with `configs.apply_overrides`
and calls `train(cfg, subject_path, workdir, stage)`. The resolved config is saved as
workdir/config.json; restarting the same command in the same workdir resumes, and a workdir trained
with a different config is refused (naming the fields that differ) rather than mixed.
"""

from __future__ import annotations

import os
import time

from ua3dtalk_jax.audio.precomputed import check_choice
from ua3dtalk_jax.configs import pretrained
from ua3dtalk_jax.configs.overrides import check_config
from ua3dtalk_jax.data.stage2_audio import resolve_audio
from ua3dtalk_jax.head.features import feature_source
from ua3dtalk_jax.head.workdir import Workdir
from ua3dtalk_jax.train import heap

__all__ = ["prepare", "train"]
STAGES = ("1", "2", "all")


def enable_compile_cache(path: str | None) -> None:
    """Persistent XLA compilation cache in `path` (None/"" leaves it off).

    The stage-2 steps take 20–40 s each to compile on a 2-core CPU; with the cache a resumed run, a
    second subject or an ablation row reuses them (the executables are keyed by program and flags).
    """
    import jax

    if not path:
        return
    os.makedirs(path, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def training_subject(subject: str, data_root: str, synthetic_preset: str, log=print) -> str:
    """The subject directory a training run reads: a path, a folder under data_root, or
    "synthetic" (built if absent). A finished workdir's subject is `Workdir.subject_dir`."""
    from ua3dtalk_jax.data.synthetic.generate import ensure_synthetic

    if subject == "synthetic":
        path = os.path.join(data_root, f"synthetic_{synthetic_preset}")
        if not os.path.isdir(path):
            log(f"building the embedded synthetic subject ({synthetic_preset}) in {path} ...")
        return ensure_synthetic(data_root, f"synthetic_{synthetic_preset}", synthetic_preset)
    for cand in (subject, os.path.join(data_root, subject)):
        if os.path.isdir(cand):
            return cand
    raise FileNotFoundError(
        f"--subject={subject}: neither a directory nor a folder under --data_root={data_root}"
    )


def run_stage1(cfg, subject, workdir: str, log=print) -> dict:
    """Trains stage 1 unless its checkpoint exists; computes (and caches) the per-frame features."""
    from ua3dtalk_jax.train.stage1.data import Stage1Data
    from ua3dtalk_jax.train.stage1.driver import train_stage1

    t = time.time()
    wd = Workdir(workdir)
    metrics = {}
    if wd.has_stage1():
        log(f"stage 1: checkpoint found in {os.path.join(workdir, wd.STAGE1)}, not retrained")
    else:
        log("stage 1: Prior Extraction and Emotion Distillation ...")
        # the data is dropped once stage 1 is trained: the features below read the checkpoint
        _, metrics = train_stage1(
            Stage1Data.from_subject(subject, cfg.stage1),
            cfg.stage1,
            workdir,
            seed=cfg.seed,
            log=log,
        )
    wd.stage1_features(subject)
    return {"seconds": time.time() - t, "metrics": metrics}


def _precompiler(cfg, subject, workdir: str, stage: str, wanted: bool, log):
    """A started `stage2.precompile.Precompiler` when stage 2 will follow a stage 1 trained here
    and compiled programs persist; else None."""
    from ua3dtalk_jax.train.stage2 import precompile

    if not (wanted and stage == "all" and precompile.cache_enabled()):
        return None
    if Workdir(workdir).has_stage1():
        return None  # nothing to overlap with
    log("stage 2: compiling its step programs in the background while stage 1 trains ...")
    return precompile.Precompiler(cfg, subject, log).start()


def _stage1_with_precompile(cfg, subject, workdir: str, stage: str, precompile: bool, log):
    """`run_stage1`, with stage 2's programs compiled beside it where `_precompiler` says so."""
    pre = _precompiler(cfg, subject, workdir, stage, precompile, log)
    try:
        out = run_stage1(cfg, subject, workdir, log)
    except BaseException:
        if pre is not None:
            pre.stop()
        raise
    if pre is not None:
        pre.join()
    return out


def prepare(cfg, subject_path: str, workdir: str, stage: str = "all", *, log=print):
    """Everything checked before any training: the stage, the feature source, the subject and its
    audio (resolved into `cfg`), the workdir's config and what the stage needs from earlier ones.
    Writes workdir/config.json and subject.json only when all of it holds.

    Returns:
      the opened `data.Subject`.
    Raises:
      FileNotFoundError / ValueError: one line naming the flag, file or field at fault.
    """
    from ua3dtalk_jax.data import Subject

    if stage not in STAGES:
        raise ValueError(f"--stage must be one of {STAGES}, got {stage!r}")
    check_config(cfg)
    source = feature_source(cfg.stage1.features)
    subject = Subject.open(subject_path, audio_feature=check_choice(cfg.data.audio_feature))
    log(resolve_audio(cfg.data, cfg.model.audio, subject))
    wd = Workdir(workdir)
    trains_stage1 = stage == "1" or (stage == "all" and source == "stage1")
    pretrained.resolve(cfg.stage1, trains_stage1=trains_stage1 and not wd.has_stage1())
    wd.check_config(cfg, save=False)
    if trains_stage1 and not wd.has_stage1() and not subject.has("aud.wav"):
        raise FileNotFoundError(
            f"{os.path.join(subject.path, 'aud.wav')}: missing; stage 1 learns from the clip's "
            "16 kHz speech (TalkingGaussian's preprocessing writes it: ffmpeg -i VIDEO -ac 1 "
            "-ar 16000 aud.wav)"
        )
    if stage == "2" and source == "stage1":
        wd.require_stage1()
    wd.check_config(cfg)
    wd.record_subject(subject_path)
    for line in pretrained.substitutes(cfg.stage1, source=source):
        log(f"substitute: {line}")
    return subject


def train(
    cfg,
    subject_path: str,
    workdir: str,
    stage: str = "all",
    *,
    log=print,
    on_frame=None,
    subject=None,
    evaluate=None,
    side_by_side: bool = True,
    precompile: bool = False,
) -> dict:
    """Runs stage 1 and/or stage 2, then (with `evaluate`) the held-out evaluation, as flax's
    `train_and_evaluate`; returns the summary (stage 2 also writes summary.json).

    `evaluate`: `eval.heldout.evaluate_heldout` (the CLI passes it; train/ does not import
    eval/, which comes after it in the data flow); None leaves "heldout" out of the summary.

    `side_by_side`: stage 2's face and mouth branches at once (`stage2.driver.run_stage2`).

    `precompile`: with stage 1 and stage 2 both to train here and a persistent compilation cache
    (`enable_compile_cache`), stage 2's step programs are compiled in the background while stage
    1 trains (`stage2.precompile`). Off by default: on 2 CPU cores it cost stage 1 far more than
    it saved stage 2 (there is no idle core to compile on); it is for machines whose CPU cores
    idle while stage 1 trains, e.g. on a GPU.

    `subject`: the `prepare` result when the caller has already checked the run (the CLI does,
    so that its refusals come before anything is trained); None prepares here.

    Memory: glibc's allocator is bounded (`heap.bound_heap`; the CLI does it as it starts, before
    XLA's threads exist, which a notebook calling this late only partly gets); free heap goes back
    to the system after each phase, and stage 1's compiled programs are dropped after it
    (`heap.release`).
    """
    from tensorboardX import SummaryWriter

    heap.bound_heap()

    from ua3dtalk_jax.train.stage2.driver import run_stage2

    if subject is None:
        subject = prepare(cfg, subject_path, workdir, stage, log=log)
    source = feature_source(cfg.stage1.features)
    out = {"subject": os.path.abspath(subject_path), "workdir": os.path.abspath(workdir)}
    if stage == "all" and source == "subject":
        log(
            "stage 1: skipped (stage1.features.source=subject: stage 2 reads the subject's "
            "precomputed UA-3DTalk features)"
        )
    elif stage in ("1", "all"):
        out["stage1"] = _stage1_with_precompile(cfg, subject, workdir, stage, precompile, log)
        heap.release()  # stage 1's programs and free heap, before stage 2 (train.heap)
    if stage in ("2", "all"):
        writer = SummaryWriter(Workdir(workdir).tensorboard_dir)
        try:
            out["stage2"] = run_stage2(
                cfg,
                subject,
                workdir,
                log=log,
                writer=writer,
                on_frame=on_frame,
                evaluate=evaluate,
                side_by_side=side_by_side,
            )
        finally:
            writer.close()
        if "stage1" in out:
            out["stage2"]["seconds"]["stage1"] = out["stage1"]["seconds"]
        out["stage2"]["substitutes"] = pretrained.substitutes(cfg.stage1, source=source)
        Workdir(workdir).write_summary(out["stage2"])
    return out
