"""Face crops of video frames (Wav2Lip's face box): stage 1's SyncNet and lip-expert input.

The box is a square around the 68 landmarks, its centre and side smoothed over a few frames; the
crop is resampled to the config's `face_size`.
"""

from __future__ import annotations

import cv2
import numpy as np


def face_boxes(landmarks: np.ndarray, scale: float, smooth: int, size: tuple) -> np.ndarray:
    """Square boxes (N, 3) = (centre x, centre y, side) around each frame's 68 landmarks.

    Frames without landmarks (all zeros) get the whole image's central square.
    """
    lm = np.asarray(landmarks, np.float64)
    h, w = size
    lo, hi = lm.min(1), lm.max(1)  # (N, 2)
    centre = (lo + hi) / 2.0
    side = scale * np.max(hi - lo, axis=1)
    missing = ~np.any(lm != 0, axis=(1, 2))
    centre[missing] = (w / 2.0, h / 2.0)
    side[missing] = min(h, w)
    boxes = np.concatenate([centre, side[:, None]], axis=1)
    if smooth > 1 and len(boxes) > 1:
        k = np.ones(smooth) / smooth
        pad = np.pad(boxes, ((smooth // 2, smooth - 1 - smooth // 2), (0, 0)), mode="edge")
        boxes = np.stack([np.convolve(pad[:, j], k, mode="valid") for j in range(3)], axis=1)
    return boxes


def face_crops(images: np.ndarray, landmarks: np.ndarray, data_cfg) -> np.ndarray:
    """(N, H, W, 3) uint8 frames + (N, 68, 2) landmarks → (N, S, S, 3) uint8 face crops.

    `images` may be any sequence with `shape` and iteration (`FrameImages`: one frame at a time).
    """
    s = data_cfg.face_size
    boxes = face_boxes(landmarks, data_cfg.crop_scale, data_cfg.smooth_frames, images.shape[1:3])
    out = np.empty((len(images), s, s, 3), np.uint8)
    for i, (img, (cx, cy, side)) in enumerate(zip(images, boxes)):
        a = s / side  # affine: crop pixel centre (u + 0.5) ↔ image point
        m = np.array([[a, 0.0, s / 2.0 - a * cx], [0.0, a, s / 2.0 - a * cy]], np.float64)
        interp = cv2.INTER_AREA if a < 1 else cv2.INTER_LINEAR
        out[i] = cv2.warpAffine(img, m, (s, s), flags=interp, borderMode=cv2.BORDER_REPLICATE)
    return out
