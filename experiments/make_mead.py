"""MEAD speaker → subject directory (frontal clips, per-frame emotion labels, split by clip).

    python -m experiments.make_mead --root=/data/MEAD --speaker=M003 --out=data/M003 \
        [--emotions=angry,happy,neutral] [--levels=1,3] [--max_per_group=10] [--fps=30] [--size=512]

MEAD is downloaded by the user (research licence); see `ua3dtalk_jax/preprocess/mead.py` for the layout.
Re-running resumes where it stopped.
"""

import os

from absl import flags

from experiments import cli
from ua3dtalk_jax.preprocess import mead, video

_ROOT = flags.DEFINE_string("root", None, "MEAD root (speaker folders) or one speaker folder.")
_SPEAKER = flags.DEFINE_string("speaker", None, "Speaker ID, e.g. M003 or M030.")
_OUT = flags.DEFINE_string("out", None, "Subject directory to write.")
_EMOTIONS = flags.DEFINE_list("emotions", None, "Emotions to include (default: all).")
_LEVELS = flags.DEFINE_list("levels", None, "Intensity levels to include (default: all).")
_MAX_PER_GROUP = flags.DEFINE_integer("max_per_group", None, "Clips per (emotion, level).")
_FPS = flags.DEFINE_float("fps", mead.MEAD_FPS, "Output frame rate.")
_SIZE = flags.DEFINE_integer("size", mead.MEAD_SIZE, "Output frame side.")
_CROP = flags.DEFINE_string("crop", "auto", "'auto' or x,y,w,h in source pixels (square).")
_WORKERS = flags.DEFINE_integer("workers", 2, "Processes for the face-mesh pass.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace a subject built from other inputs.")


def _levels(values):
    if not values:
        return None
    try:
        return [int(v) for v in values]
    except ValueError:
        raise ValueError(f"--levels={','.join(values)}: expected integers 1-3") from None


def main(argv):
    del argv
    try:
        cli.require(root=_ROOT.value, out=_OUT.value)
        if not os.path.isdir(_ROOT.value):
            raise FileNotFoundError(f"--root={_ROOT.value}: no such folder")
        out = mead.build_subject(
            _ROOT.value,
            _OUT.value,
            speaker=_SPEAKER.value,
            emotions=_EMOTIONS.value,
            levels=_levels(_LEVELS.value),
            max_per_group=_MAX_PER_GROUP.value,
            fps=_FPS.value,
            size=_SIZE.value,
            crop=video.parse_crop(_CROP.value),
            workers=_WORKERS.value,
            overwrite=_OVERWRITE.value,
        )
    except (OSError, ValueError) as e:  # VideoError is a ValueError
        cli.fail("make_mead", e)
    print(f"subject written to {out}")


if __name__ == "__main__":
    cli.run(main)
