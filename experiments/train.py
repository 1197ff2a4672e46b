"""Trains a subject's emotional 3D Gaussian head: stage 1, stage 2, or both.

  python -m experiments.train [--subject=synthetic|NAME|PATH] [--stage=all|1|2]
      [--config=cpu|paper|tiny] [--workdir=DIR] [--set=train.face.iterations=3000 ...]

--subject=synthetic (the default) builds the embedded synthetic subject under --data_root on
first use. Restarting the same command resumes from the newest checkpoints. At the end the
held-out frames are rendered to workdir/heldout.mp4 (with their audio) and summary.json.
"""

from __future__ import annotations

import json
import os

from absl import flags

from experiments import cli

_SUBJECT, _DATA_ROOT = cli.define_subject("synthetic")
_STAGE = flags.DEFINE_enum("stage", "all", ["1", "2", "all"], "What to train.")
_CONFIG = flags.DEFINE_enum("config", "cpu", ["paper", "cpu", "tiny"], "Preset.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Run folder (default workdirs/SUBJECT-CONFIG).")
_SET = flags.DEFINE_multi_string("set", [], "Config override dotted.key=value (repeatable).")
_VIDEO = flags.DEFINE_bool("video", True, "Write the rendered held-out frames as an mp4.")
_COORD = flags.DEFINE_string("coordinator_address", None, "Multi-host: host:port of process 0.")
_NPROC = flags.DEFINE_integer("num_processes", 1, "Multi-host: number of processes.")
_PID = flags.DEFINE_integer("process_id", 0, "Multi-host: this process's index.")
_SIDE = flags.DEFINE_bool(
    "side_by_side",
    True,
    "Train stage 2's face and mouth branches at once, in two threads, as the paper does (the "
    "same result as one after the other; single-process runs only).",
)
_PRECOMPILE = flags.DEFINE_bool(
    "precompile",
    False,
    "Compile stage 2's step programs in the background while stage 1 trains (needs "
    "--compile_cache; the same result). For machines with CPU cores idle during stage 1 (a GPU "
    "trains it); on 2 CPU cores it slowed stage 1 by more than it saved stage 2.",
)
_CACHE = cli.define_compile_cache()


def main(argv):
    del argv
    from ua3dtalk_jax.audio.precomputed import check_choice
    from ua3dtalk_jax.configs import apply_overrides, get_config
    from ua3dtalk_jax.eval.heldout import evaluate_heldout
    from ua3dtalk_jax.eval.heldout_video import HeldoutVideo
    from ua3dtalk_jax.head.features import feature_source
    from ua3dtalk_jax.train import parallel, run

    cli.quiet_orbax()
    parallel.initialize_distributed(_COORD.value, _NPROC.value, _PID.value)
    run.enable_compile_cache(_CACHE.value)
    try:
        cfg = apply_overrides(get_config(_CONFIG.value), _SET.value)
        feature_source(cfg.stage1.features)
        check_choice(cfg.data.audio_feature)
        subject = run.training_subject(_SUBJECT.value, _DATA_ROOT.value, cfg.synthetic)
        name = os.path.basename(os.path.normpath(subject))
        workdir = _WORKDIR.value or os.path.join("workdirs", f"{name}-{_CONFIG.value}")
        opened = run.prepare(cfg, subject, workdir, _STAGE.value)
    except (OSError, ValueError) as e:  # a bad flag, subject or workdir: named
        cli.fail("train", e)
    video = HeldoutVideo(opened, os.path.join(workdir, "heldout.mp4")) if _VIDEO.value else None
    try:
        out = run.train(
            cfg,
            subject,
            workdir,
            _STAGE.value,
            on_frame=video,
            subject=opened,
            evaluate=evaluate_heldout,
            side_by_side=_SIDE.value,
            precompile=_PRECOMPILE.value,
        )
    except BaseException:
        if video is not None:
            video.abort()
        raise
    if video is not None:
        video.close()
    if "stage2" in out:
        print(json.dumps(out["stage2"], indent=2))
        if video is not None and video.written:
            print(f"held-out video: {video.path}")
    print(f"workdir: {workdir}")


if __name__ == "__main__":
    cli.run(main)
