"""Where the head looks during inference: cameras, blink AUs and torso frames for new audio.

New audio has no video, so each rendered frame t borrows from the subject's held-out ("val") frames:

    "val"     frame t uses val frame pingpong(t) — its camera (viewmat, K), its blink/brow AUs
              (au_exp) and its torso-over-background image — so a clip of any length plays the
              held-out head motion forward, backward, forward …, with no jump at the turns.
    "static"  every frame uses the first val frame (camera, AUs and torso fixed).
    FILE      cameras from a file, cycled the same ping-pong way; AUs and torso still follow the
              val frames (the torso image is the subject's, drawn for its own pose):
                *.npy   (P, 4, 4) float world→camera matrices, OpenCV axes (x right, y down,
                        z forward) — the project's `viewmat`;
                *.json  a TalkingGaussian/NeRF transforms file: {"frames": [{"transform_matrix":
                        4×4 camera→world, OpenGL axes (x right, y up, z backward)}, ...]}, as in
                        the subject's transforms_val.json (converted with `data.cameras`).
              K is always the subject's (a file's focal_len is ignored).

pingpong(t, M) = 0, 1, …, M−1, M−2, …, 1, 0, 1, … (period 2M − 2; M = 1 gives 0).
"""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np

from ua3dtalk_jax.data.cameras import c2w_gl_from_viewmat, viewmat_from_c2w_gl

MODES = ("val", "static")


def pingpong(t: int, m: int) -> int:
    """Index t of the sequence 0 … m−1 … 0 … repeated (see the module docstring)."""
    if m <= 0:
        raise ValueError(f"pingpong needs m ≥ 1, got {m}")
    if m == 1:
        return 0
    k = int(t) % (2 * m - 2)
    return k if k < m else 2 * m - 2 - k


@dataclasses.dataclass(frozen=True)
class PoseSchedule:
    """Frame t → pose dict (`infer.trained_model.frame_conditioning`'s `pose`).

    Attributes:
      positions: (M,) subject frame positions lending au_exp and background (and the camera
        unless `viewmats` is given).
      viewmats: None, or (P, 4, 4) float32 world→camera matrices from a file.
      name: the --poses value it was built from.
    """

    positions: np.ndarray
    viewmats: np.ndarray | None
    name: str

    def __call__(self, subject, t: int) -> dict:
        pos = int(self.positions[pingpong(t, len(self.positions))])
        out = subject.frame(pos, keys=("viewmat", "K", "au_exp", "background"))
        if self.viewmats is not None:
            out["viewmat"] = self.viewmats[pingpong(t, len(self.viewmats))].copy()
        return out


def pose_schedule(subject, poses: str = "val") -> PoseSchedule:
    """The pose schedule of a --poses value: "val", "static" or a .npy/.json file.

    Raises:
      ValueError, FileNotFoundError: an unknown value, a subject without held-out frames, or a
        malformed pose file (named, with the shape or key at fault).
    """
    val = np.asarray(subject.split("val"))
    if len(val) == 0:
        raise ValueError(f"{subject.path}: no held-out (val) frames to take poses from")
    if poses == "val":
        return PoseSchedule(val, None, poses)
    if poses == "static":
        return PoseSchedule(val[:1], None, poses)
    return PoseSchedule(val, read_viewmats(poses), poses)


def read_viewmats(path: str) -> np.ndarray:
    """World→camera (OpenCV) matrices from a pose file (formats in the module docstring).

    Returns:
      (P, 4, 4) float32, P ≥ 1.
    Raises:
      ValueError, FileNotFoundError naming `--poses=path`.
    """
    ext = os.path.splitext(path)[1].lower()
    if ext not in (".npy", ".json"):
        raise ValueError(f"--poses={path}: expected 'val', 'static' or a .npy / .json file")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--poses={path}: file not found")
    if ext == ".npy":
        try:
            mats = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as e:
            raise ValueError(f"--poses={path}: unreadable .npy ({e})") from None
        if mats.ndim != 3 or mats.shape[1:] != (4, 4) or len(mats) == 0:
            raise ValueError(f"--poses={path}: shape {mats.shape}, expected (P, 4, 4) world→camera")
        if not np.issubdtype(mats.dtype, np.floating) and not np.issubdtype(mats.dtype, np.integer):
            raise ValueError(f"--poses={path}: dtype {mats.dtype}, expected float matrices")
        mats = mats.astype(np.float64)
        _check_rigid(path, mats)
        return mats.astype(np.float32)
    try:
        with open(path) as f:
            doc = json.load(f)
        c2w = np.asarray([fr["transform_matrix"] for fr in doc["frames"]], np.float64)
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(
            f"--poses={path}: not a transforms file with frames[].transform_matrix "
            f"({type(e).__name__}: {e})"
        ) from None
    if c2w.ndim != 3 or c2w.shape[1:] != (4, 4) or len(c2w) == 0:
        raise ValueError(
            f"--poses={path}: transform_matrix entries have shape {c2w.shape[1:]} "
            f"over {len(c2w)} frames, expected ≥ 1 of (4, 4)"
        )
    _check_rigid(path, c2w)
    return viewmat_from_c2w_gl(c2w)


def _check_rigid(path: str, mats: np.ndarray) -> None:
    if not np.all(np.isfinite(mats)):
        raise ValueError(f"--poses={path}: non-finite matrix entries")
    if not np.allclose(mats[:, 3], [0.0, 0.0, 0.0, 1.0], atol=1e-6):
        raise ValueError(f"--poses={path}: the last row of every matrix must be [0, 0, 0, 1]")
    try:
        c2w_gl_from_viewmat(mats)  # raises unless every rotation block is orthonormal
    except ValueError as e:
        raise ValueError(f"--poses={path}: {e}") from None
