"""Stage-2 frames: the authors' sampling curricula, deterministic per iteration, prefetched from disk.

The frame(s) of iteration `it` are a pure function of (seed, branch, it) — so a resumed run draws
exactly the frames an uninterrupted one would, with no order state to save. Curricula (reference §4):

  face   it < warm-up, every 15th iteration: redraw until the mouth opening lies in a window that
         slides from small to large openings; warm-up < it < 40k (scaled), every 15th: redraw until
         blink ∈ [it/40k − 0.15, it/40k + 0.3].
  mouth  it < warm-up: only the widest-open mouths (AU25 ≥ its clipped maximum); then every 7th
         iteration AU25 ∈ [max − (it/39k)·(max − p25), max]; always: redraw frames whose mouth mask
         has fewer than 20 pixels.
  fuse   uniform.
Redraws are capped at MAX_REDRAWS (then the last draw is kept). Frames are read by a thread pool
ahead of the loop (`Prefetcher`), never all at once; the per-frame stage-1 features are added
from the in-memory (N, ·) arrays.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ua3dtalk_jax.head.features import KEYS

BRANCH_IDS = {"face": 1, "mouth": 2, "fuse": 3}
MAX_REDRAWS = 100


class FrameSampler:
    """Chooses and loads the training frames of each iteration of one branch.

    Args:
      subject: an open `data.Subject`.
      features: {"f_exp", "f_tone", "f_emo"} (N, ·) stage-1 features of every frame.
      part: "face", "mouth" or "fuse".
      bcfg: that branch's `train.<part>` config (curriculum settings; None for fuse).
      seed: run seed.
      batch: frames per iteration (global batch of this process).
    """

    def __init__(self, subject, features: dict, part: str, bcfg, seed: int, batch: int):
        self.subject, self.features, self.part, self.b = subject, features, part, bcfg
        self.seed, self.batch = int(seed), int(batch)
        self.train = np.asarray(subject.split("train"))
        scal = [subject.frame(int(i), keys=("mouth_open", "blink", "au25")) for i in self.train]
        self.mouth_open = np.array([s["mouth_open"] for s in scal], np.float32)
        self.blink = np.array([s["blink"] for s in scal], np.float32)
        self.au25 = np.array([s["au25"] for s in scal], np.float32)
        self.mouth_px = None
        if part == "mouth" and bcfg.min_mouth_pixels > 0:
            self.mouth_px = np.array(
                [
                    int(np.sum(m["mouth_mask"] | m["teeth_mask"]))
                    for m in (
                        subject.frame(int(i), keys=("mouth_mask", "teeth_mask")) for i in self.train
                    )
                ]
            )

    def indices(self, it: int) -> np.ndarray:
        """(batch,) frame indices of iteration `it` (pure function of seed, branch, it)."""
        rng = np.random.default_rng([self.seed, BRANCH_IDS[self.part], int(it)])
        out = []
        for _ in range(self.batch):
            for _ in range(MAX_REDRAWS):
                j = int(rng.integers(len(self.train)))
                if self._accept(j, it):
                    break
            out.append(int(self.train[j]))
        return np.asarray(out, np.int64)

    def _accept(self, j: int, it: int) -> bool:
        b = self.b
        if b is None:
            return True
        if (
            self.mouth_px is not None
            and self.mouth_px[j] < b.min_mouth_pixels
            and np.any(self.mouth_px >= b.min_mouth_pixels)
        ):
            return False
        if self.part == "face" and it % b.curriculum_every == 0:
            if it < b.warmup:
                lo, hi = float(self.mouth_open.min()), float(self.mouth_open.max())
                lb = lo + 0.2 * (hi - lo)
                w = 0.2 * (hi - lb)
                c = lb + min(it / b.curriculum_until, 1.0) * (hi - lb)
                return c - w <= self.mouth_open[j] <= c + w
            if it < b.curriculum_until:
                t = it / b.curriculum_until
                return t - 0.15 <= self.blink[j] <= t + 0.3
        if self.part == "mouth":
            top = float(self.au25.max())
            if it < b.warmup:
                return self.au25[j] >= top
            if it % b.curriculum_every == 0 and it < b.curriculum_until:
                p25 = float(np.percentile(self.au25, 25))
                return self.au25[j] >= top - (it / b.curriculum_until) * (top - p25)
        return True

    def load(self, it: int) -> dict:
        """The stacked batch of iteration `it`: (B, …) numpy arrays (uint8 images, bool masks)."""
        return load_frames(self.subject, self.features, self.indices(it))


def load_frames(subject, features: dict, indices) -> dict:
    """Frames `indices` of `subject` stacked as one batch: (B, …) arrays of the subject frame's
    `KEYS` and each feature's rows (float32)."""
    frames = []
    for i in indices:
        f = subject.frame(int(i), keys=KEYS)
        for k, v in features.items():
            f[k] = np.asarray(v[int(i)], np.float32)
        frames.append(f)
    return {k: np.stack([f[k] for f in frames]) for k in frames[0]}


class Prefetcher:
    """Loads `fn(it)` for the next `depth` iterations on background threads, in order."""

    def __init__(self, fn, start: int, stop: int, depth: int = 4, workers: int = 2):
        self.fn, self.next, self.stop = fn, start, stop
        self.pool = ThreadPoolExecutor(max(1, workers))
        self.pending = {}
        for _ in range(depth):
            self._submit()

    def _submit(self):
        if self.next < self.stop:
            self.pending[self.next] = self.pool.submit(self.fn, self.next)
            self.next += 1

    def get(self, it: int) -> dict:
        fut = self.pending.pop(it, None)
        out = fut.result() if fut is not None else self.fn(it)
        self._submit()
        return out

    def close(self):
        self.pool.shutdown(wait=False, cancel_futures=True)
