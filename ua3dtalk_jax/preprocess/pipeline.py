"""Raw video(s) → one subject directory, in resumable steps.

Steps (each leaves one file in the work directory, written atomically; a re-run with the same
inputs and options skips every step whose file exists):

    probe   streams, frame counts, clip-length check          probe.json
    crop    fixed face window over all clips (or the given)    crop.json
    track   face mesh on every frame (one process per worker), track.npz, bc.png, aud.wav
            background samples → plate, audio → 16 kHz mono
    fit     smoothing, canonical shape, focal, cameras,        fit.npz
            pose-free shapes → expression PCA, EAR → AU45
    write   second decode; masks + segmentation per frame →    the subject directory
            SubjectWriter (its `.ua3d_incomplete` marker stays until subject.json is written)

The work directory defaults to `<out>.work` and is removed once the subject is complete. Several
clips (MEAD) become one subject: frames are concatenated in the given order, each clip's audio is
cut or padded to its frame count, smoothing never crosses a clip boundary, and the validation split
starts at the first clip marked split="val".

Landmark coordinates (ori_imgs/<i>.lms, landmarks.npy, eye_boxes.npy) are continuous pixel
coordinates, x = col, y = row, pixel (i, j) spanning [i, i+1) (MediaPipe's normalised x · W; the
project's camera convention, and the synthetic generator's). FAN's .lms put pixel centres at
integers, 0.5 px away: nothing that reads .lms (lip boxes, centred LMD) notices.

Bad input: a missing or unreadable file, no video stream, no audio (neither a track nor a given
file), fewer than `min_frames` frames, or no face in more than `max_missing` of the frames (listed)
raise `PreprocessError` before anything is written to `out_dir`. Up to that fraction, faceless
frames get interpolated landmarks and are listed in subject.json's metadata ("interpolated").
With several faces, the largest is tracked (frames listed as "multiple_faces").
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import multiprocessing
import os
import shutil

import numpy as np

from ua3dtalk_jax.data import layout
from ua3dtalk_jax.data.writer import SubjectWriter
from ua3dtalk_jax.preprocess import expression as exp_lib
from ua3dtalk_jax.preprocess import landmarks as lm_lib
from ua3dtalk_jax.preprocess import masks as mask_lib
from ua3dtalk_jax.preprocess import pose as pose_lib
from ua3dtalk_jax.preprocess import video as video_lib
from ua3dtalk_jax.preprocess.track import track_range

MIN_FRAMES = 50  # 2 s at 25 fps: below this the 10/11 split leaves under 5 validation frames
MAX_MISSING = 0.1  # faceless frames tolerated (interpolated) before the clip is refused
CROP_SAMPLES = 16  # frames per clip searched for faces to place the automatic crop
BG_SAMPLES = 48  # frames kept for the background plate (48 · 512² · 4 B ≈ 50 MB)
MIN_CHUNK = 200  # frames; shorter clips are tracked in one process (spawn costs ~2 s)
WORK_SUFFIX = ".work"


class PreprocessError(video_lib.VideoError):
    """Input that cannot become a subject; the message says which file and why."""


@dataclasses.dataclass(frozen=True)
class Clip:
    """One input video. audio: a separate audio file (None = the video's own track)."""

    video: str
    audio: str | None = None
    emotion: str | None = None
    intensity: int | None = None
    split: str = "train"  # "train" or "val"


def preprocess(
    clips,
    out_dir: str,
    *,
    fps: float = 25.0,
    size: int = 512,
    crop=None,
    workers: int = 2,
    min_frames: int = MIN_FRAMES,
    max_missing: float = MAX_MISSING,
    work_dir: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
    source: str = "video",
) -> str:
    """Builds a subject directory from one video path or a list of `Clip`s.

    Args:
      clips: a video path, a `Clip`, or a list of `Clip`s (train clips should come first).
      out_dir: the subject directory to write.
      fps: output frame rate (input is resampled, variable rate included).
      size: output side S (frames are S×S).
      crop: None / "auto" (fixed window from the faces over all clips) or (x, y, w, w) in source px.
      workers: processes for the face-mesh pass (spawned: a script that calls this with
        workers > 1 needs the usual `if __name__ == "__main__":` guard, or the workers
        re-run it and the pool restarts them forever).
      min_frames: shortest accepted clip (all clips together), in output frames.
      max_missing: largest fraction of frames without a face.
      work_dir: intermediate files (default `<out_dir>.work`; removed on success).
      overwrite: replace a finished subject built from other inputs or options.
      progress: tqdm bars.
      source: provenance string for subject.json.

    Returns:
      out_dir.

    Raises:
      PreprocessError: bad input (see the module docstring).
    """
    if isinstance(clips, (str, os.PathLike, Clip)):
        clips = [clips]
    clips = [c if isinstance(c, Clip) else Clip(os.fspath(c)) for c in clips]
    if not clips:
        raise PreprocessError("no input clips")
    crop = None if isinstance(crop, str) and crop == "auto" else crop
    out_dir = os.fspath(out_dir).rstrip("/")
    work = work_dir or out_dir + WORK_SUFFIX
    params = _params(clips, fps, size, crop)
    if _finished(out_dir, params, overwrite):
        return out_dir
    _open_work(work, params)
    opts = {"fps": fps, "size": size, "progress": progress, "workers": workers}

    info = _step(work, "probe.json", lambda: _probe(clips, fps, min_frames))
    box = _step(work, "crop.json", lambda: _crop(clips, info, crop, fps))
    _step(work, "track.npz", lambda: _track(clips, info, box, work, max_missing, **opts))
    _step(work, "fit.npz", lambda: _fit(work, info, size))
    _write(clips, info, box, work, out_dir, params, source, **opts)
    shutil.rmtree(work, ignore_errors=True)
    return out_dir


# ---- bookkeeping --------------------------------------------------------------------------------


def _params(clips, fps, size, crop) -> dict:
    files = []
    for c in clips:
        stamp = [(os.path.getsize(p), int(os.path.getmtime(p))) if os.path.isfile(p) else None
                 for p in (c.video, c.audio) if p]  # fmt: skip
        files.append([*dataclasses.astuple(c), stamp])
    doc = {"clips": files, "fps": float(fps), "size": int(size), "crop": crop and list(crop)}
    doc["digest"] = hashlib.sha1(json.dumps(doc).encode()).hexdigest()
    return doc


def _finished(out_dir: str, params: dict, overwrite: bool) -> bool:
    path = os.path.join(out_dir, layout.SUBJECT_JSON)
    if os.path.exists(os.path.join(out_dir, layout.INCOMPLETE)) or not os.path.isfile(path):
        if (
            os.path.isdir(out_dir)
            and os.listdir(out_dir)
            and not os.path.exists(os.path.join(out_dir, layout.INCOMPLETE))
        ):
            raise FileExistsError(f"{out_dir}: exists and is not a subject this tool started")
        return False
    with open(path) as f:
        digest = json.load(f).get("metadata", {}).get("preprocess", {}).get("digest")
    if digest == params["digest"]:
        return True
    if not overwrite:
        raise FileExistsError(f"{out_dir}: a subject built from other inputs (pass overwrite)")
    return False


def _open_work(work: str, params: dict) -> None:
    path = os.path.join(work, "params.json")
    if os.path.isfile(path):
        with open(path) as f:
            if json.load(f).get("digest") == params["digest"]:
                return
        shutil.rmtree(work)  # stale steps from other inputs
    os.makedirs(work, exist_ok=True)
    _atomic_json(path, params)


def _atomic_json(path: str, doc) -> None:
    with open(path + ".tmp", "w") as f:
        json.dump(doc, f, indent=1)
    os.replace(path + ".tmp", path)


def _step(work: str, name: str, run):
    """Runs `run` unless work/name exists; json results are returned from disk either way."""
    path = os.path.join(work, name)
    if not os.path.exists(path):
        result = run()
        if name.endswith(".json"):
            _atomic_json(path, result)
    if name.endswith(".json"):
        with open(path) as f:
            return json.load(f)
    return None


def _save_npz(path: str, **arrays) -> None:
    np.savez(path + ".tmp.npz", **arrays)
    os.replace(path + ".tmp.npz", path)


# ---- steps --------------------------------------------------------------------------------------


def _probe(clips, fps: float, min_frames: int) -> dict:
    out = []
    for c in clips:
        meta = video_lib.probe(c.video)
        if c.audio is not None and not os.path.isfile(c.audio):
            raise PreprocessError(f"{c.audio}: audio file not found")
        if c.audio is None and not meta["has_audio"]:
            raise PreprocessError(f"{c.video}: no audio track (the audio drives the model)")
        if c.split not in ("train", "val"):
            raise PreprocessError(f"{c.video}: split must be 'train' or 'val', got {c.split!r}")
        meta["frames"] = video_lib.count_frames(c.video, fps=fps)
        if meta["frames"] == 0:
            raise PreprocessError(f"{c.video}: no decodable frames")
        out.append(meta)
    sizes = {(m["width"], m["height"]) for m in out}
    if len(sizes) > 1:
        raise PreprocessError(f"clips differ in frame size {sorted(sizes)}; one crop cannot fit")
    total = sum(m["frames"] for m in out)
    if total < min_frames:
        raise PreprocessError(
            f"{clips[0].video}: {total} frames at {fps:g} fps, fewer than the {min_frames} "
            f"needed to train and validate"
        )
    return {"clips": out, "frames": total}


def _crop(clips, info, crop, fps: float) -> dict:
    w, h = info["clips"][0]["width"], info["clips"][0]["height"]
    if crop is not None:
        return {"box": list(video_lib.check_crop(crop, w, h)), "auto": False}
    scale = min(1.0, 640 / max(w, h))  # detection at ≤ 640 px is plenty for a box
    sw, sh = int(w * scale) // 2 * 2, int(h * scale) // 2 * 2
    boxes = []
    for c, meta in zip(clips, info["clips"]):
        rate = fps * min(1.0, CROP_SAMPLES / meta["frames"])
        for frame in video_lib.read_frames(c.video, fps=rate, size=(sh, sw)):
            box = lm_lib.detect_face_box(frame)
            if box is not None:
                boxes.append(box * np.array([w / sw, h / sh, w / sw, h / sh]))
    if not boxes:
        raise PreprocessError(f"{clips[0].video}: no face found in any sampled frame")
    return {"box": list(video_lib.crop_from_face_boxes(np.array(boxes), w, h)), "auto": True}


def _chunks(n: int, workers: int):
    k = max(1, min(workers, n // MIN_CHUNK))
    edges = np.linspace(0, n, k + 1).astype(int)
    return [
        (int(a), int(b) if j < k - 1 else None)
        for j, (a, b) in enumerate(itertools.pairwise(edges))
    ]


def _track(clips, info, box, work, max_missing, *, fps, size, progress, workers) -> None:
    total = info["frames"]
    bg_every = max(1, total // BG_SAMPLES)
    jobs = []
    for ci, (c, meta) in enumerate(zip(clips, info["clips"])):
        for a, b in _chunks(meta["frames"], workers):
            label = f"track {ci + 1}/{len(clips)} [{a}:{b or meta['frames']}]"
            jobs.append({"path": c.video, "fps": fps, "size": size, "crop": box["box"], "start": a, "stop": b,
                             "bg_every": bg_every, "max_bg": BG_SAMPLES, "progress": progress, "label": label})  # fmt: skip
    if workers > 1 and len(jobs) > 1:
        with multiprocessing.get_context("spawn").Pool(min(workers, len(jobs))) as pool:
            parts = pool.map(track_range, jobs, chunksize=1)
    else:
        parts = [track_range(j) for j in jobs]
    cat = {k: np.concatenate([p[k] for p in parts]) for k in ("landmarks", "found", "multi")}
    if len(cat["found"]) != total:
        raise PreprocessError(f"decoded {len(cat['found'])} frames, expected {total}")
    missing = np.nonzero(~cat["found"])[0]
    if len(missing) > max_missing * total:
        raise PreprocessError(
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
    _save_npz(os.path.join(work, "track.npz"), **cat, bg_seen=seen)


def _fit(work: str, info: dict, size: int) -> None:
    tr = np.load(os.path.join(work, "track.npz"))
    raw, found = tr["landmarks"], tr["found"]
    pieces, start = [], 0
    for meta in info["clips"]:
        stop = start + meta["frames"]
        ok = found[start:stop]
        if not ok.any():
            raise PreprocessError(f"clip {len(pieces)}: no face in any frame")
        pieces.append(lm_lib.fill_and_smooth(raw[start:stop], ok))
        start = stop
    lms = np.concatenate(pieces)
    _, rigid0 = pose_lib.canonical_shape(lms)  # rigid points for the focal search
    focal = pose_lib.estimate_focal(lms, rigid0, (size, size))
    fit = pose_lib.fit_poses(lms, focal, (size, size))
    canon, rigid, viewmats, reproj, posefree = (
        fit[k] for k in ("canon", "rigid", "viewmats", "reproj", "posefree")
    )
    mean, basis, std = exp_lib.fit_basis(posefree)
    closure = exp_lib.blink_closure(exp_lib.eye_aspect_ratio(posefree))
    _save_npz(
        os.path.join(work, "fit.npz"), landmarks=lms, canon=canon, rigid=rigid,
        focal=np.float64(focal), viewmats=viewmats, reproj=reproj.astype(np.float32),
        exp=exp_lib.project(posefree, mean, basis, std), exp_mean=mean, exp_basis=basis,
        exp_std=std, au45=exp_lib.au45(closure),
    )  # fmt: skip


def _write(clips, info, box, work, out_dir, params, source, *, fps, size, progress, workers):
    import cv2
    from tqdm import tqdm

    fit = np.load(os.path.join(work, "fit.npz"))
    tr = np.load(os.path.join(work, "track.npz"))
    bg = cv2.cvtColor(cv2.imread(os.path.join(work, "bc.png")), cv2.COLOR_BGR2RGB)
    order = [k for k, c in enumerate(clips) if c.split == "train"]
    order += [k for k, c in enumerate(clips) if c.split == "val"]
    offsets = np.cumsum([0] + [m["frames"] for m in info["clips"]])
    writer = SubjectWriter(out_dir, fps=fps, height=size, width=size, focal=float(fit["focal"]),
                           source=source, overwrite=os.path.isdir(out_dir))  # fmt: skip
    segmenter = mask_lib.PersonSegmenter()
    val_start, eyes, index = None, [], []
    try:
        for k in order:
            c = clips[k]
            if c.split == "val" and val_start is None:
                val_start = len(writer)
            frames = video_lib.read_frames(c.video, fps=fps, size=size, crop=box["box"])
            label = f"write {order.index(k) + 1}/{len(clips)}"
            for j, image in enumerate(tqdm(frames, desc=label, unit="fr", disable=not progress)):
                i = offsets[k] + j
                if i >= offsets[k + 1]:
                    raise PreprocessError(f"{c.video}: more frames on the second decode")
                pts = fit["landmarks"][i]
                m = mask_lib.region_masks(image, pts, segmenter(image))
                eyes.append(mask_lib.eye_boxes(pts))
                index.append(i)
                writer.add_frame(
                    image, viewmat=fit["viewmats"][i],
                    masks={n: m[n] for n in ("face", "mouth", "teeth", "hair", "neck", "torso")},
                    gt_image=mask_lib.composite_gt(image, m["person"], bg),
                    landmarks68=lm_lib.to_dlib68(pts[:, :2]), landmarks=pts[:, :2],
                    aus={"AU45_r": float(fit["au45"][i])}, emotion=c.emotion,
                    intensity=c.intensity if c.emotion else None, exp=fit["exp"][i],
                )  # fmt: skip
        if len(writer) != info["frames"]:
            raise PreprocessError(f"second decode gave {len(writer)} frames, not {info['frames']}")
    finally:
        segmenter.close()
    writer.set_background(bg)
    writer.set_audio(_reordered_audio(work, offsets, order, fps), video_lib.AUDIO_RATE)
    for name in ("exp_mean", "exp_basis", "exp_std"):
        writer.add_array(name, fit[name])
    writer.add_array("canonical_shape", pose_lib.world_shape(fit["canon"]))
    writer.add_array("eye_boxes", np.stack(eyes))
    writer.add_array("source_frame", np.array(index, np.int32))
    missing = np.nonzero(~tr["found"])[0]
    writer.add_metadata(preprocess={
        "digest": params["digest"], "crop": box["box"], "auto_crop": box["auto"],
        "clips": [dataclasses.asdict(c) for c in clips], "clip_order": order,
        "interpolated": lm_lib.frame_ranges(missing),
        "multiple_faces": lm_lib.frame_ranges(np.nonzero(tr["multi"])[0]),
        "reprojection_px": float(np.mean(fit["reproj"])),
        "background_inpainted": float(1 - tr["bg_seen"].mean()),
    })  # fmt: skip
    writer.finish(val_start=val_start)


def _reordered_audio(work, offsets, order, fps) -> np.ndarray:
    import soundfile

    wav, _ = soundfile.read(os.path.join(work, "aud.wav"), dtype="float32")
    per_frame = video_lib.AUDIO_RATE / fps
    parts = [wav[round(offsets[k] * per_frame) : round(offsets[k + 1] * per_frame)]
             for k in order]  # fmt: skip
    return np.concatenate(parts)
