"""Evaluates a trained workdir on its held-out frames: the paper's Table 1 plus emotion accuracy.

  python -m experiments.evaluate --workdir=DIR [--subject=synthetic|NAME|PATH] [--split=val]
      [--syncnet_weights=syncnet_v2.model]

Renders the split's frames with their own audio and reports PSNR, SSIM, LPIPS, LMD (dlib mouth
points), "E-FD (own)" (Fréchet distance of this project's expression coefficients; NOT the paper's
E-FID), Sync-C/D (standard SyncNet, only with --syncnet_weights), Sync-C/D (own) (the stage-1
SyncNet), fer emotion accuracy and "Emo-acc (subject)" (a classifier fitted on the subject's own
labelled training frames; experiments.validate_emotion_score validates it), for the rendered and
the real frames. Writes workdir/eval_<split>.{json,csv,md} (and eval_<split>_emotion.*) and prints
the table. --subject must be the subject the workdir was trained on (default: the one its
subject.json records, else the synthetic subject of its preset).
"""

from __future__ import annotations

from absl import flags

from experiments import cli

_WORKDIR = flags.DEFINE_string("workdir", None, "Training workdir with a finished stage 2.")
_SUBJECT, _DATA_ROOT = cli.define_subject()
_SPLIT = flags.DEFINE_enum("split", "val", ["val", "train"], "Frames to evaluate.")
_SYNCNET = flags.DEFINE_string(
    "syncnet_weights", None, "syncnet_v2.model (torch state dict) for Sync-C/D."
)
_MAX = flags.DEFINE_integer("max_frames", None, "Evaluate only the split's first N frames.")
_CACHE = cli.define_compile_cache()


def main(argv):
    del argv
    cli.quiet_orbax()
    from ua3dtalk_jax.eval import evaluation

    try:
        cli.require(workdir=_WORKDIR.value)
        subject = cli.open_trained(_WORKDIR.value, _SUBJECT.value, _DATA_ROOT.value, _CACHE.value)
        res = evaluation.evaluate(
            _WORKDIR.value,
            subject,
            split=_SPLIT.value,
            syncnet_weights=_SYNCNET.value,
            max_frames=_MAX.value,
        )
    except (OSError, ValueError) as e:
        cli.fail("evaluate", e)
    print(res["table"])
    print("written: " + ", ".join(res["paths"].values()))


if __name__ == "__main__":
    cli.run(main)
