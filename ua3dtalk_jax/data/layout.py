"""The subject directory layout: file names, the parsing colour code, au.csv, our label files.

TalkingGaussian / ER-NeRF files (read unchanged; written by `writer.py` the same way):

    transforms_train.json, transforms_val.json   focal_len, cx, cy, frames[{img_id, aud_id,
                                                 transform_matrix (4x4 camera-to-world, OpenGL)}]
    ori_imgs/<id>.jpg, ori_imgs/<id>.lms         frame; 68 landmarks as text, x=col then y=row
    gt_imgs/<id>.jpg                             supervision target (background replaced by bc.jpg)
    parsing/<id>.png                             colour-coded regions (PARSING_COLORS)
    torso_imgs/<id>.png                          RGBA torso + neck
    teeth_mask/<id>.npy                          (H, W) bool (optional; absent = no teeth)
    bc.jpg, au.csv, aud.wav, aud_ds.npy / aud_hu.npy / aud_eo.npy
    track_params.pt                              BFM-2009 face tracker output (torch dict): id
                                                 [1, 100], exp [N, 79], euler [N, 3], trans [N, 3],
                                                 focal [1]; row k = ori_imgs/<k>.jpg = img_id k
                                                 (the tracker runs over all frames; save_transforms
                                                 writes img_id = row). Its `exp` is f_gt-exp when
                                                 exp_coeffs.npy is absent (`read_track_exp`); the
                                                 writer writes exp_coeffs.npy, not this file.

UA-3DTalk's per-frame extras (optional; torch files, read without torch by `torch_file.py`; entry k
belongs to the k-th frame of the matching transforms json, by position, not img_id):

    train_auds_exp.pth, val_auds_exp.pth          f_exp, 64 per frame ([64] or [1, 64] entries)
    train_audiostyle.pth, val_audiostyle.pth      f_tone, 64 per frame
    mser_emotion_train.pth, mser_emotion_val.pth  f_emo (CA-MSER embedding), [1, 128] per frame

Our additions (all optional; documented in DESIGN §3 "Subject directory"):

    subject.json        format, version, fps, size, focal, frame count, source, image extension,
                        which optional files exist, free metadata. Written last by the writer.
    .ua3d_incomplete    marker present while the writer runs; a dir holding it is never loaded.
    aud_mel.npy/.json   default f_audio windows (N, 16, 32) and the parameters they were made with.
    emotion.csv         `frame,emotion,intensity` — an EMOTIONS name (empty = unlabelled) and 1-3.
    exp_coeffs.npy      (N, E) float32 f_gt-exp (the Prior Extraction target); takes precedence
                        over track_params.pt's `exp`.
    landmarks.npy       (N, L, 2) float32 dense 2D landmarks, x = col, y = row.
    mouth_boxes.npy     (N, 5) int32 [rmin, rmax, cmin, cmax, opening] from the mouth mask, written
                        only for subjects without 68-point .lms files.
    <name>.npy          subject-level arrays from `SubjectWriter.add_array`, listed in subject.json.

Frames are indexed by img_id; our per-frame files have one row per img_id 0..N-1.
"""

from __future__ import annotations

import csv

import numpy as np

from ua3dtalk_jax.data.torch_file import read_torch_file
from ua3dtalk_jax.types import EMOTIONS

TRANSFORMS = {"train": "transforms_train.json", "val": "transforms_val.json"}
ORI_DIR, GT_DIR, PARSING_DIR = "ori_imgs", "gt_imgs", "parsing"
TORSO_DIR, TEETH_DIR = "torso_imgs", "teeth_mask"
BACKGROUND, AU_CSV, WAV = "bc.jpg", "au.csv", "aud.wav"
SUBJECT_JSON, INCOMPLETE = "subject.json", ".ua3d_incomplete"
EMOTION_CSV, EXP_NPY, LANDMARKS_NPY = "emotion.csv", "exp_coeffs.npy", "landmarks.npy"
TRACK_PARAMS = "track_params.pt"  # TalkingGaussian's tracker output; its `exp` is f_gt-exp
MOUTH_BOXES = "mouth_boxes.npy"  # (N, 5) int32 lips_rect + opening, when there are no .lms
MEL_FEATURE = "aud_mel"  # stem of our cached f_audio windows
# UA-3DTalk extras: name -> (train file, val file, width per frame).
UA_EXTRAS = {
    "f_exp": ("train_auds_exp.pth", "val_auds_exp.pth", 64),
    "f_tone": ("train_audiostyle.pth", "val_audiostyle.pth", 64),
    "f_emo": ("mser_emotion_train.pth", "mser_emotion_val.pth", 128),
}

FORMAT_NAME, FORMAT_VERSION = "ua3dtalk-subject", 1

