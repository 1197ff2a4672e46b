"""Raw talking video → subject directory (MediaPipe; no 3DMM, face parsing or DeepSpeech).

    python -m experiments.preprocess --video=FILE --out=DIR [--fps=25] [--size=512] \
        [--crop=auto|x,y,w,h] [--workers=2] [--overwrite]

Re-running the same command resumes: finished steps (kept in DIR.work) are skipped, and a
finished subject is left as it is.
"""

from absl import app, flags

from ua3dtalk_jax.preprocess import pipeline, video

_VIDEO = flags.DEFINE_string("video", None, "Input video file (needs an audio track).")
_AUDIO = flags.DEFINE_string("audio", None, "Separate audio file (default: the video's track).")
_OUT = flags.DEFINE_string("out", None, "Subject directory to write.")
_FPS = flags.DEFINE_float("fps", 25.0, "Output frame rate (input is resampled).")
_SIZE = flags.DEFINE_integer("size", 512, "Output frame side (square).")
_CROP = flags.DEFINE_string("crop", "auto", "'auto' (fixed face window) or x,y,w,h (square).")
_WORKERS = flags.DEFINE_integer("workers", 2, "Processes for the face-mesh pass.")
_MIN_FRAMES = flags.DEFINE_integer("min_frames", pipeline.MIN_FRAMES, "Shortest clip accepted.")
_MAX_MISSING = flags.DEFINE_float("max_missing", pipeline.MAX_MISSING, "Faceless share allowed.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace a subject built from other inputs.")
flags.mark_flags_as_required(["video", "out"])


def main(argv):
    del argv
    try:
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
        )
    except (video.VideoError, ValueError, FileExistsError) as e:
        raise app.UsageError(str(e)) from None
    print(f"subject written to {out}")


if __name__ == "__main__":
    app.run(main)
