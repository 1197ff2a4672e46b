"""Video input through `ua3dtalk_jax.ffmpeg` (imageio-ffmpeg's bundled binary): probe, decode, crop,
audio.

Decoding runs `ffmpeg -vf fps=F,crop=…,scale=S:S` and reads raw RGB from a pipe, so the frame-rate
conversion (constant or variable input rate) is ffmpeg's `fps` filter: output frame k shows the
input frame on screen at time k/F. Frames are never all held in memory. A contiguous range of
output frames is selected with `trim` after the `fps` filter, so two readers of the same file give
identical frames for the same indices (that is what lets `pipeline` split work between processes).

ffmpeg's own lines never reach the user: on a failure its output goes to the debug log
(`native_log`) and the error gives a one-line reason that names the log.

Crop boxes are (x, y, w, h) in source pixels, square (the subject layout has one --size). The
automatic crop follows EDTalk's fixed window for MEAD's moving camera: the union of the face boxes
seen over the whole clip, enlarged to take in hair, neck and shoulders, one window for every frame.
"""

from __future__ import annotations

import os
import re
import subprocess

import numpy as np

from ua3dtalk_jax import ffmpeg, native_log

AUDIO_RATE = 16000  # aud.wav
# Face box → crop: the window's side is CROP_SCALE × the larger side of the union of face boxes,
# and its centre sits CROP_SHIFT_DOWN × side below the box centre, so neck and shoulders show as in
# the TalkingGaussian subjects (face about 40% of the frame width, chin near the middle).
CROP_SCALE = 2.2
CROP_SHIFT_DOWN = 0.12


class VideoError(ValueError):
    """A video that cannot be preprocessed (the message says why and which file)."""


def _failure(path: str, what: str, output: str) -> VideoError:
    """A one-line VideoError for an ffmpeg failure; ffmpeg's full output goes to the debug log."""
    log = native_log.append(f"ffmpeg: {path}: {what}", output)
    return VideoError(f"{path}: {what} ({native_log.last_line(output)}; ffmpeg's output: {log})")


def probe(path: str) -> dict:
    """Reads stream information from `ffmpeg -i`.

    Args:
      path: the video file.

    Returns:
      dict with width, height (ints: the frame as displayed, which is what every other function
      here works in: after the rotation phones record as side data, which ffmpeg applies when
      decoding, and with non-square pixels (SAR, e.g. 12:11 in 176×144 phone clips) made square),
      sar (float, 1 = square pixels: `read_frames(display=...)` then needs the size), rotation
      (degrees), fps (float, the container's frame rate), duration (s, or None when unknown),
      has_audio (bool).

    Raises:
      VideoError: missing or unreadable file, or no video stream.
    """
    if not os.path.isfile(path):
        raise VideoError(f"{path}: no such file")
    text = ffmpeg.stream_info(path)
    if "Invalid data found" in text or "Input #0" not in text:
        native_log.append(f"ffmpeg -i {path}", text)
        raise VideoError(f"{path}: unreadable ({native_log.last_line(text, 'empty file')})")
    video = re.search(r"Stream #\S+.*?: Video: (.*)", text)
    if video is None:
        raise VideoError(f"{path}: no video stream")
    size = re.search(r", (\d{2,5})x(\d{2,5})[, \[]", video.group(1))
    rate = re.search(r", ([\d.]+)(k?) fps", video.group(1)) or re.search(
        r", ([\d.]+)(k?) tbr", video.group(1)
    )
    dur = re.search(r"Duration: (\d+):(\d+):([\d.]+)", text)
    if size is None or rate is None:
        raise VideoError(f"{path}: cannot read the video size or frame rate ({video.group(1)})")
    fps = float(rate.group(1)) * (1000 if rate.group(2) else 1)
    width, height = int(size.group(1)), int(size.group(2))
    rot = re.search(r"rotation of (-?[\d.]+) degrees", text[video.start() :])
    rotation = float(rot.group(1)) if rot else 0.0
    sar_m = re.search(r"\[SAR (\d+):(\d+) DAR", video.group(1))
    sar = int(sar_m.group(1)) / int(sar_m.group(2)) if sar_m and int(sar_m.group(2)) else 1.0
    sar = sar if sar > 0 else 1.0
    if round(abs(rotation)) % 180 == 90:  # ffmpeg turns the frames (and their pixel aspect)
        width, height, sar = height, width, 1 / sar
    if abs(sar - 1) > 0.01:
        width = max(2, round(width * sar / 2) * 2)
    else:
        sar = 1.0
    duration = None
    if dur is not None:
        h, m, s = dur.groups()
        duration = int(h) * 3600 + int(m) * 60 + float(s)
    return {
        "width": width,
        "height": height,
        "sar": sar,
        "rotation": rotation,
        "fps": fps,
        "duration": duration,
        "has_audio": re.search(r"Stream #\S+.*?: Audio: ", text) is not None,
    }


