"""The first pass over the frames: face mesh on every frame, person segmentation on a few.

`track_range` runs in a worker process (spawned, so MediaPipe's graph is built there); the
pipeline splits a clip into contiguous frame ranges, one per worker, and concatenates the results.
MediaPipe re-detects the face at the start of each range, so the split changes nothing but speed.
"""

from __future__ import annotations

import numpy as np

from ua3dtalk_jax.preprocess import landmarks as lm_lib
from ua3dtalk_jax.preprocess import masks as mask_lib
from ua3dtalk_jax.preprocess import video as video_lib


def track_range(job: dict) -> dict:
    """Landmarks for frames [start, stop) of one video, plus background samples.

    Args:
      job: dict(path, fps, size, crop, start, stop (None = end), display (see
        video.read_frames), bg_every (sample every k-th
        frame for the background plate), max_bg (samples kept), progress (bool), label).

    Returns:
      dict(landmarks (n, 478, 3) float32 (zeros where not found), found (n,) bool,
      multi (n,) bool (more than one face seen), bg_frames (k, S, S, 3) uint8,
      bg_person (k, S, S) bool).
    """
    from tqdm import tqdm

    tracker = lm_lib.FaceTracker()
    segmenter = mask_lib.PersonSegmenter()
    size = job["size"]
    lms, found, multi, bg_frames, bg_person = [], [], [], [], []
    frames = video_lib.read_frames(
        job["path"],
        fps=job["fps"],
        size=size,
        crop=job["crop"],
        start=job["start"],
        stop=job["stop"],
        display=job.get("display"),
    )
    bar = tqdm(frames, desc=job.get("label", "track"), unit="fr", disable=not job["progress"])
    try:
        for i, frame in enumerate(bar):
            before = tracker.faces_seen
            pts = tracker(frame)
            multi.append(tracker.faces_seen > before)
            found.append(pts is not None)
            lms.append(np.zeros((lm_lib.N_LANDMARKS, 3), np.float32) if pts is None else pts)
            if i % job["bg_every"] == 0 and len(bg_frames) < job["max_bg"]:
                person = segmenter(frame) > mask_lib.PERSON_THRESHOLD
                if pts is not None:
                    person |= mask_lib.polygon_mask(pts, mask_lib.FACE_OVAL, frame.shape[:2])
                bg_frames.append(frame.copy())
                bg_person.append(person)
    finally:
        tracker.close()
        segmenter.close()
    n = len(found)
    shape = (size, size)
    return {
        "landmarks": np.stack(lms) if n else np.zeros((0, lm_lib.N_LANDMARKS, 3), np.float32),
        "found": np.array(found, bool),
        "multi": np.array(multi, bool),
        "bg_frames": np.stack(bg_frames) if bg_frames else np.zeros((0, *shape, 3), np.uint8),
        "bg_person": np.stack(bg_person) if bg_person else np.zeros((0, *shape), bool),
    }
