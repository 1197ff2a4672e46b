"""Test inputs built on the fly: videos (with or without sound) from arrays, via the ffmpeg binary.

`astronaut_frames` turns skimage's astronaut photograph into a short clip whose content drifts and
zooms a little (a hand-held camera), so the automatic crop, the masks and the background plate
are exercised on a real face and a real background.

`phone_frames` is a "real camera clip" the project did not render: the astronaut cut out of her
photograph (MediaPipe's person matte of the original, computed once) sways in front of a room
whose window shows a scrolling, flickering street, at phone resolution (176×144 by default, the
face about 60 px wide); `write_video(..., bitrate=...)` adds the compression of a phone or a
messenger. The composited matte is returned as the known person region.
"""

from __future__ import annotations

import functools
import os
import subprocess
import tempfile

import cv2
import numpy as np
import soundfile

from ua3dtalk_jax import ffmpeg

AUDIO_RATE = 16000


def tone(seconds: float, freq: float = 220.0, rate: int = AUDIO_RATE) -> np.ndarray:
    """(S,) float32 sine with a 4 Hz amplitude wobble (speech-like envelope)."""
    t = np.arange(round(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * freq * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t))).astype(
        np.float32
    )


def write_video(
    path: str, frames, fps: float, wav=None, *, codec: str = "libx264", bitrate: str | None = None
) -> str:
    """Encodes (T, H, W, 3) uint8 RGB frames (even H, W) as an mp4, muxing (S,) 16 kHz audio.

    bitrate: e.g. "40k" for a low-bitrate phone clip (blocking, ringing); None = near-lossless.
    """
    frames = np.asarray(frames, np.uint8)
    _, h, w, _ = frames.shape
    cmd = [ffmpeg.exe(), "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24"]
    cmd += ["-s", f"{w}x{h}", "-r", f"{fps}", "-i", "-"]
    with tempfile.TemporaryDirectory() as tmp:
        if wav is not None:
            wav_path = os.path.join(tmp, "a.wav")
            soundfile.write(wav_path, np.asarray(wav, np.float32), AUDIO_RATE)
            cmd += ["-i", wav_path, "-c:a", "aac"]
        cmd += ["-c:v", codec, "-pix_fmt", "yuv420p"]
        if bitrate is not None:
            cmd += ["-b:v", bitrate, "-maxrate", bitrate, "-bufsize", bitrate]
        else:
            cmd += ["-crf", "12"] if codec == "libx264" else ["-q:v", "2"]
        subprocess.run(cmd + [path], input=frames.tobytes(), check=True, capture_output=True)
    return path


# 288² frames show her face 52 px wide (92 px of the 512² photograph): above checks.MIN_FACE_PX
ASTRONAUT_SIDE = 288


def remux_rotated(src: str, dst: str) -> str:
    """Copies src (frames stored turned a quarter clockwise: np.rot90(frames, -1, axes=(1, 2)))
    into dst with a 90° display rotation, as phones save portrait video: displayed upright."""
    cmd = [
        ffmpeg.exe(),
        "-v",
        "error",
        "-y",
        "-display_rotation:v:0",
        "90",
        "-i",
        src,
        "-c",
        "copy",
    ]
    subprocess.run(cmd + [dst], check=True, capture_output=True)
    return dst


def reencode_sar(src: str, dst: str, sar: str = "12/11") -> str:
    """Re-encodes src with non-square pixels (the SAR of 176×144 phone and camcorder clips)."""
    cmd = [ffmpeg.exe(), "-v", "error", "-y", "-i", src, "-vf", f"setsar={sar}", "-crf", "12"]
    subprocess.run(cmd + [dst], check=True, capture_output=True)
    return dst


def astronaut_frames(n: int, size: int = ASTRONAUT_SIDE, seed: int = 0) -> np.ndarray:
    """(n, size, size, 3) uint8: the astronaut photograph drifting ±4% and zooming ±3%."""
    from skimage import data

    img = data.astronaut()
    rng = np.random.default_rng(seed)
    phase = rng.uniform(0, 2 * np.pi, 3)
    out = []
    for t in range(n):
        s = 1 + 0.03 * np.sin(2 * np.pi * t / 40 + phase[0])
        dx = 20 * np.sin(2 * np.pi * t / 50 + phase[1])
        dy = 12 * np.sin(2 * np.pi * t / 35 + phase[2])
        m = cv2.getRotationMatrix2D((256, 256), 0, s)
        m[:, 2] += (dx, dy)
        warped = cv2.warpAffine(img, m, (512, 512), borderMode=cv2.BORDER_REFLECT)
        out.append(cv2.resize(warped, (size, size), interpolation=cv2.INTER_AREA))
    return np.stack(out)


