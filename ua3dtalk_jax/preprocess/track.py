"""The first pass over the frames: face mesh on every frame, person segmentation on a few.

`track_range` runs in a worker process (spawned, so MediaPipe's graph is built there);
`track_clips`, the pipeline's track step, splits each clip into contiguous frame ranges, one per
worker (`chunks`), concatenates the results, builds the background plate from the sampled frames
and extracts the audio. MediaPipe re-detects the face at the start of each range, so the split
changes nothing but speed.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os

import numpy as np

from ua3dtalk_jax.preprocess import checks
from ua3dtalk_jax.preprocess import landmarks as lm_lib
from ua3dtalk_jax.preprocess import masks as mask_lib
from ua3dtalk_jax.preprocess import video as video_lib
from ua3dtalk_jax.preprocess import workdir as work_lib

BG_SAMPLES = 48  # frames kept for the background plate (48 · 512² · 4 B ≈ 50 MB)
MIN_CHUNK = 200  # frames; shorter clips are tracked in one process (spawn costs ~2 s)


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


def chunks(n: int, workers: int):
    """[(start, stop)] frame ranges of an n-frame clip, one per worker (the last stop None = end);
    one range while the clip is shorter than two MIN_CHUNKs."""
    k = max(1, min(workers, n // MIN_CHUNK))
    edges = np.linspace(0, n, k + 1).astype(int)
    return [
        (int(a), int(b) if j < k - 1 else None)
        for j, (a, b) in enumerate(itertools.pairwise(edges))
    ]


def track_clips(clips, info, box, work, max_missing, *, fps, size, progress, workers) -> None:
    """The pipeline's track step: `track_range` over every clip's ranges, in `workers` processes.

    Writes track.npz (landmarks, found, multi, bg_seen), bc.png (the background plate) and aud.wav
    (the clips' audio, each cut or padded to its frames, 16 kHz mono) into `work`.

    Raises:
      PreprocessError: a frame count that differs from the probe's, or no face in more than
        `max_missing` of the frames (listed).
    """
    total = info["frames"]
    bg_every = max(1, total // BG_SAMPLES)
    jobs = []
    for ci, (c, meta) in enumerate(zip(clips, info["clips"])):
        for a, b in chunks(meta["frames"], workers):
            label = f"track {ci + 1}/{len(clips)} [{a}:{b or meta['frames']}]"
            b = meta["frames"] if b is None else b  # frames past the audio's end are not kept
            jobs.append(
                {
                    "path": c.video,
                    "fps": fps,
                    "size": size,
                    "crop": box["box"],
                    "start": a,
                    "stop": b,
                    "display": video_lib.display_size(meta),
                    "bg_every": bg_every,
                    "max_bg": BG_SAMPLES,
                    "progress": progress,
                    "label": label,
                }
            )
    if workers > 1 and len(jobs) > 1:
        with multiprocessing.get_context("spawn").Pool(min(workers, len(jobs))) as pool:
            parts = pool.map(track_range, jobs, chunksize=1)
    else:
        parts = [track_range(j) for j in jobs]
    cat = {k: np.concatenate([p[k] for p in parts]) for k in ("landmarks", "found", "multi")}
    if len(cat["found"]) != total:
        raise checks.PreprocessError(f"decoded {len(cat['found'])} frames, expected {total}")
    missing = np.nonzero(~cat["found"])[0]
    if len(missing) > max_missing * total:
        raise checks.PreprocessError(
            f"{clips[0].video}: no face in {len(missing)} of {total} frames (more than "
            f"{max_missing:.0%}): frames {lm_lib.frame_ranges(missing)}"
        )
    plate = mask_lib.BackgroundPlate((size, size), BG_SAMPLES)
    for p in parts:
        for frame, person in zip(p["bg_frames"], p["bg_person"]):
            plate.add(frame, person)
    bg, seen = plate.plate()
    import cv2

    cv2.imwrite(os.path.join(work, "bc.tmp.png"), cv2.cvtColor(bg, cv2.COLOR_RGB2BGR))
    os.replace(os.path.join(work, "bc.tmp.png"), os.path.join(work, "bc.png"))
    wavs = []
    for k, (c, meta) in enumerate(zip(clips, info["clips"])):
        path = os.path.join(work, f"aud_{k}.wav")
        video_lib.extract_audio(c.audio or c.video, path, n_frames=meta["frames"], fps=fps)
        wavs.append(path)
    import soundfile

    audio = np.concatenate([soundfile.read(p, dtype="float32")[0] for p in wavs])
    soundfile.write(os.path.join(work, "aud.wav"), audio, video_lib.AUDIO_RATE, subtype="PCM_16")
    work_lib.save_npz(os.path.join(work, "track.npz"), **cat, bg_seen=seen)
