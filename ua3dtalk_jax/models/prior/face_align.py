"""Deep3DFaceRecon's 5-point face alignment (`align_img` of its util/preprocess.py), numpy + cv2.

Five points (image-left eye centre, image-right eye centre, nose tip, left and right mouth
corner) come from the project's face mesh: the 478-point MediaPipe mesh when the subject has it,
else the 68 iBUG points (`extract_5p`: eye centre = mean of the two eye corners).

With y flipped upwards (y' = H − 1 − y, as Deep3DFaceRecon's `read_data` and SadTalker do), a
least-squares fit (`POS`) of the points to the orthographic projection of a standard 3D face
`LM3D_STD` (5 × 3, BFM units),

    [x; y'] ≈ [r₁ᵀ; r₂ᵀ] · X + t,        s = (‖r₁‖ + ‖r₂‖) / 2,

gives a translation t and scale s. The image is scaled by S = 102 / s (`RESCALE`) to
(⌊W·S⌋, ⌊H·S⌋) and the 224² window (`TARGET`) at

    left = ⌊w/2 − 112 + (tₓ − W/2)·S⌋,     up = ⌊h/2 − 112 + (H/2 − t_y)·S⌋

is cut out (zeros outside), so a frontal face's points land near (112 + 102·X, 111 − 102·Y) in
pixels (`template_points`). No rotation: a rolled head stays rolled, as in the original. PIL's
bicubic resize is replaced by cv2's (INTER_AREA when shrinking, antialiased like PIL; INTER_CUBIC
when enlarging).

Pixel convention: cv2's (x = col, y = row, integer coordinates at pixel centres); `align_face`
also returns the 2×3 affine taking image pixels to aligned pixels, for pasting and landmarks.
"""

from __future__ import annotations

import cv2
import numpy as np

TARGET = 224
RESCALE = 102.0
# Deep3DFaceRecon's load_lm3d: 5 points of BFM's similarity_Lm3D_all.mat (eyes, nose, mouth)
LM3D_STD = np.array(
    [
        [-0.31148657, 0.29036078, 0.13377953],
        [0.30979887, 0.28972036, 0.13179526],
        [0.0032535, -0.04617932, 0.55244243],
        [-0.25216928, -0.38133916, 0.22405732],
        [0.2484662, -0.38128236, 0.22235769],
    ]
)
IBUG_5 = ((36, 39), (42, 45), (30,), (48,), (54,))  # extract_5p's groups, 0-based
# the same points on the MediaPipe mesh (preprocess.landmarks.DLIB68_FROM_MEDIAPIPE's entries)
MEDIAPIPE_5 = ((33, 133), (362, 263), (4,), (61,), (291,))


def five_points(landmarks: np.ndarray) -> np.ndarray:
    """(5, 2) points from (68, ≥2) iBUG or (478, ≥2) MediaPipe landmarks (x = col, y = row).

    Raises:
      ValueError: another number of landmarks.
    """
    lm = np.asarray(landmarks, np.float64)
    groups = {68: IBUG_5, 478: MEDIAPIPE_5}.get(lm.shape[0] if lm.ndim == 2 else -1)
    if groups is None or lm.shape[1] < 2:
        raise ValueError(f"landmarks of shape {lm.shape}: expected (68, 2) or (478, 2)")
    return np.stack([lm[list(g), :2].mean(0) for g in groups])


def pos_fit(points_up: np.ndarray, lm3d: np.ndarray = LM3D_STD) -> tuple[np.ndarray, float]:
    """Deep3DFaceRecon's `POS`: t (2,) and s of [x; y'] ≈ R·X + t, points with y pointing up.

    Args:
      points_up: (5, 2) image points, y' = H − 1 − row.
      lm3d: (5, 3) model points.
    """
    n = len(points_up)
    a = np.zeros((2 * n, 8))
    a[0::2, 0:3], a[0::2, 3] = lm3d, 1.0
    a[1::2, 4:7], a[1::2, 7] = lm3d, 1.0
    k = np.linalg.lstsq(a, np.asarray(points_up, np.float64).reshape(-1), rcond=None)[0]
    s = (np.linalg.norm(k[0:3]) + np.linalg.norm(k[4:7])) / 2.0
    return np.array([k[3], k[7]]), float(s)


