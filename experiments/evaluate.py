"""Evaluates a trained workdir on its held-out frames: the paper's Table 1 plus emotion accuracy.

  python -m experiments.evaluate --workdir=DIR [--subject=synthetic|NAME|PATH] [--split=val]
      [--syncnet_weights=syncnet_v2.model]

Renders the split's frames with their own audio and reports PSNR, SSIM, LPIPS, LMD (dlib mouth
points), "E-FD (own)" (Fréchet distance of this project's expression coefficients; NOT the paper's
E-FID), Sync-C/D (standard SyncNet, only with --syncnet_weights), Sync-C/D (own) (the stage-1
SyncNet) and fer emotion accuracy, for the rendered and the real frames. Writes
workdir/eval_<split>.{json,csv,md} (and eval_<split>_emotion.*) and prints the table. --subject
must be the subject the workdir was trained on (default: the synthetic subject of its preset).
"""

from __future__ import annotations

import os
import sys

from absl import app, flags, logging

_WORKDIR = flags.DEFINE_string("workdir", None, "Training workdir with a finished stage 2.")
_SUBJECT = flags.DEFINE_string("subject", "synthetic", "Subject name under --data_root or path.")
_DATA_ROOT = flags.DEFINE_string("data_root", "data", "Folder of subjects.")
_SPLIT = flags.DEFINE_enum("split", "val", ["val", "train"], "Frames to evaluate.")
_SYNCNET = flags.DEFINE_string("syncnet_weights", None,
                               "syncnet_v2.model (torch state dict) for Sync-C/D.")  # fmt: skip
_MAX = flags.DEFINE_integer("max_frames", None, "Evaluate only the split's first N frames.")
_CACHE = flags.DEFINE_string("compile_cache", os.path.expanduser("~/.cache/ua3dtalk_jax/xla"),
                             "Persistent XLA compilation cache ('' = off).")  # fmt: skip
flags.mark_flag_as_required("workdir")


def main(argv):
    del argv
    if not flags.FLAGS["verbosity"].present:  # orbax logs every restore at INFO
        logging.set_verbosity(logging.WARNING)
    from ua3dtalk_jax.eval import evaluation  # noqa: PLC0415
    from ua3dtalk_jax.train import run  # noqa: PLC0415

    run.enable_compile_cache(_CACHE.value)
    try:
        evaluation.check_version(_WORKDIR.value)
        subject = evaluation.workdir_subject(_SUBJECT.value, _DATA_ROOT.value, _WORKDIR.value)
        res = evaluation.evaluate(_WORKDIR.value, subject, split=_SPLIT.value,
                                  syncnet_weights=_SYNCNET.value, max_frames=_MAX.value)  # fmt: skip
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f"evaluate: {e}")
    print(res["table"])
    print("written: " + ", ".join(res["paths"].values()))


if __name__ == "__main__":
    app.run(main)
