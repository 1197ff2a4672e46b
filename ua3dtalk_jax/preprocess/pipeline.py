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
file), audio and video that overlap for less than half the longer (checks.py), a face narrower than
checks.MIN_FACE_PX, fewer than `min_frames` frames, or no face in more than `max_missing` of the
frames (listed) raise `PreprocessError` with one line that says why and what to do. The probe and
crop checks run before anything is written (no `<out>.work` either). Up to that fraction, faceless
frames get interpolated landmarks and are listed in subject.json's metadata ("interpolated").
With several faces, the largest is tracked (frames listed as "multiple_faces"). What was adapted
(frames dropped beyond the audio's end, an upscaling --size) is printed, one line each, and kept
in the metadata ("notes").
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil

import numpy as np

from ua3dtalk_jax.data.writer import SubjectWriter
from ua3dtalk_jax.preprocess import checks
from ua3dtalk_jax.preprocess import expression as exp_lib
from ua3dtalk_jax.preprocess import landmarks as lm_lib
from ua3dtalk_jax.preprocess import masks as mask_lib
from ua3dtalk_jax.preprocess import pose as pose_lib
from ua3dtalk_jax.preprocess import video as video_lib
from ua3dtalk_jax.preprocess import workdir as work_lib
from ua3dtalk_jax.preprocess.track import track_clips

MIN_FRAMES = 50  # 2 s at 25 fps: below this the 10/11 split leaves under 5 validation frames
MAX_MISSING = 0.1  # faceless frames tolerated (interpolated) before the clip is refused
CROP_SAMPLES = 16  # frames per clip searched for faces to place the automatic crop
WORK_SUFFIX = ".work"


PreprocessError = checks.PreprocessError


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
    log=print,
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
      log: called with each one-line note (frames dropped, upscaling); None = quiet.

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
    params = work_lib.params(clips, fps, size, crop)
    if work_lib.finished(out_dir, params, overwrite):
        return out_dir
    opts = {"fps": fps, "size": size, "progress": progress, "workers": workers}
    # the checks run before anything is written: a refused clip leaves no <out>.work behind
    cached = work_lib.matches(work, params)
    info = work_lib.cached_json(work, "probe.json", cached) or _probe(clips, fps, min_frames)
    box = work_lib.cached_json(work, "crop.json", cached) or _crop(clips, info, crop, fps, size)
    work_lib.open_work(work, params)
    work_lib.step(work, "probe.json", lambda: info)
    work_lib.step(work, "crop.json", lambda: box)
    notes = info.get("notes", []) + box.get("notes", [])  # work folders of older versions: none
    for note in notes:
        if log is not None:
            log(note)
    try:
        work_lib.step(
            work, "track.npz", lambda: track_clips(clips, info, box, work, max_missing, **opts)
        )
        work_lib.step(work, "fit.npz", lambda: _fit(work, info, size))
        _write(clips, info, box, work, out_dir, params, source, **opts)
    except PreprocessError:  # the input is refused: nothing to resume (a crash keeps the steps)
        shutil.rmtree(work, ignore_errors=True)
        raise
    shutil.rmtree(work, ignore_errors=True)
    return out_dir


# ---- steps --------------------------------------------------------------------------------------


def _probe(clips, fps: float, min_frames: int) -> dict:
    out, notes = [], []
    for c in clips:
        meta = video_lib.probe(c.video)
        if c.split not in ("train", "val"):
            raise PreprocessError(f"{c.video}: split must be 'train' or 'val', got {c.split!r}")
        if c.audio is None and not meta["has_audio"]:
            raise PreprocessError(
                f"{c.video}: no audio track, and the audio drives the model: give the speech "
                f"with --audio=FILE"
            )
        if c.audio is not None and not os.path.isfile(c.audio):
            raise PreprocessError(f"{c.audio}: audio file not found")
        meta["video_frames"] = video_lib.count_frames(c.video, fps=fps)
        if meta["video_frames"] == 0:
            raise PreprocessError(f"{c.video}: no decodable frames")
        meta["audio_s"] = video_lib.audio_seconds(c.audio or c.video)
        meta["frames"], note = checks.frames_to_use(
            c.video, c.audio, meta["video_frames"], meta["audio_s"], fps
        )
        notes += [note] if note else []
        out.append(meta)
    sizes = {(m["width"], m["height"]) for m in out}
    if len(sizes) > 1:
        raise PreprocessError(f"clips differ in frame size {sorted(sizes)}; one crop cannot fit")
    total = sum(m["frames"] for m in out)
    if total < min_frames:
        raise PreprocessError(
            f"{clips[0].video}: {total} frames at {fps:g} fps, fewer than the {min_frames} "
            f"needed to train and validate: use a clip of at least {min_frames / fps:g} s"
        )
    return {"clips": out, "frames": total, "notes": notes}


def _crop(clips, info, crop, fps: float, size: int) -> dict:
    """The crop window; refuses a face narrower than checks.MIN_FACE_PX and notes upscaling."""
    w, h = info["clips"][0]["width"], info["clips"][0]["height"]
    auto = crop is None
    if not auto:
        crop = video_lib.check_crop(crop, w, h)
    scale = min(1.0, 640 / max(w, h))  # detection at ≤ 640 px is plenty for a box
    sw, sh = max(2, int(w * scale) // 2 * 2), max(2, int(h * scale) // 2 * 2)
    boxes = []
    for c, meta in zip(clips, info["clips"]):
        rate = fps * min(1.0, CROP_SAMPLES / meta["frames"])
        stop = math.ceil(meta["frames"] * rate / fps)  # samples from the kept frames only
        for frame in video_lib.read_frames(c.video, fps=rate, size=(sh, sw), stop=stop):
            box = lm_lib.detect_face_box(frame)
            if box is not None:
                boxes.append(box * np.array([w / sw, h / sh, w / sw, h / sh]))
    if not boxes:
        raise PreprocessError(
            f"{clips[0].video}: no face found in any sampled frame; if there is one it may be "
            f"too small: at least {checks.MIN_FACE_PX} px of face width are needed, record closer "
            f"or at a higher resolution"
        )
    width = checks.face_width(boxes)
    notes = [checks.check_face_size(clips[0].video, width, (w, h))]
    if auto:
        crop = video_lib.crop_from_face_boxes(np.array(boxes), w, h)
    notes.append(checks.upscale_note(clips[0].video, crop[2], size))
    return {
        "box": list(crop),
        "auto": auto,
        "face_px": round(width, 1),
        "notes": [n for n in notes if n],
    }


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
    work_lib.save_npz(
        os.path.join(work, "fit.npz"),
        landmarks=lms,
        canon=canon,
        rigid=rigid,
        focal=np.float64(focal),
        viewmats=viewmats,
        reproj=reproj.astype(np.float32),
        exp=exp_lib.project(posefree, mean, basis, std),
        exp_mean=mean,
        exp_basis=basis,
        exp_std=std,
        au45=exp_lib.au45(closure),
    )


def _write(clips, info, box, work, out_dir, params, source, *, fps, size, progress, workers):
    import cv2

    fit = np.load(os.path.join(work, "fit.npz"))
    tr = np.load(os.path.join(work, "track.npz"))
    bg = cv2.cvtColor(cv2.imread(os.path.join(work, "bc.png")), cv2.COLOR_BGR2RGB)
    order = [k for k, c in enumerate(clips) if c.split == "train"]
    order += [k for k, c in enumerate(clips) if c.split == "val"]
    offsets = np.cumsum([0] + [m["frames"] for m in info["clips"]])
    writer = SubjectWriter(
        out_dir,
        fps=fps,
        height=size,
        width=size,
        focal=float(fit["focal"]),
        source=source,
        overwrite=os.path.isdir(out_dir),
    )
    decoded = (clips, info, box, order, offsets)
    val_start, eyes, index = _write_frames(writer, decoded, fit, bg, fps, size, progress)
    writer.set_background(bg)
    writer.set_audio(_reordered_audio(work, offsets, order, fps), video_lib.AUDIO_RATE)
    for name in ("exp_mean", "exp_basis", "exp_std"):
        writer.add_array(name, fit[name])
    writer.add_array("canonical_shape", pose_lib.world_shape(fit["canon"]))
    writer.add_array("eye_boxes", np.stack(eyes))
    writer.add_array("source_frame", np.array(index, np.int32))
    writer.add_metadata(preprocess=_metadata(clips, info, box, order, params, fit, tr))
    writer.finish(val_start=val_start)


def _write_frames(writer, decoded, fit, bg, fps, size, progress):
    """The second decode: every frame, train clips first, masked and added to `writer`.

    Args:
      decoded: (clips, probe info, crop info, clip order, first frame of each clip in the fit).

    Returns:
      (val_start: the writer's first validation frame or None, eye boxes per frame, the fit's
      frame index per frame).
    """
    from tqdm import tqdm

    clips, info, box, order, offsets = decoded
    segmenter = mask_lib.PersonSegmenter()
    val_start, eyes, index = None, [], []
    try:
        for k in order:
            c = clips[k]
            if c.split == "val" and val_start is None:
                val_start = len(writer)
            meta = info["clips"][k]
            frames = video_lib.read_frames(
                c.video,
                fps=fps,
                size=size,
                crop=box["box"],
                stop=meta["frames"],
                display=video_lib.display_size(meta),
            )
            label = f"write {order.index(k) + 1}/{len(clips)}"
            bar = tqdm(
                mask_lib.temporal_person(frames, segmenter),
                desc=label,
                unit="fr",
                total=meta["frames"],
                disable=not progress,
            )
            for j, (image, person_prob) in enumerate(bar):
                i = offsets[k] + j
                if i >= offsets[k + 1]:
                    raise PreprocessError(f"{c.video}: more frames on the second decode")
                pts = fit["landmarks"][i]
                m = mask_lib.region_masks(image, pts, person_prob)
                eyes.append(mask_lib.eye_boxes(pts))
                index.append(i)
                _add_frame(writer, c, image, m, pts, fit, i, bg)
        if len(writer) != info["frames"]:
            raise PreprocessError(f"second decode gave {len(writer)} frames, not {info['frames']}")
    finally:
        segmenter.close()
    return val_start, eyes, index


def _add_frame(writer, clip, image, m, pts, fit, i: int, bg) -> None:
    """Frame i (of the fit) of `clip`: its region masks `m`, landmarks `pts` (478, 3), composited
    over the background plate `bg`."""
    gt = mask_lib.composite_gt(image, m["person"], bg)
    writer.add_frame(
        image,
        viewmat=fit["viewmats"][i],
        masks={n: m[n] for n in ("face", "mouth", "teeth", "hair", "neck", "torso")},
        gt_image=gt,
        torso_rgba=mask_lib.torso_image(gt, m),
        landmarks68=lm_lib.to_dlib68(pts[:, :2]),
        landmarks=pts[:, :2],
        aus={"AU45_r": float(fit["au45"][i])},
        emotion=clip.emotion,
        intensity=clip.intensity if clip.emotion else None,
        exp=fit["exp"][i],
    )


def _metadata(clips, info, box, order, params, fit, tr) -> dict:
    """subject.json's metadata.preprocess: the inputs, the crop and what was adapted."""
    missing = np.nonzero(~tr["found"])[0]
    return {
        "digest": params["digest"],
        "crop": box["box"],
        "auto_crop": box["auto"],
        "clips": [dataclasses.asdict(c) for c in clips],
        "clip_order": order,
        "interpolated": lm_lib.frame_ranges(missing),
        "multiple_faces": lm_lib.frame_ranges(np.nonzero(tr["multi"])[0]),
        "reprojection_px": float(np.mean(fit["reproj"])),
        "background_inpainted": float(1 - tr["bg_seen"].mean()),
        "face_px": box.get("face_px"),
        "notes": info.get("notes", []) + box.get("notes", []),
    }


def _reordered_audio(work, offsets, order, fps) -> np.ndarray:
    import soundfile

    wav, _ = soundfile.read(os.path.join(work, "aud.wav"), dtype="float32")
    per_frame = video_lib.AUDIO_RATE / fps
    parts = [wav[round(offsets[k] * per_frame) : round(offsets[k + 1] * per_frame)] for k in order]
    return np.concatenate(parts)
