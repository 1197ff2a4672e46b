"""Writes the embedded synthetic subject (an emotional talking head built from one photo).

  python -m experiments.make_subject --out=DIR [--seed=0] [--size=256] [--fps=25] [--seconds=60]
      [--test_seconds=10] [--photo=portrait.jpg] [--head_motion] [--preset=default|tiny]

--preset fills the sizes (default: 256², 60 s train + 10 s test; tiny: 64², one sentence each); any of
--size, --fps, --seconds, --test_seconds given explicitly overrides it. The training CLI builds the
same subject itself on first use of --subject=synthetic (`ensure_synthetic`).
"""

from __future__ import annotations

import os
import time

from absl import flags

from experiments import cli
from ua3dtalk_jax.data.synthetic import generate

_OUT = flags.DEFINE_string("out", None, "Output subject directory (empty or absent).")
_PRESET = flags.DEFINE_enum("preset", "default", sorted(generate.PRESETS), "Size preset.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed: script, emotions, blinks, head motion.")
_SIZE = flags.DEFINE_integer("size", None, "Frame side in pixels (frames are square).")
_FPS = flags.DEFINE_float("fps", None, "Frame rate.")
_SECONDS = flags.DEFINE_float("seconds", None, "Minimum seconds of training frames.")
_TEST_SECONDS = flags.DEFINE_float("test_seconds", None, "Minimum seconds of test frames.")
_PHOTO = flags.DEFINE_string("photo", None, "Portrait photo (default: skimage astronaut).")
_HEAD_MOTION = flags.DEFINE_bool("head_motion", False, "Small head motion with matching poses.")
_WORKERS = flags.DEFINE_integer("workers", 2, "Rendering processes.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace a non-empty --out.")


MIN_SIZE = 48  # px: the face spans about half the frame; below ~24 px the face mesh is unreliable


def _check_flags() -> None:
    """Values checked before any work: the message names the flag."""
    cli.require(out=_OUT.value)
    if os.path.exists(_OUT.value) and not os.path.isdir(_OUT.value):
        raise ValueError(f"--out={_OUT.value} is a file, not a folder")
    if os.path.isdir(_OUT.value) and os.listdir(_OUT.value) and not _OVERWRITE.value:
        raise ValueError(f"--out={_OUT.value} is not empty; pass --overwrite to replace it")
    if _SIZE.value is not None and not MIN_SIZE <= _SIZE.value <= 4096:
        raise ValueError(f"--size must be in [{MIN_SIZE}, 4096], got {_SIZE.value}")
    if _FPS.value is not None and not 0 < _FPS.value <= 120:
        raise ValueError(f"--fps must be in (0, 120], got {_FPS.value:g}")
    for name, flag in (("seconds", _SECONDS), ("test_seconds", _TEST_SECONDS)):
        if flag.value is not None and not 0 < flag.value <= 3600:
            raise ValueError(f"--{name} must be in (0, 3600], got {flag.value:g}")
    if _WORKERS.value < 1:
        raise ValueError(f"--workers must be at least 1, got {_WORKERS.value}")
    if _PHOTO.value is not None and not os.path.isfile(_PHOTO.value):
        raise FileNotFoundError(f"--photo={_PHOTO.value}: no such file")


def main(argv):
    del argv
    overrides = {
        key: flag.value
        for key, flag in (
            ("size", _SIZE),
            ("fps", _FPS),
            ("seconds_train", _SECONDS),
            ("seconds_test", _TEST_SECONDS),
        )
        if flag.value is not None
    }
    start = time.time()
    try:
        _check_flags()
        path = generate.generate_preset(
            _OUT.value,
            _PRESET.value,
            seed=_SEED.value,
            photo=_PHOTO.value,
            head_motion=_HEAD_MOTION.value,
            workers=_WORKERS.value,
            overwrite=_OVERWRITE.value,
            **overrides,
        )
    except (OSError, ValueError) as e:
        cli.fail("make_subject", e)
    print(f"wrote {path} in {time.time() - start:.1f} s")


if __name__ == "__main__":
    cli.run(main)