ASTRONAUT_FACE_W = 92.0  # px: her face-mesh box width in the 512² photograph (x 179-271)
ASTRONAUT_FACE_C = (225.0, 124.0)  # px: that box's centre
WINDOW = (0.04, 0.06, 0.40, 0.55)  # the window's (x0, y0, x1, y1), fractions of the frame


@functools.cache
def _astronaut_matte() -> np.ndarray:
    """(512, 512) float32 person matte of the photograph (MediaPipe selfie segmentation)."""
    from skimage import data

    from ua3dtalk_jax.preprocess import masks

    seg = masks.PersonSegmenter()
    try:
        return np.asarray(seg(data.astronaut()), np.float32)
    finally:
        seg.close()


def _room(h: int, w: int, t: int, rng_street: np.ndarray) -> np.ndarray:
    """(h, w, 3) float32: a wall with a window onto a street scrolling 3 px/frame and flickering."""
    yy, xx = np.mgrid[:h, :w] / max(h, w)
    wall = np.stack([150 + 40 * yy, 140 + 30 * yy, 120 + 20 * xx], -1)
    x0, y0, x1, y1 = (round(v * s) for v, s in zip(WINDOW, (w, h, w, h)))
    sw = rng_street.shape[1]
    cols = (np.arange(x1 - x0) + 3 * t) % sw
    street = rng_street[: y1 - y0][:, cols] * (1 + 0.25 * np.sin(t * 1.7))  # flicker: cars, sun
    wall[y0:y1, x0:x1] = np.clip(street, 0, 255)
    return wall


def phone_frames(n: int, width: int = 176, height: int = 144, face_px: float = 60.0, seed: int = 0):
    """A phone-style clip: the astronaut swaying in front of a window with a moving street.

    Args:
      n: frames; width, height: even frame size; face_px: face width (face-mesh box) in px.
      seed: the street texture and the sway's phases.

    Returns:
      frames (n, height, width, 3) uint8 RGB and person (n, height, width) bool, the known
      person region (the composited matte > 0.5).
    """
    from skimage import data

    photo = data.astronaut().astype(np.float32)
    matte = _astronaut_matte()
    rng = np.random.default_rng(seed)
    street = cv2.GaussianBlur(
        rng.uniform(0, 255, (height, 4 * width, 3)).astype(np.float32), (0, 0), max(1.0, width / 60)
    )
    street = (street - street.mean()) * 4 + 110  # contrasty blobs: cars, trees, signs
    phase = rng.uniform(0, 2 * np.pi, 3)
    scale = face_px / ASTRONAUT_FACE_W
    frames, person = [], []
    for t in range(n):
        # the face centred at (0.5 W, 0.38 H), swaying ±3% of the width, zooming ±2%
        s = scale * (1 + 0.02 * np.sin(2 * np.pi * t / 45 + phase[0]))
        cx = 0.5 * width + 0.03 * width * np.sin(2 * np.pi * t / 60 + phase[1])
        cy = 0.38 * height + 0.015 * height * np.sin(2 * np.pi * t / 38 + phase[2])
        m = np.array([[s, 0, cx - s * ASTRONAUT_FACE_C[0]], [0, s, cy - s * ASTRONAUT_FACE_C[1]]])
        flags = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
        fg = cv2.warpAffine(photo, m, (width, height), flags=flags, borderMode=cv2.BORDER_REPLICATE)
        a = cv2.warpAffine(matte, m, (width, height), flags=cv2.INTER_LINEAR)[..., None]
        bg = _room(height, width, t, street)
        frames.append(np.clip(a * fg + (1 - a) * bg, 0, 255).round().astype(np.uint8))
        person.append(a[..., 0] > 0.5)
    return np.stack(frames), np.stack(person)
