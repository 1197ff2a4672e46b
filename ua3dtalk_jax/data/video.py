"""Streaming video output and probing of result videos, through `ua3dtalk_jax.ffmpeg` (the bundled
binary of imageio-ffmpeg, whose readers count and decode frames).

- `VideoWriter` pipes [H, W, 3] RGB frames to one ffmpeg process as rawvideo: each frame is encoded
  as it is written, so memory does not grow with the clip. Codec "auto": libx264, yuv420p, CRF 18
  when the build has libx264 and H and W are even (4:2:0 needs even sizes), else mpeg4 at
  `-q:v 2`, which takes odd sizes. The frames are never padded or scaled: the file is (H, W).
  Audio (a file path, or a float mono array written to a temporary wav in the system temp dir) is
  muxed whole as AAC by the same process, with no `-shortest` and no `apad`: the video stream has
  exactly the frames written and the audio stream all of the input (to the sample, as measured),
  so a caller wanting equal lengths writes round(audio_seconds · fps) frames. Not trimmed in
  ffmpeg because `-af apad -shortest` with piped video left 0.3–1.7 s of audio on a 1.24 s video
  with this build (x264's lookahead holds video packets back): not a length one can rely on.
  ffmpeg writes a hidden temporary file beside `path` (same extension, so the same muxer) that
  `close()` renames onto `path` only when ffmpeg exited 0; an exception in the `with` block or
  `abort()` kills ffmpeg and deletes it, so no partial video is ever left at or beside `path`.
- `probe(path)`: frame count, fps, size, codecs, and the audio duration from decoded samples.
- `read_frames(path)`: a whole short clip as [T, H, W, 3] uint8 (tests, evaluation).
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
import tempfile
import wave
from typing import Self

import imageio_ffmpeg
import numpy as np

from ua3dtalk_jax import ffmpeg

_STDERR_TAIL_CHARS = 2000
_PROBE_RATE = 16000  # the audio is decoded at this rate to count its samples


@functools.lru_cache(maxsize=1)
def _encoders() -> frozenset[str]:
    """Encoder names of the imageio-ffmpeg build (asked once per process)."""
    cmd = [ffmpeg.exe(), "-hide_banner", "-encoders"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return frozenset(re.findall(r"^ [VAS.][\w.]{5} (\S+)", out, re.MULTILINE))


def _video_args(codec: str, height: int, width: int) -> list[str]:
    even = height % 2 == 0 and width % 2 == 0
    if codec == "auto":
        codec = "libx264" if even and "libx264" in _encoders() else "mpeg4"
    if codec == "libx264":
        if not even:
            raise ValueError(f"codec='libx264' (yuv420p) needs an even size, got {(height, width)}")
        return ["-c:v", "libx264", "-preset", "medium", "-crf", "18", "-pix_fmt", "yuv420p"]
    if codec == "mpeg4":
        return ["-c:v", "mpeg4", "-q:v", "2", "-pix_fmt", "yuv420p"]
    raise ValueError(f"codec must be 'auto', 'libx264' or 'mpeg4', got {codec!r}")


def _check_audio(audio, sample_rate: int):
    """The audio path, or the array as [S] float; raises on a missing file or a bad array."""
    if audio is None:
        return None
    if isinstance(audio, (str, os.PathLike)):
        if not os.path.isfile(audio):
            raise FileNotFoundError(f"audio file not found: {os.fspath(audio)!r}")
        return audio
    audio = np.asarray(audio)
    if audio.ndim != 1 or not np.issubdtype(audio.dtype, np.floating):
        raise ValueError(f"audio array must be float mono [S], got {audio.dtype} {audio.shape}")
    if not sample_rate > 0:
        raise ValueError(f"sample_rate must be > 0, got {sample_rate}")
    return audio


def _write_wav(path: str, samples: np.ndarray, sample_rate: int) -> None:
    pcm = (np.clip(np.nan_to_num(samples), -1.0, 1.0) * 32767.0).round().astype("<i2")
    with wave.open(path, "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(sample_rate)
        f.writeframes(pcm.tobytes())


class VideoWriter:
    """Encodes frames as they are written; the file appears at `path` only on a clean close.

    Args:
      path: output file; its extension picks the container (".mp4").
      fps: frames per second, > 0.
      size: (H, W) of every frame, both > 0.
      audio: None, a wav (or any ffmpeg-readable audio) path, or a float mono array [S] in
        [-1, 1] at `sample_rate`. Muxed whole as AAC (see the module docstring).
      sample_rate: rate of an array `audio`.
      codec: "auto", "libx264" or "mpeg4".
    """

    def __init__(
        self,
        path,
        *,
        fps: float,
        size: tuple[int, int],
        audio: str | os.PathLike | np.ndarray | None = None,
        sample_rate: int = 16000,
        codec: str = "auto",
    ):
        if not fps > 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        if len(size) != 2 or min(int(size[0]), int(size[1])) <= 0:
            raise ValueError(f"size must be (H, W) with both > 0, got {size}")
        self.path = os.fspath(path)
        self.height, self.width = int(size[0]), int(size[1])
        directory, name = os.path.split(os.path.abspath(self.path))
        ext = os.path.splitext(name)[1]
        if not ext:
            raise ValueError(f"path needs an extension to choose the container, got {self.path!r}")
        vargs = _video_args(codec, self.height, self.width)
        audio = _check_audio(audio, sample_rate)
        self.frames_written = 0
        self._proc = self._log = self._tmp_wav = None
        self._closed = False
        fd, self._tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=ext, dir=directory)
        os.close(fd)
        try:
            ain, aout = [], []
            if isinstance(audio, np.ndarray):  # outside `directory`, so never left beside `path`
                fd, self._tmp_wav = tempfile.mkstemp(suffix=".wav")
                os.close(fd)
                _write_wav(self._tmp_wav, audio, int(sample_rate))
                audio = self._tmp_wav
            if audio is not None:
                ain, aout = ["-i", os.fspath(audio)], ["-map", "1:a:0", "-c:a", "aac"]
            # A file, not a pipe, so ffmpeg never blocks on a full stderr; closed in _cleanup.
            self._log = tempfile.TemporaryFile()  # noqa: SIM115
            cmd = [ffmpeg.exe(), "-hide_banner", "-nostats", "-y"]
            cmd += ["-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24"]
            cmd += ["-s", f"{self.width}x{self.height}", "-framerate", str(fps), "-i", "-"]
            cmd += [*ain, "-map", "0:v:0", *aout, *vargs, self._tmp]
            io = {"stdin": subprocess.PIPE, "stdout": subprocess.DEVNULL, "stderr": self._log}
            self._proc = subprocess.Popen(cmd, **io)
        except BaseException:
            self._cleanup()
            raise

    def write(self, frame) -> None:
        """Encodes one frame.

        Args:
          frame: [H, W, 3] RGB, uint8, or float in [0, 1] (rounded to uint8).
        """
        if self._closed:
            raise RuntimeError("write() on a closed VideoWriter")
        frame = np.asarray(frame)
        expected = (self.height, self.width, 3)
        if frame.shape != expected:
            raise ValueError(f"frame shape must be {expected} (H, W, 3), got {frame.shape}")
        if np.issubdtype(frame.dtype, np.floating):
            frame = (np.clip(np.nan_to_num(frame), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        elif frame.dtype != np.uint8:
            raise ValueError(f"frame dtype must be uint8 or float, got {frame.dtype}")
        try:
            self._proc.stdin.write(np.ascontiguousarray(frame).data)
        except (BrokenPipeError, OSError):
            self._fail("ffmpeg stopped reading frames")
        self.frames_written += 1

    def close(self) -> None:
        """Finishes encoding and renames the file onto `path`; raises RuntimeError if ffmpeg failed."""
        if self._closed:
            return
        if self.frames_written == 0:
            self.abort()
            raise RuntimeError(f"no frames were written to {self.path!r}; nothing was saved")
        try:
            self._proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass
        if self._proc.wait() != 0:
            self._fail("ffmpeg failed")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(self._tmp, 0o666 & ~umask)  # mkstemp made it 0600; give it a normal file's mode
        os.replace(self._tmp, self.path)
        self._cleanup()

    def abort(self) -> None:
        """Kills ffmpeg and removes the temporary file; `path` is left untouched."""
        if self._closed:
            return
        if self._proc is not None:
            self._proc.kill()
            try:
                self._proc.stdin.close()
            except (BrokenPipeError, OSError):
                pass
            self._proc.wait()
        self._cleanup()

    def _fail(self, what: str):
        try:  # a broken pipe means ffmpeg is exiting: let it finish writing its message
            rc = self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            rc = self._proc.wait()
        self._log.seek(0)
        tail = self._log.read().decode(errors="replace")[-_STDERR_TAIL_CHARS:]
        self.abort()
        raise RuntimeError(f"{what} (exit {rc}) writing {self.path!r}; ffmpeg stderr:\n{tail}")

    def _cleanup(self) -> None:
        self._closed = True
        for p in (self._tmp, self._tmp_wav):
            if p is not None and os.path.exists(p):
                os.remove(p)
        if self._log is not None:
            self._log.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def probe(path) -> dict:
    """Stream facts of a video file, with exact frame and audio-sample counts.

    Args:
      path: a video file.
    Returns:
      {"frames": int (decoded), "fps": float, "width": int, "height": int, "video_codec": str,
       "audio_seconds": float | None (decoded samples / rate; None without an audio stream),
       "audio_codec": str | None, "audio_sample_rate": int | None}.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such video: {path!r}")
    info = ffmpeg.stream_info(path)
    video = re.search(r"Stream #\S+: Video: (\w+).*?, (\d+)x(\d+)[^\n]*", info)
    if video is None:
        raise RuntimeError(f"no video stream in {path!r}:\n{info[-_STDERR_TAIL_CHARS:]}")
    rate = re.search(r"([\d.]+) fps", video.group(0)) or re.search(r"([\d.]+) tbr", video.group(0))
    frames = imageio_ffmpeg.count_frames_and_secs(path)[0]
    fps = float(rate.group(1)) if rate else 0.0
    out = {"frames": int(frames), "fps": fps, "video_codec": video.group(1)}
    out.update(width=int(video.group(2)), height=int(video.group(3)))
    out.update(audio_seconds=None, audio_codec=None, audio_sample_rate=None)
    audio = re.search(r"Stream #\S+: Audio: (\w+)[^\n]*?(\d+) Hz", info)
    if audio is not None:
        n_bytes, rc, err = ffmpeg.audio_bytes(path, _PROBE_RATE)
        if rc != 0:
            raise RuntimeError(f"decoding the audio of {path!r} failed:\n{err}")
        out.update(audio_seconds=n_bytes / 2 / _PROBE_RATE, audio_codec=audio.group(1))
        out.update(audio_sample_rate=int(audio.group(2)))
    return out


def read_frames(path) -> np.ndarray:
    """Decodes a whole clip (meant for short ones: it is held in memory).

    Args:
      path: a video file.
    Returns:
      [T, H, W, 3] uint8 RGB.
    """
    gen = imageio_ffmpeg.read_frames(os.fspath(path))
    try:  # close() ends ffmpeg and its pipes now, not when the collector finds the generator
        width, height = next(gen)["size"]
        frames = [np.frombuffer(b, np.uint8).reshape(height, width, 3) for b in gen]
    finally:
        gen.close()
    return np.stack(frames) if frames else np.zeros((0, height, width, 3), np.uint8)
