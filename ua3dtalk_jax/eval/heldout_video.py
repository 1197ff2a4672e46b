"""The rendered held-out frames of a subject as an mp4 with their own audio (end of training).

`HeldoutVideo(subject, out)` (an open `data.Subject` or its path) is an `on_frame(index, rgb)`
callback: the first frame opens a
streaming `VideoWriter` with the audio from that frame's time to the end of the clip, every frame is
encoded as it arrives, and `close()` finishes the file atomically (nothing is left behind if
rendering fails).
"""

from __future__ import annotations

import numpy as np

from ua3dtalk_jax.audio.features import SAMPLE_RATE
from ua3dtalk_jax.data import Subject
from ua3dtalk_jax.data.video import VideoWriter


class HeldoutVideo:
    def __init__(self, subject, path: str):
        self.subject = subject if isinstance(subject, Subject) else Subject.open(subject)
        self.path = path
        self.writer = None
        self.written = 0
        self._last = None

    def __call__(self, index: int, rgb: np.ndarray) -> None:
        if self.writer is None:
            s = self.subject
            val = s.split("val")
            start = int(round(index / s.fps * SAMPLE_RATE))
            stop = int(round((int(val[-1]) + 1) / s.fps * SAMPLE_RATE)) if len(val) else None
            audio = s.wav()[start:stop] if s.has("aud.wav") else None
            self.writer = VideoWriter(
                self.path, fps=s.fps, size=s.size, audio=audio, sample_rate=SAMPLE_RATE
            )
        self.writer.write(np.clip(rgb, 0.0, 1.0))
        self.written += 1

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.abort()
