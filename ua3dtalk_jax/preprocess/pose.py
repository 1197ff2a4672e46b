"""Head pose as a rigid fit of MediaPipe's 3D landmarks to the subject's canonical shape → cameras.

Canonical shape (generalised Procrustes, as in statistical shape models): every frame's 478
points are aligned to the current mean with a similarity transform (Umeyama), the aligned frames
are averaged, and this repeats. After the first round the fit uses only the RIGID_FRACTION of
points that move least once pose is removed (forehead, nose bridge, temples — data-driven rather
than a fixed list), so talking and blinking do not tilt the estimated head.

Frames. "cam-like" coordinates are MediaPipe's (x right, y down, z forward; see landmarks.py). The
canonical shape in world coordinates is rotated 180° about x (x right, y up, z toward the viewer,
as the BFM head of ER-NeRF) and scaled so that the cheek-to-cheek width (points 234-454) is
FACE_WIDTH; the head sits at the origin and the camera moves, as in the TalkingGaussian layout.

Landmarks are first unprojected with the focal f (`unproject`: the face sits at depth f in px
units), so the shapes being averaged are perspective-correct. Per frame, the similarity fit
s·R·X + t of the canonical to the unprojected points gives the pose [R | t/s] in world units, which
`cv2.solvePnP` then refines on the 2D points. viewmat = [R·F | T] (F = diag(1,−1,−1)).

Focal length: searched like ER-NeRF's tracker (which tries 600..1400 px at 512²) over a grid of
f/W, scoring how far the unprojected frames are from one rigid shape (Procrustes residual of the
rigid points), then refined by a parabola through the best grid point and its neighbours.
"""

from __future__ import annotations

import cv2
import numpy as np

FACE_WIDTH = 0.14  # world units: ~14 cm bizygomatic width, so the head fits the ±0.15 hexplane box
CHEEKS = (234, 454)
N_FACE_POINTS = 468  # the irises (468-477) move with gaze, never part of the rigid set
RIGID_FRACTION = 0.25
PROCRUSTES_ROUNDS = 4
MAX_CANON_FRAMES = 600  # frames (evenly spaced) used to build the canonical shape
FOCAL_GRID = np.linspace(0.8, 5.0, 22)  # f / W; a 512² crop at f/W = 2.3 is ER-NeRF's ~1200 px
MAX_FOCAL_FRAMES = 60
FLIP = np.diag([1.0, -1.0, -1.0])  # cam-like canonical ↔ world (a 180° rotation about x)


def umeyama(src: np.ndarray, dst: np.ndarray, with_scale: bool = True):
    """Least-squares similarity dst ≈ s·R·src + t (Umeyama 1991).

    Args:
      src, dst: (P, 3) corresponding points.
      with_scale: fit s (else s = 1).

    Returns:
      s (float), R (3, 3) proper rotation, t (3,).
    """
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    a, b = src - mu_s, dst - mu_d
    u, sig, vt = np.linalg.svd(b.T @ a / len(src))
    d = np.ones(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[2] = -1
    rot = u @ np.diag(d) @ vt
    s = float((sig * d).sum() / (a**2).sum(1).mean()) if with_scale else 1.0
    return s, rot, mu_d - s * rot @ mu_s


def canonical_shape(landmarks: np.ndarray):
    """The subject's mean pose-free shape by generalised Procrustes.

    Args:
      landmarks: (N, 478, 3) smoothed landmarks (px, cam-like).

    Returns:
      canon: (478, 3) cam-like canonical shape, centred on its rigid points, scaled to FACE_WIDTH.
      rigid: (R,) int indices of the rigid points.
    """
    n = len(landmarks)
    sample = np.asarray(landmarks, np.float64)[
        np.linspace(0, n - 1, min(n, MAX_CANON_FRAMES)).astype(int)
    ]
    canon, rigid = sample[0].copy(), np.arange(N_FACE_POINTS)
    for _ in range(PROCRUSTES_ROUNDS):
        aligned = align_to(sample, canon, rigid)
        canon = aligned.mean(0)
        resid = ((aligned - canon) ** 2).sum(-1).mean(0)[:N_FACE_POINTS]
        rigid = np.argsort(resid)[: int(RIGID_FRACTION * N_FACE_POINTS)]
        canon = canon - canon[rigid].mean(0)
        canon *= FACE_WIDTH / np.linalg.norm(canon[CHEEKS[0]] - canon[CHEEKS[1]])
    return canon.astype(np.float32), np.sort(rigid)


def align_to(landmarks: np.ndarray, canon: np.ndarray, rigid: np.ndarray) -> np.ndarray:
    """Removes pose: each frame mapped onto `canon` by the similarity fitted on `rigid` points.

    Args:
      landmarks: (N, 478, 3); canon: (478, 3); rigid: (R,) indices.

    Returns:
      (N, 478, 3) float64 pose-free landmarks in canonical units.
    """
    out = np.empty(np.shape(landmarks), np.float64)
    for i, pts in enumerate(np.asarray(landmarks, np.float64)):
        s, rot, t = umeyama(pts[rigid], canon[rigid])
        out[i] = s * pts @ rot.T + t
    return out


def world_shape(canon: np.ndarray) -> np.ndarray:
    """Cam-like canonical (478, 3) → world coordinates (x right, y up, z toward the viewer)."""
    return (np.asarray(canon, np.float64) @ FLIP).astype(np.float32)


def unproject(landmarks: np.ndarray, focal: float, size) -> np.ndarray:
    """Landmarks (u, v, z) → camera-space points in "pixel units at the face".

    A face at depth D world units seen with focal f has a scale of f/D px per unit, so measured
    in px units it always sits at depth f; MediaPipe's z (px, relative to the face) adds to that.

    Args:
      landmarks: (..., 478, 3) px; focal: px; size: (H, W).

    Returns:
      (..., 478, 3) float64 camera-space points (OpenCV axes).
    """
    h, w = size
    lm = np.asarray(landmarks, np.float64)
    depth = focal + lm[..., 2]
    x = (lm[..., 0] - w / 2) * depth / focal
    y = (lm[..., 1] - h / 2) * depth / focal
    return np.stack([x, y, depth], -1)


def _intrinsics(focal: float, width: int, height: int) -> np.ndarray:
    return np.array([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1]], np.float64)