def read_frames(
    path: str,
    *,
    fps: float,
    size: int | tuple[int, int],
    crop: tuple[int, int, int, int] | None = None,
    start: int = 0,
    stop: int | None = None,
    display: tuple[int, int] | None = None,
):
    """Yields frames resampled to `fps`, cropped and resized.

    Args:
      path: the video file.
      fps: output frame rate.
      size: output side S (square) or (H, W).
      crop: (x, y, w, h) source window (displayed pixels, see `probe`), or None for the whole
        frame.
      start, stop: output frame range [start, stop) (stop None = to the end).
      display: (W, H) from `probe` for a video with non-square pixels (sar != 1): frames are
        first scaled to it, so that `crop` is in square pixels.

    Yields:
      (H, W, 3) uint8 RGB frames, in order.
    """
    h, w = (size, size) if isinstance(size, int) else size
    filters = [f"fps={fps:.6f}"]
    if start or stop is not None:
        end = "" if stop is None else f":end_frame={int(stop)}"
        filters.append(f"trim=start_frame={int(start)}{end},setpts=PTS-STARTPTS")
    if display is not None:
        filters.append(f"scale={int(display[0])}:{int(display[1])},setsar=1")
    if crop is not None:
        x, y, cw, ch = (int(v) for v in crop)
        filters.append(f"crop={cw}:{ch}:{x}:{y}")
    filters.append(f"scale={w}:{h}:flags=area")
    cmd = [ffmpeg.exe(), "-v", "error", "-nostdin", "-threads", "1", "-i", path, "-an"]
    cmd += ["-vf", ",".join(filters), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    nbytes = h * w * 3
    try:
        while True:
            buf = proc.stdout.read(nbytes)
            if len(buf) < nbytes:
                break
            yield np.frombuffer(buf, np.uint8).reshape(h, w, 3)
    finally:
        proc.stdout.close()
        err = proc.stderr.read().decode(errors="replace")
        proc.stderr.close()
        rc = proc.wait()
    if rc != 0:
        raise _failure(path, "decoding failed", err)


def display_size(meta: dict):
    """read_frames' `display` for a clip: its square-pixel size when its pixels are not square."""
    return None if meta.get("sar", 1.0) == 1.0 else (meta["width"], meta["height"])


def count_frames(path: str, *, fps: float) -> int:
    """Number of frames `read_frames` yields at `fps` (decodes at 16×16; cheap)."""
    return sum(1 for _ in read_frames(path, fps=fps, size=16))


def _no_audio(msg: str) -> bool:
    return "does not contain any stream" in msg or "matches no streams" in msg or not msg.strip()


def audio_seconds(path: str) -> float:
    """Duration of the file's first audio stream, by decoding it (16 kHz mono; container
    durations are often wrong for phone clips and for an audio track shorter than the video).

    Raises:
      VideoError: no audio stream, or a file ffmpeg cannot decode.
    """
    if not os.path.isfile(path):
        raise VideoError(f"{path}: no such file")
    nbytes, rc, err = ffmpeg.audio_bytes(path, AUDIO_RATE)
    if rc != 0 and _no_audio(err) or rc == 0 and nbytes == 0:
        raise VideoError(f"{path}: no audio track")
    if rc != 0:
        raise _failure(path, "audio decoding failed", err)
    return nbytes / 2 / AUDIO_RATE


def extract_audio(path: str, out_wav: str, *, n_frames: int, fps: float) -> None:
    """Writes the file's audio as 16 kHz mono PCM16, trimmed or zero-padded to n_frames / fps.

    The exact length keeps audio and video aligned when clips are concatenated.

    Raises:
      VideoError: no audio stream or ffmpeg failure.
    """
    seconds = n_frames / fps
    cmd = [ffmpeg.exe(), "-v", "error", "-nostdin", "-y", "-i", path, "-vn", "-ac", "1"]
    cmd += ["-ar", str(AUDIO_RATE), "-af", f"apad,atrim=0:{seconds:.6f}", "-c:a", "pcm_s16le"]
    proc = subprocess.run(cmd + [out_wav], capture_output=True, check=False)
    if proc.returncode != 0 or not os.path.isfile(out_wav):
        msg = proc.stderr.decode(errors="replace").strip()
        if _no_audio(msg):
            raise VideoError(f"{path}: no audio track")
        raise _failure(path, "audio extraction failed", msg)


def parse_crop(text: str) -> tuple[int, int, int, int] | None:
    """'auto' → None; 'x,y,w,h' → a square box (w == h required)."""
    if text.strip().lower() == "auto":
        return None
    parts = [round(float(v)) for v in text.split(",")]
    if len(parts) != 4 or parts[2] <= 0 or parts[3] <= 0:
        raise ValueError(f"crop must be 'auto' or 'x,y,w,h' with w, h > 0, got {text!r}")
    if parts[2] != parts[3]:
        raise ValueError(f"crop window must be square (the layout has one --size), got {text!r}")
    return tuple(parts)


def check_crop(crop, width: int, height: int) -> tuple[int, int, int, int]:
    """Validates a box against the source frame; returns it as ints (even sides for ffmpeg)."""
    x, y, w, h = (int(v) for v in crop)
    if x < 0 or y < 0 or x + w > width or y + h > height or w < 8 or h < 8:
        raise ValueError(f"crop {crop} does not fit in the {width}x{height} frame")
    return x, y, w, h


def crop_from_face_boxes(boxes: np.ndarray, width: int, height: int) -> tuple[int, int, int, int]:
    """One fixed square window from the face boxes seen over a clip (EDTalk-style).

    Args:
      boxes: (K, 4) face boxes (x0, y0, x1, y1) in source pixels, K ≥ 1.
      width, height: source frame size.

    Returns:
      (x, y, side, side) inside the frame; the window shrinks when the frame is too small and
      slides (never leaving the frame) when the face is near an edge.
    """
    boxes = np.asarray(boxes, np.float64)
    x0, y0 = boxes[:, 0].min(), boxes[:, 1].min()
    x1, y1 = boxes[:, 2].max(), boxes[:, 3].max()
    side = CROP_SCALE * max(x1 - x0, y1 - y0)
    side = int(min(side, width, height)) // 2 * 2
    cx = (x0 + x1) / 2
    cy = (y0 + y1) / 2 + CROP_SHIFT_DOWN * side
    x = int(np.clip(round(cx - side / 2), 0, width - side))
    y = int(np.clip(round(cy - side / 2), 0, height - side))
    return x, y, side, side
