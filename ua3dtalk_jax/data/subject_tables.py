"""The small per-frame tables a `Subject` reads once at open, each from its own file.

transforms_{train,val}.json (cameras, img_id / aud_id), au.csv (OpenFace action units),
ori_imgs/*.lms or mouth_boxes.npy (landmarks, lip box, mouth opening), emotion.csv and the
f_gt-exp source (exp_coeffs.npy, else track_params.pt's `exp`), landmarks.npy, subject.json, and
UA-3DTalk's precomputed extras (.pth). Each reader takes the subject directory (or the file) and
returns arrays; every error names the file and the problem. `subject.py` documents what the
arrays mean per frame.
"""

from __future__ import annotations

import json
import os
from typing import NamedTuple

import numpy as np

from ua3dtalk_jax.data import layout
from ua3dtalk_jax.data.cameras import viewmat_from_c2w_gl
from ua3dtalk_jax.data.torch_file import read_torch_file

AU25_CLIP_PERCENTILE = 95


class Transforms(NamedTuple):
    """The frames of transforms_train.json followed by transforms_val.json (N = both)."""

    focal: float  # focal_len in pixels, equal in both files
    img_ids: np.ndarray  # (N,) int64
    aud_ids: np.ndarray  # (N,) int64, img_id where a frame has no aud_id
    viewmats: np.ndarray  # (N, 4, 4) world→camera OpenCV
    n_train: int  # frames of transforms_train.json


class Labels(NamedTuple):
    """Per-img_id labels and targets (num_ids rows)."""

    emotion: np.ndarray  # (num_ids,) int32 EMOTIONS index, −1 unlabelled
    intensity: np.ndarray  # (num_ids,) int32 1-3, 0 unlabelled
    exp: np.ndarray  # (num_ids, E) float32 f_gt-exp, E = 0 without a source
    exp_source: str | None  # the file exp came from
    dense_landmarks: np.ndarray | None  # (num_ids, L, 2) landmarks.npy, memory-mapped


def read_info(path: str) -> dict:
    """subject.json of the subject dir `path` ({} when absent: a plain TalkingGaussian dir)."""
    path = os.path.join(path, layout.SUBJECT_JSON)
    if not os.path.exists(path):
        return {}
    try:
        with open(path) as f:
            info = json.load(f)
    except ValueError as e:
        raise ValueError(f"{path}: malformed json ({e})") from None
    if info.get("format") != layout.FORMAT_NAME:
        raise ValueError(f"{path}: not a {layout.FORMAT_NAME} file")
    if info.get("version", 0) > layout.FORMAT_VERSION:
        raise ValueError(f"{path}: format version {info['version']} is newer than supported")
    return info


def read_transforms(path: str) -> Transforms:
    """Both transforms json files of the subject dir `path`."""
    ids, aud_ids, mats, counts, focals = [], [], [], [], []
    train_json = os.path.join(path, layout.TRANSFORMS["train"])
    for name in (layout.TRANSFORMS["train"], layout.TRANSFORMS["val"]):
        file = os.path.join(path, name)
        if not os.path.exists(file):
            raise FileNotFoundError(f"{file}: missing (required by the TalkingGaussian layout)")
        try:
            with open(file) as f:
                doc = json.load(f)
            focals.append(float(doc["focal_len"]))
            frames = doc["frames"]
            ids += [int(fr["img_id"]) for fr in frames]
            aud_ids += [int(fr.get("aud_id", fr["img_id"])) for fr in frames]
            mats += [np.asarray(fr["transform_matrix"], np.float64) for fr in frames]
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{file}: malformed transforms ({type(e).__name__}: {e})") from None
        counts.append(len(frames))
    if not ids:
        raise ValueError(f"{train_json}: no frames")
    if abs(focals[0] - focals[1]) > 1e-6 * focals[0]:
        raise ValueError(f"{path}: focal_len differs between train and val json")
    if min(ids) < 0 or min(aud_ids) < 0:
        raise ValueError(f"{train_json}: negative frame id")
    return Transforms(
        focal=focals[0],
        img_ids=np.asarray(ids, np.int64),
        aud_ids=np.asarray(aud_ids, np.int64),
        viewmats=viewmat_from_c2w_gl(np.stack(mats)),
        n_train=counts[0],
    )


