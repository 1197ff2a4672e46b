"""Validates "Emo-acc (subject)" on held-out frames of known emotion before it is trusted.

  python -m experiments.validate_emotion_score [--subject=synthetic|NAME|PATH] [--workdir=DIR]
      [--emotions=all|neutral,happy,...] [--strengths=0.25,0.5,0.75] [--max_frames=N]
      [--out=validation.json]

Fits the subject's emotion classifier on its labelled training frames and scores: the real
held-out frames; for a synthetic subject, the generator's re-renders of them — unchanged (a
control), with their own emotion at each of --strengths, and showing each emotion X of
--emotions; with --workdir, that trained model's renders with the clip's audio and with each
--emotion=X. Prints the table (`eval/emotion_validation.py` says what each column means and what
a sound score shows) and writes it with --out.
"""

from __future__ import annotations

import json

from absl import flags

from experiments import cli

_SUBJECT, _DATA_ROOT = cli.define_subject("synthetic")
_WORKDIR = flags.DEFINE_string("workdir", None, "A trained workdir of this subject (optional).")
_EMOTIONS = flags.DEFINE_string("emotions", "all", "Emotions to render the frames with.")
_STRENGTHS = flags.DEFINE_list(
    "strengths", ["0.25", "0.5", "0.75"], "Generator: the frames' own emotion at these strengths."
)
_MAX = flags.DEFINE_integer("max_frames", None, "Only the first N held-out frames.")
_OUT = flags.DEFINE_string("out", None, "Write the rows and the classifier summary as JSON.")
_CACHE = cli.define_compile_cache()


def main(argv):
    del argv
    cli.quiet_orbax()
    from ua3dtalk_jax.eval import emotion_validation, metrics
    from ua3dtalk_jax.train import run
    from ua3dtalk_jax.types import EMOTIONS

    run.enable_compile_cache(_CACHE.value)
    names = _EMOTIONS.value
    shown = EMOTIONS if names == "all" else [s.strip() for s in names.split(",") if s.strip()]
    try:
        strengths = [float(v) for v in _STRENGTHS.value]
        subject = run.training_subject(_SUBJECT.value, _DATA_ROOT.value, "default")
        res = emotion_validation.validate(
            subject, workdir=_WORKDIR.value, shown=shown, strengths=strengths, max_frames=_MAX.value
        )
    except (OSError, ValueError) as e:
        cli.fail("validate_emotion_score", e)
    print(metrics.format_table(res["rows"], emotion_validation.COLUMNS, precision=3))
    print("classifier:", res["classifier"])
    for note in res["notes"]:
        print("note:", note)
    if _OUT.value:
        with open(_OUT.value, "w") as f:
            json.dump(res, f, indent=1)
        print("written:", _OUT.value)


if __name__ == "__main__":
    cli.run(main)
