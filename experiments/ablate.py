"""Ablation study of the paper's Table 2 on one subject: Baseline, +P, +E, +P+U, +P+E+U.

  python -m experiments.ablate [--subject=synthetic|NAME|PATH] [--config=cpu|paper|tiny]
      [--workdir_root=DIR] [--configurations=all|Baseline,+P,...] [--stage1_from=WORKDIR]
      [--set=dotted.key=value ...] [--syncnet_weights=FILE]

Stage 1 is trained once (WORKDIR_ROOT/stage1_shared, or copied from --stage1_from) and shared;
each configuration trains stage 2 in WORKDIR_ROOT/<configuration> and is evaluated like
experiments.evaluate. Rerunning the command resumes: finished configurations are read back. The
table goes to WORKDIR_ROOT/ablation.{md,csv,json}. --set applies to every configuration (it may
not touch model.ablation, which the study sets).
"""

from __future__ import annotations

import functools
import os

from absl import flags

from experiments import cli

_SUBJECT, _DATA_ROOT = cli.define_subject("synthetic")
_CONFIG = flags.DEFINE_enum("config", "cpu", ["paper", "cpu", "tiny"], "Preset.")
_ROOT = flags.DEFINE_string(
    "workdir_root", None, "Folder of the runs (default workdirs/ablation-SUBJECT-CONFIG)."
)
_CONFIGS = flags.DEFINE_string("configurations", "all", "Comma list of Table 2 rows, or all.")
_STAGE1 = flags.DEFINE_string("stage1_from", None, "Workdir whose stage-1 checkpoint to reuse.")
_SET = flags.DEFINE_multi_string("set", [], "Config override dotted.key=value (repeatable).")
_SPLIT = flags.DEFINE_enum("split", "val", ["val", "train"], "Frames to evaluate.")
_MAX = flags.DEFINE_integer("max_frames", None, "Evaluate only the split's first N frames.")
_SYNCNET = flags.DEFINE_string("syncnet_weights", None, "syncnet_v2.model for Sync-C/D.")
_CACHE = cli.define_compile_cache()


def main(argv):
    del argv
    cli.quiet_orbax()
    from ua3dtalk_jax.configs import apply_overrides, get_config
    from ua3dtalk_jax.eval import ablation
    from ua3dtalk_jax.eval.heldout import evaluate_heldout
    from ua3dtalk_jax.train import run

    run.enable_compile_cache(_CACHE.value)
    try:
        ablation.check_overrides(_SET.value)
        names = ablation.parse_configurations(_CONFIGS.value)
        cfg = apply_overrides(get_config(_CONFIG.value), _SET.value)
        subject = run.training_subject(_SUBJECT.value, _DATA_ROOT.value, cfg.synthetic)
        name = os.path.basename(os.path.normpath(subject))
        root = _ROOT.value or os.path.join("workdirs", f"ablation-{name}-{_CONFIG.value}")
        res = ablation.run_ablation(
            functools.partial(run.train, evaluate=evaluate_heldout),
            cfg,
            subject,
            root,
            names,
            stage1_from=_STAGE1.value,
            split=_SPLIT.value,
            syncnet_weights=_SYNCNET.value,
            max_frames=_MAX.value,
        )
    except (OSError, ValueError) as e:
        cli.fail("ablate", e)
    print(res["table"])
    print("written: " + ", ".join(res["paths"].values()))


if __name__ == "__main__":
    cli.run(main)