# Parsing colours as RGB (BiSeNet writes BGR with cv2; TalkingGaussian reads RGB with PIL).
PARSING_COLORS = {
    "face": (0, 0, 255),
    "mouth": (100, 100, 100),
    "neck": (0, 255, 0),
    "torso": (255, 0, 0),
    "hair": (0, 0, 0),
    "background": (255, 255, 255),
}
# Writer precedence where masks overlap, highest first. Teeth are painted as face so that the
# loader's face = blue XOR teeth excludes them and mouth = grey OR teeth includes them.
MASK_PRECEDENCE = ("teeth", "mouth", "face", "hair", "neck", "torso")

# OpenFace 2.x FeatureExtraction -aus columns (names written with a leading space after the first).
_AU_IDS = ("01", "02", "04", "05", "06", "07", "09", "10", "12", "14", "15", "17", "20", "23", "25")
AU_R = tuple(f"AU{a}_r" for a in _AU_IDS + ("26", "45"))
AU_C = tuple(f"AU{a}_c" for a in _AU_IDS + ("26", "28", "45"))
AU_EXP = ("AU01_r", "AU04_r", "AU05_r", "AU06_r", "AU07_r", "AU45_r")

LIPS, INNER_MOUTH = slice(48, 60), slice(60, 68)  # 68-point (iBUG) landmark ranges


def split_point(n: int) -> int:
    """ER-NeRF's split: train = [0, int(n·10/11)), val = the rest."""
    return int(n * 10 / 11)


def encode_parsing(masks: dict, height: int, width: int) -> np.ndarray:
    """(H, W) bool masks → (H, W, 3) uint8 RGB parsing image (MASK_PRECEDENCE on overlaps)."""
    unknown = set(masks) - set(MASK_PRECEDENCE)
    if unknown:
        raise ValueError(f"unknown mask names {sorted(unknown)}; allowed {MASK_PRECEDENCE}")
    out = np.empty((height, width, 3), np.uint8)
    out[:] = PARSING_COLORS["background"]
    for name in reversed(MASK_PRECEDENCE):
        if name in masks:
            m = np.asarray(masks[name], bool)
            if m.shape != (height, width):
                raise ValueError(f"mask {name!r} has shape {m.shape}, expected {(height, width)}")
            out[m] = PARSING_COLORS["face" if name == "teeth" else name]
    return out


def decode_parsing(rgb: np.ndarray, teeth: np.ndarray) -> dict:
    """TalkingGaussian's per-frame masks from a parsing image (its exact comparisons).

    Args:
      rgb: (H, W, 3) uint8 parsing image in RGB.
      teeth: (H, W) bool teeth mask.

    Returns:
      dict of (H, W) bool: face (blue XOR teeth), mouth (grey OR teeth), hair, head (face | hair),
      neck, torso, teeth.
    """
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    face = ((b > 254) & (r == 0) & (g == 0)) ^ teeth
    hair = (r < 1) & (g < 1) & (b < 1)
    mouth = ((r == 100) & (g == 100) & (b == 100)) | teeth
    neck = (g > 254) & (r == 0) & (b == 0)
    torso = (r > 254) & (g == 0) & (b == 0)
    return {
        "face_mask": face,
        "mouth_mask": mouth,
        "hair_mask": hair,
        "head_mask": face | hair,
        "neck_mask": neck,
        "torso_mask": torso,
        "teeth_mask": teeth,
    }


def write_au_csv(path: str, values: np.ndarray, fps: float) -> None:
    """Writes an OpenFace-style au.csv: header `frame, face_id, timestamp, ...` (leading spaces).

    Args:
      values: (N, len(AU_R)) intensities in AU_R order; the _c columns are AU_r > 0.5 (OpenFace
        computes them with a separate classifier; nothing here reads them).
    """
    header = ["frame", "face_id", "timestamp", "confidence", "success", *AU_R, *AU_C]
    r_names = [c.replace("_c", "_r") for c in AU_C]
    c_of_r = [AU_R.index(r) if r in AU_R else -1 for r in r_names]
    with open(path, "w") as f:
        f.write(", ".join(header) + "\n")
        for i, row in enumerate(np.asarray(values, np.float64)):
            fields = [str(i + 1), "0", f"{i / fps:.3f}", "0.98", "1"]
            fields += [f"{v:.2f}" for v in row]
            fields += [f"{float(k >= 0 and row[k] > 0.5):.2f}" for k in c_of_r]
            f.write(", ".join(fields) + "\n")


