"""Raw talking video → subject directory (MediaPipe; no 3DMM, face parsing or DeepSpeech).

    python -m experiments.preprocess --video=FILE --out=DIR [--audio=FILE] [--fps=25] \
        [--size=512] [--crop=auto|x,y,w,h] [--workers=2] [--overwrite]

Re-running the same command resumes: finished steps (kept in DIR.work) are skipped, and a
finished subject is left as it is. What was adapted (frames past the audio's end dropped, an
upscaling --size) is printed, one line each; a clip that cannot become a subject is refused with
one line that says why and what to do (exit status 1), and leaves nothing at --out. Native log
lines (MediaPipe, ffmpeg) go to a debug log, named in the message where it matters.
"""

import os
import sys

from absl import flags

from experiments import cli
from ua3dtalk_jax.preprocess import pipeline, video

_VIDEO = flags.DEFINE_string("video", None, "Input video file.")
_AUDIO = flags.DEFINE_string("audio", None, "Separate audio file (default: the video's track).")
_OUT = flags.DEFINE_string("out", None, "Subject directory to write.")
_FPS = flags.DEFINE_float("fps", 25.0, "Output frame rate (input is resampled).")
_SIZE = flags.DEFINE_integer("size", 512, "Output frame side (square).")
_CROP = flags.DEFINE_string("crop", "auto", "'auto' (fixed face window) or x,y,w,h (square).")
_WORKERS = flags.DEFINE_integer("workers", 2, "Processes for the face-mesh pass.")
_MIN_FRAMES = flags.DEFINE_integer("min_frames", pipeline.MIN_FRAMES, "Shortest clip accepted.")
_MAX_MISSING = flags.DEFINE_float("max_missing", pipeline.MAX_MISSING, "Faceless share allowed.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace a subject built from other inputs.")

MIN_SIZE = 32  # px: below this the face-mesh polygons (lips, eyes) are a few pixels


def _check_flags() -> None:
    """Values checked before any work: the message names the flag."""
    for name, flag in (("video", _VIDEO), ("out", _OUT)):
        if not flag.value:
            raise ValueError(f"--{name} is required")
    if os.path.exists(_OUT.value) and not os.path.isdir(_OUT.value):
        raise ValueError(f"--out={_OUT.value} is a file, not a folder")
    if not 0 < _FPS.value <= 120:
        raise ValueError(f"--fps must be in (0, 120], got {_FPS.value:g}")
    if not MIN_SIZE <= _SIZE.value <= 4096:
        raise ValueError(f"--size must be in [{MIN_SIZE}, 4096], got {_SIZE.value}")
    if _WORKERS.value < 1:
        raise ValueError(f"--workers must be at least 1, got {_WORKERS.value}")
    if _MIN_FRAMES.value < 1:
        raise ValueError(f"--min_frames must be at least 1, got {_MIN_FRAMES.value}")
    if not 0 <= _MAX_MISSING.value < 1:
        raise ValueError(f"--max_missing must be in [0, 1), got {_MAX_MISSING.value:g}")


def main(argv):
    if len(argv) > 1:
        sys.exit(f"preprocess: unexpected arguments {argv[1:]} (flags are --name=value)")
    try:
        _check_flags()
        crop = video.parse_crop(_CROP.value)
        clip = pipeline.Clip(_VIDEO.value, _AUDIO.value)
        out = pipeline.preprocess(
            clip,
            _OUT.value,
            fps=_FPS.value,
            size=_SIZE.value,
            crop=crop,
            workers=_WORKERS.value,
            min_frames=_MIN_FRAMES.value,
            max_missing=_MAX_MISSING.value,
            overwrite=_OVERWRITE.value,
            source=f"video {_VIDEO.value}",
            log=lambda note: print(f"preprocess: {note}", flush=True),
        )
    except (ValueError, OSError) as e:  # VideoError is a ValueError; OSError: files, disk space
        sys.exit(f"preprocess: {' '.join(str(e).split())}")
    print(f"subject written to {out}")


if __name__ == "__main__":
    cli.run(main)
