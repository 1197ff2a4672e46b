"""Test inputs built on the fly: videos (with or without sound) from arrays, via the ffmpeg binary.

`astronaut_frames` turns skimage's astronaut photograph into a short clip whose content drifts and
zooms a little (a hand-held camera), so the automatic crop, the masks and the background plate
are exercised on a real face and a real background.
"""

from __future__ import annotations

import os
import subprocess
import tempfile

import cv2
import numpy as np
import soundfile

from ua3dtalk_jax.preprocess.video import ffmpeg_exe

AUDIO_RATE = 16000


def tone(seconds: float, freq: float = 220.0, rate: int = AUDIO_RATE) -> np.ndarray:
    """(S,) float32 sine with a 4 Hz amplitude wobble (speech-like envelope)."""
    t = np.arange(round(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * freq * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t))).astype(
        np.float32
    )


def write_video(path: str, frames, fps: float, wav=None, *, codec: str = "libx264") -> str:
    """Encodes (T, H, W, 3) uint8 RGB frames (even H, W) as an mp4, muxing (S,) 16 kHz audio."""
    frames = np.asarray(frames, np.uint8)
    _, h, w, _ = frames.shape
    cmd = [ffmpeg_exe(), "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24"]
    cmd += ["-s", f"{w}x{h}", "-r", f"{fps}", "-i", "-"]
    with tempfile.TemporaryDirectory() as tmp:
        if wav is not None:
            wav_path = os.path.join(tmp, "a.wav")
            soundfile.write(wav_path, np.asarray(wav, np.float32), AUDIO_RATE)
            cmd += ["-i", wav_path, "-c:a", "aac"]
        cmd += ["-c:v", codec, "-pix_fmt", "yuv420p"]
        cmd += ["-crf", "12"] if codec == "libx264" else ["-q:v", "2"]
        subprocess.run(cmd + [path], input=frames.tobytes(), check=True, capture_output=True)
    return path


def astronaut_frames(n: int, size: int = 192, seed: int = 0) -> np.ndarray:
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