def fit_pose(cam: np.ndarray, pts2d: np.ndarray, canon: np.ndarray, rigid, focal: float, size):
    """One frame's world→camera pose.

    Args:
      cam: (478, 3) unprojected landmarks (px units); pts2d: (478, 2) image landmarks (px).
      canon: (478, 3) cam-like canonical; rigid: (R,) indices; focal: px; size: (H, W).

    Returns:
      (viewmat (4, 4) float64 world→camera OpenCV, rms reprojection error of the rigid points, px).
    """
    h, w = size
    s, rot, t = umeyama(canon[rigid], cam[rigid])
    r_world = rot @ FLIP
    world = world_shape(canon)[rigid].astype(np.float64)
    k = _intrinsics(focal, w, h)
    rvec0, tvec0 = cv2.Rodrigues(r_world)[0], (t / s).reshape(3, 1)
    ok, rvec, tvec = cv2.solvePnP(
        world,
        pts2d[rigid].astype(np.float64),
        k,
        None,
        rvec0.copy(),
        tvec0.copy(),
        True,
        cv2.SOLVEPNP_ITERATIVE,
    )
    if not ok:
        rvec, tvec = rvec0, tvec0
    proj = cv2.projectPoints(world, rvec, tvec, k, None)[0][:, 0]
    err = float(np.sqrt(((proj - pts2d[rigid]) ** 2).sum(1).mean()))
    view = np.eye(4)
    view[:3, :3] = cv2.Rodrigues(rvec)[0]
    view[:3, 3] = np.ravel(tvec)
    return view, err


def _procrustes_residual(cam: np.ndarray, rigid: np.ndarray) -> float:
    """Mean residual (relative to shape size) of rigid points after aligning frames to their mean."""
    canon = cam[0]
    for _ in range(2):
        aligned = align_to(cam, canon, rigid)
        canon = aligned.mean(0)
    spread = np.sqrt(((canon[rigid] - canon[rigid].mean(0)) ** 2).sum(1).mean())
    return float(np.sqrt(((aligned[:, rigid] - canon[rigid]) ** 2).sum(-1).mean()) / spread)


def estimate_focal(landmarks: np.ndarray, rigid: np.ndarray, size) -> float:
    """Focal length (px) under which the unprojected frames are most nearly one rigid shape.

    With the wrong focal, perspective distorts each pose differently, so the Procrustes residual
    of the rigid points over sampled frames is smallest at the true focal (a clip without head
    rotation gives a flat curve: the search then stops at a grid end; see FOCAL_GRID).

    Args:
      landmarks: (N, 478, 3) px; rigid: (R,) indices; size: (H, W).

    Returns:
      fx = fy in px.
    """
    _h, w = size
    idx = np.linspace(0, len(landmarks) - 1, min(len(landmarks), MAX_FOCAL_FRAMES)).astype(int)
    sample = np.asarray(landmarks, np.float64)[idx]
    errs = np.array(
        [_procrustes_residual(unproject(sample, r * w, size), rigid) for r in FOCAL_GRID]
    )
    k = int(np.argmin(errs))
    ratio = FOCAL_GRID[k]
    if 0 < k < len(FOCAL_GRID) - 1:
        e0, e1, e2 = errs[k - 1 : k + 2]
        denom = e0 - 2 * e1 + e2
        if denom > 0:
            step = FOCAL_GRID[1] - FOCAL_GRID[0]
            ratio = FOCAL_GRID[k] + 0.5 * step * (e0 - e2) / denom
    return float(ratio * w)


def fit_poses(landmarks: np.ndarray, focal: float, size):
    """Canonical shape and every frame's world→camera pose for a given focal.

    Args:
      landmarks: (N, 478, 3) px; focal: px; size: (H, W).

    Returns:
      dict(viewmats (N, 4, 4) float32, reproj (N,) px, canon (478, 3) cam-like, rigid (R,),
      posefree (N, 478, 3) float64 pose-free landmarks in canonical units).
    """
    cam = unproject(landmarks, focal, size)
    canon, rigid = canonical_shape(cam)
    lms = np.asarray(landmarks, np.float64)
    out = [fit_pose(c, p[:, :2], canon, rigid, focal, size) for c, p in zip(cam, lms)]
    return {
        "viewmats": np.stack([v for v, _ in out]).astype(np.float32),
        "reproj": np.array([e for _, e in out]),
        "canon": canon,
        "rigid": rigid,
        "posefree": align_to(cam, canon, rigid),
    }