def align_params(points: np.ndarray, hw: tuple[int, int]) -> dict:
    """The resize and crop that `align_face` applies to an (H, W) image with 5 `points` (rows
    down): {"scale", "t", "size" (w, h), "left", "up", "affine" (2, 3) image px → aligned px}.

    Raises:
      ValueError: the points are degenerate (no scale: coincident or non-finite points).
    """
    h0, w0 = hw
    p = np.asarray(points, np.float64)
    up_pts = np.stack([p[:, 0], h0 - 1 - p[:, 1]], axis=1)
    t, s = pos_fit(up_pts)
    if not np.isfinite(s) or s <= 1e-9 or not np.all(np.isfinite(t)):
        raise ValueError(f"face alignment: degenerate 5 points {p.round(2).tolist()}")
    scale = RESCALE / s
    w, h = int(w0 * scale), int(h0 * scale)
    left = int(w / 2 - TARGET / 2 + (t[0] - w0 / 2) * scale)  # int(): toward zero, as astype
    up = int(h / 2 - TARGET / 2 + (h0 / 2 - t[1]) * scale)
    sx, sy = w / w0, h / h0  # the resize's own factors (cv2/PIL: pixel centres scale about 0.5)
    affine = np.array([[sx, 0.0, 0.5 * sx - 0.5 - left], [0.0, sy, 0.5 * sy - 0.5 - up]])
    return {"scale": scale, "t": t, "size": (w, h), "left": left, "up": up, "affine": affine}


def align_face(image: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The 224² face that Deep3DFaceRecon's network takes.

    Args:
      image: (H, W, 3) uint8 RGB frame.
      points: (5, 2) `five_points` of that frame (x = col, y = row).
    Returns:
      aligned (224, 224, 3) uint8, and the (2, 3) affine from image pixels to aligned pixels.
    """
    prm = align_params(points, image.shape[:2])
    w, h = prm["size"]
    if w < 1 or h < 1:
        raise ValueError(f"face alignment: a scale of {prm['scale']:.3g} leaves no image")
    interp = cv2.INTER_AREA if prm["scale"] < 1 else cv2.INTER_CUBIC
    big = cv2.resize(np.ascontiguousarray(image), (w, h), interpolation=interp)
    out = np.zeros((TARGET, TARGET, 3), np.uint8)
    x0, y0 = prm["left"], prm["up"]
    xa, ya = max(x0, 0), max(y0, 0)
    xb, yb = min(x0 + TARGET, w), min(y0 + TARGET, h)
    if xa < xb and ya < yb:
        out[ya - y0 : yb - y0, xa - x0 : xb - x0] = big[ya:yb, xa:xb]
    return out, prm["affine"]


def template_points() -> np.ndarray:
    """(5, 2) where a frontal face's 5 points land in the aligned image (x = col, y = row)."""
    return np.stack(
        [TARGET / 2 + RESCALE * LM3D_STD[:, 0], TARGET / 2 - 1 - RESCALE * LM3D_STD[:, 1]], axis=1
    )


def missing_points(hw: tuple[int, int]) -> np.ndarray:
    """Five points for a frame without landmarks: the template spread over the image, as
    SadTalker does for an undetected face (`(lm3d_std[:, :2] + 1) / 2 · (W, H)`)."""
    h, w = hw
    xy = (LM3D_STD[:, :2] + 1.0) / 2.0 * np.array([w, h])
    return np.stack([xy[:, 0], h - 1 - xy[:, 1]], axis=1)  # SadTalker's y is already flipped


def apply_affine(affine: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(..., 2) points through a (2, 3) affine."""
    p = np.asarray(points, np.float64)
    return p @ affine[:, :2].T + affine[:, 2]
