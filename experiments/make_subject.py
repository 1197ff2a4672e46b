"""Writes the embedded synthetic subject (an emotional talking head built from one photo).

  python -m experiments.make_subject --out=DIR [--seed=0] [--size=256] [--fps=25] [--seconds=60]
      [--test_seconds=10] [--photo=portrait.jpg] [--head_motion] [--preset=default|tiny]

--preset fills the sizes (default: 256², 60 s train + 10 s test; tiny: 64², one sentence each); any of
--size, --fps, --seconds, --test_seconds given explicitly overrides it. The training CLI builds the
same subject itself on first use of --subject=synthetic (`ensure_synthetic`).
"""

from __future__ import annotations

import time

from absl import app, flags

from ua3dtalk_jax.data.synthetic import generate

_OUT = flags.DEFINE_string(
    "out", None, "Output subject directory (empty or absent).", required=True
)
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
    print(f"wrote {path} in {time.time() - start:.1f} s")


if __name__ == "__main__":
    app.run(main)
