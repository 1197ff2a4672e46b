"""The one way this package runs ffmpeg: the binary of the pip package imageio-ffmpeg.

Only `imageio_ffmpeg.get_ffmpeg_exe()` is run, never an ffmpeg on PATH (there may be none), and
that package has no ffprobe: stream facts come from the `ffmpeg -i FILE` banner (`stream_info`),
exact audio lengths from decoding (`audio_bytes`). Everything that reads or writes media goes
through here: `audio.features` (decoding audio files), `preprocess.video` (probing, decoding and
cropping raw video) and `data.video` (writing result videos, probing them). They shape ffmpeg's
failures into their own errors; ffmpeg's full output goes to the debug log (`native_log`).

A leaf module (it imports only `native_log`), so every package may use it.
"""

from __future__ import annotations

import os
import subprocess
import tempfile


def exe() -> str:
    """Path of the bundled ffmpeg binary."""
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def stream_info(path: str) -> str:
    """The `ffmpeg -hide_banner -i path` banner (input and stream lines), from its stderr.

    ffmpeg exits 1 here ("at least one output file must be specified"); the lines are printed
    anyway, so the exit status is not checked: callers parse the text.
    """
    proc = subprocess.run(
        [exe(), "-hide_banner", "-i", os.fspath(path)], capture_output=True, check=False
    )
    return proc.stderr.decode(errors="replace")


def audio_bytes(path: str, rate: int) -> tuple[int, int, str]:
    """Decodes the file's first audio stream to mono PCM16 at `rate` and counts the bytes.

    The samples stream through a pipe and are not kept, so a long file needs no memory; stderr
    goes to a temporary file, so ffmpeg never blocks on a full pipe.

    Returns:
      (bytes decoded, ffmpeg's exit status, ffmpeg's stderr); 2 bytes per sample.
    """
    cmd = [exe(), "-v", "error", "-nostdin", "-i", os.fspath(path), "-map", "0:a:0", "-vn"]
    cmd += ["-ac", "1", "-ar", str(int(rate)), "-f", "s16le", "-"]
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log)
        try:
            n_bytes = sum(len(chunk) for chunk in iter(lambda: proc.stdout.read(1 << 20), b""))
        finally:
            proc.stdout.close()
            rc = proc.wait()
        log.seek(0)
        return n_bytes, rc, log.read().decode(errors="replace")