def read_au_csv(path: str) -> dict:
    """Reads au.csv into {stripped column name: (N,) float64}; names with or without the space."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise ValueError(f"{path}: empty au.csv")
    names = [n.strip() for n in rows[0]]
    try:
        data = np.array([[float(v) for v in r] for r in rows[1:] if r], np.float64)
    except ValueError as e:
        raise ValueError(f"{path}: non-numeric value in au.csv ({e})") from None
    data = data.reshape(-1, len(names))
    return {n: data[:, k] for k, n in enumerate(names)}


def write_emotion_csv(path: str, labels: list, intensities: list) -> None:
    """Writes emotion.csv: one `img_id,name,intensity` row per frame ('' and 0 when unlabelled)."""
    with open(path, "w") as f:
        f.write("frame,emotion,intensity\n")
        rows = enumerate(zip(labels, intensities))
        f.writelines(f"{i},{name or ''},{int(level or 0)}\n" for i, (name, level) in rows)


def read_emotion_csv(path: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Reads emotion.csv → (labels (n,) int32 index into EMOTIONS or −1, intensity (n,) int32).

    Raises:
      ValueError naming the file and line for an unknown emotion, a bad intensity or frame id.
    """
    labels = np.full(n, -1, np.int32)
    levels = np.zeros(n, np.int32)
    with open(path, newline="") as f:
        reader = csv.reader(f)
        next(reader, None)
        for line, row in enumerate(reader, start=2):
            if not row:
                continue
            try:
                frame, name, level = int(row[0]), row[1].strip().lower(), int(row[2])
            except (ValueError, IndexError):
                raise ValueError(f"{path}:{line}: malformed row {row!r}") from None
            if not 0 <= frame < n:
                raise ValueError(f"{path}:{line}: frame {frame} outside 0..{n - 1}")
            if name and name not in EMOTIONS:
                raise ValueError(f"{path}:{line}: unknown emotion label {name!r}; known {EMOTIONS}")
            if (name and not 1 <= level <= 3) or (not name and level != 0):
                raise ValueError(f"{path}:{line}: intensity {level} invalid for label {name!r}")
            labels[frame] = EMOTIONS.index(name) if name else -1
            levels[frame] = level
    return labels, levels


def read_lms(path: str) -> np.ndarray:
    """Reads an ER-NeRF .lms file: (68, 2) float32, x = col, y = row."""
    try:
        arr = np.loadtxt(path, dtype=np.float32)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: landmark file not found") from None
    except ValueError as e:
        raise ValueError(f"{path}: unreadable landmarks ({e})") from None
    if arr.shape != (68, 2):
        raise ValueError(f"{path}: expected 68x2 landmarks, got shape {arr.shape}")
    return arr


def read_track_exp(path: str, min_rows: int) -> np.ndarray:
    """f_gt-exp from TalkingGaussian's track_params.pt: its `exp` BFM-2009 coefficients.

    Args:
      path: the track_params.pt (a torch dict, read without torch).
      min_rows: rows needed, max img_id + 1 (row k belongs to img_id k).

    Returns:
      (R, E) float32, R ≥ min_rows; E = 79 for the BFM-2009 tracker.

    Raises:
      ValueError naming the file for a non-dict, a missing `exp`, an `exp` that is not a finite
      2-D numeric array, or too few rows for the transforms' img_ids.
    """
    obj = read_torch_file(path)
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected the face tracker's dict, got {type(obj).__name__}")
    if "exp" not in obj:
        raise ValueError(f"{path}: no 'exp' entry (keys {sorted(map(str, obj))})")
    exp = obj["exp"]
    if not isinstance(exp, np.ndarray) or exp.ndim != 2 or exp.shape[1] == 0:
        shape = getattr(exp, "shape", type(exp).__name__)
        raise ValueError(f"{path}: 'exp' is {shape}, expected an [N, 79] tensor (N frames)")
    if not np.issubdtype(exp.dtype, np.number):
        raise ValueError(f"{path}: 'exp' has dtype {exp.dtype}, expected floats")
    if len(exp) < min_rows:
        raise ValueError(
            f"{path}: 'exp' has {len(exp)} rows but the transforms json go up to img_id "
            f"{min_rows - 1} (one row per ori_imgs frame)"
        )
    exp = exp.astype(np.float32)
    if not np.isfinite(exp).all():
        raise ValueError(f"{path}: 'exp' holds non-finite values")
    return exp


def lips_rects(lms: np.ndarray) -> np.ndarray:
    """TalkingGaussian's square lip box around landmarks 48-59.

    Args:
      lms: (N, 68, 2) landmarks (x = col, y = row).

    Returns:
      (N, 4) int32 [rmin, rmax, cmin, cmax]: centre of the int-truncated bbox, half side
      max(extent) // 2 (integer arithmetic as the original).
    """
    lips = lms[:, LIPS]
    rmin, rmax = lips[..., 1].min(-1).astype(np.int64), lips[..., 1].max(-1).astype(np.int64)
    cmin, cmax = lips[..., 0].min(-1).astype(np.int64), lips[..., 0].max(-1).astype(np.int64)
    rc, cc = (rmin + rmax) // 2, (cmin + cmax) // 2
    half = np.maximum(rmax - rmin, cmax - cmin) // 2
    return np.stack([rc - half, rc + half, cc - half, cc + half], -1).astype(np.int32)


def mouth_openings(lms: np.ndarray) -> np.ndarray:
    """Inner-lip vertical opening: int(max row) − int(min row) over landmarks 60-67 → (N,) float32."""
    rows = lms[:, INNER_MOUTH, 1]
    return (rows.max(-1).astype(np.int64) - rows.min(-1).astype(np.int64)).astype(np.float32)