def read_aus(path: str, max_img_id: int):
    """au.csv → (au_exp (rows, 6) f32, au25 (rows,) f32, au25_stats (p25, p50, p75, max)).

    au_exp's last column (AU45, blink) is clipped to [0, 2]; AU25 to its 95th percentile.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: missing (OpenFace action units, needed for blink)")
    aus = layout.read_au_csv(path)
    for name in (*layout.AU_EXP, "AU25_r"):
        if name not in aus:
            raise ValueError(f"{path}: column ' {name}' missing")
    n_rows = len(aus["AU45_r"])
    if n_rows <= max_img_id:
        raise ValueError(f"{path}: {n_rows} rows but frames go up to img_id {max_img_id}")
    au_exp = np.stack([aus[k] for k in layout.AU_EXP], -1)
    au_exp[:, 5] = np.clip(au_exp[:, 5], 0, 2)
    au25 = aus["AU25_r"]
    au25 = np.clip(au25, 0, np.percentile(au25, AU25_CLIP_PERCENTILE))
    au25_stats = tuple(float(np.percentile(au25, q)) for q in (25, 50, 75)) + (float(au25.max()),)
    return au_exp.astype(np.float32), au25.astype(np.float32), au25_stats


def read_landmarks(path: str, img_ids: np.ndarray, has_lms: bool, n_train: int):
    """(landmarks (N, 68, 2), lips_rect (N, 4) i32, mouth_open (N,) f32, mouth_bounds).

    Rows are frame positions. From the .lms files when the subject has them, else from
    mouth_boxes.npy (zero landmarks); mouth_bounds = (min, max) opening over the train split.
    """
    boxes_path = os.path.join(path, layout.MOUTH_BOXES)
    if has_lms:
        lms = np.stack(
            [layout.read_lms(os.path.join(path, layout.ORI_DIR, f"{i}.lms")) for i in img_ids]
        )
        landmarks, lips_rect, mouth_open = lms, layout.lips_rects(lms), layout.mouth_openings(lms)
    elif os.path.exists(boxes_path):
        boxes = np.load(boxes_path)[img_ids]
        landmarks = np.zeros((len(img_ids), 68, 2), np.float32)
        lips_rect = boxes[:, :4].astype(np.int32)
        mouth_open = boxes[:, 4].astype(np.float32)
    else:
        raise FileNotFoundError(f"{boxes_path}: missing (subject has no .lms landmarks)")
    train_open = mouth_open[:n_train] if n_train else mouth_open
    return landmarks, lips_rect, mouth_open, (float(train_open.min()), float(train_open.max()))


def read_labels(path: str, num_ids: int, img_ids: np.ndarray) -> Labels:
    """emotion.csv, the f_gt-exp source and landmarks.npy of the subject dir `path`."""
    csv = os.path.join(path, layout.EMOTION_CSV)
    if os.path.exists(csv):
        emotion, intensity = layout.read_emotion_csv(csv, num_ids)
    else:
        emotion, intensity = np.full(num_ids, -1, np.int32), np.zeros(num_ids, np.int32)
    exp, exp_source = np.zeros((num_ids, 0), np.float32), None
    if os.path.exists(os.path.join(path, layout.EXP_NPY)):
        exp = per_id_array(os.path.join(path, layout.EXP_NPY), 2, num_ids).astype(np.float32)
        exp_source = layout.EXP_NPY
    elif os.path.exists(os.path.join(path, layout.TRACK_PARAMS)):
        # a plain TalkingGaussian dir: the tracker's BFM exp
        rows = int(img_ids.max()) + 1
        exp = layout.read_track_exp(os.path.join(path, layout.TRACK_PARAMS), rows)
        exp_source = layout.TRACK_PARAMS
    dense = None
    if os.path.exists(os.path.join(path, layout.LANDMARKS_NPY)):
        dense = per_id_array(os.path.join(path, layout.LANDMARKS_NPY), 3, num_ids)
    return Labels(emotion, intensity, exp, exp_source, dense)


def per_id_array(path: str, ndim: int, num_ids: int) -> np.ndarray:
    """A memory-mapped .npy with ≥ num_ids rows (one per img_id) of `ndim` dimensions."""
    try:
        arr = np.load(path, mmap_mode="r")
    except (ValueError, OSError) as e:
        raise ValueError(f"{path}: unreadable array ({e})") from None
    if arr.ndim != ndim or len(arr) < num_ids:
        raise ValueError(
            f"{path}: shape {arr.shape}, expected {ndim}-D with ≥ {num_ids} rows (one per frame)"
        )
    return arr


def ua_rows(path: str, n: int, width: int) -> np.ndarray:
    """A UA extra .pth (a tensor, or a list of [D] / [1, D] tensors) → (n, width) float32."""
    obj = read_torch_file(path)
    if not (isinstance(obj, (list, tuple)) or (isinstance(obj, np.ndarray) and obj.ndim >= 1)):
        kind = type(obj).__name__
        raise ValueError(f"{path}: expected a tensor or a list of tensors, got {kind}")
    try:
        rows = [np.asarray(x, np.float32).reshape(-1) for x in obj]
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: entries are not numeric tensors ({e})") from None
    if len(rows) != n:
        raise ValueError(f"{path}: {len(rows)} entries but its transforms json lists {n} frames")
    bad = next((k for k, r in enumerate(rows) if r.size != width), None)
    if bad is not None:
        raise ValueError(f"{path}: entry {bad} has {rows[bad].size} values, expected {width}")
    return np.stack(rows) if rows else np.zeros((0, width), np.float32)
