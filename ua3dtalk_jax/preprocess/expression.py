"""Expression coefficients (a PCA basis fitted on the subject) and blink (AU45) from the eyes.

Expression (the f_gt-exp stand-in for BFM expression coefficients): pose-free landmarks (pose.py's
`align_to`, canonical units) of the 468 mesh points minus the subject's mean shape, projected on
the top principal components of those residuals over the clip:

    e_i = Bᵀ (x_i − x̄) / σ      B = (3·468, E) orthonormal, σ = (E,) component std devs

so coefficients have unit variance on the subject; components beyond the data's rank (very short
clips) are zero with σ = 1. Reconstruction: x̄ + B (σ ⊙ e). The basis, mean and σ are saved with the
subject (exp_basis.npy, exp_mean.npy, exp_std.npy) so coefficients can be turned back into shapes.

Blink (OpenFace AU45 equivalent): the eye aspect ratio EAR = (|p2 − p6| + |p3 − p5|) / (2 |p1 − p4|)
(Soukupová & Čech 2016) of both eyes, on pose-free landmarks so head turns do not read as blinks.
Closure c = clip((EAR_open − EAR) / D, 0, 1) with D the largest drop below EAR_open over the clip,
but at least MIN_EAR_DROP of EAR_open (a clip without blinks then gives c ≈ 0). EAR_open is the
smaller of two running high percentiles, over the half second before and the half second after
the frame (BASELINE_FRAMES // 2 each side): a blink (a few frames) returns to the open level on both
sides, while a held change of aperture — wide surprised eyes relaxing into a smile's squint — is
at the new level on one side, so it does not read as a blink (a centred window did: on the
synthetic subject such a change gave closure 0.5 for 7 frames, blink F1 0.84 → 1.0).
AU45 = AU45_FULL · c, so TalkingGaussian's blink = clip(AU45, 0, 2) / 2 equals c.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import percentile_filter

EXP_DIM = 64  # the paper's f_exp size (BFM / Deep3DFaceRecon expression coefficients)
N_FACE_POINTS = 468
# (p1 outer/inner corner, p2, p3 upper lid, p4 other corner, p5, p6 lower lid) per eye
EYE_POINTS = ((33, 160, 158, 133, 153, 144), (362, 385, 387, 263, 373, 380))
EAR_OPEN_PERCENTILE = 75  # eyes are open in far more than a quarter of frames
EAR_CLOSED_PERCENTILE = 1
BASELINE_FRAMES = 31  # ~1 s at 25-30 fps: half a second on each side of a frame
MIN_EAR_DROP = 0.35  # a full blink lowers MediaPipe's EAR by well over a third
AU45_FULL = 2.0  # TalkingGaussian clips AU45 to [0, 2] and divides by 2
BLINK_THRESHOLD = 0.5  # closure above which a frame counts as "eyes closed"


def fit_basis(posefree: np.ndarray, dim: int = EXP_DIM):
    """PCA of pose-free mesh residuals (memory: one 1404² covariance, any N).

    Args:
      posefree: (N, 478, 3) pose-free landmarks (canonical units).
      dim: E, number of coefficients.

    Returns:
      mean (468, 3) float32, basis (E, 468, 3) float32 orthonormal rows, std (E,) float32.
    """
    x = np.asarray(posefree, np.float64)[:, :N_FACE_POINTS].reshape(len(posefree), -1)
    mean = x.mean(0)
    cov = np.zeros((x.shape[1], x.shape[1]))
    for start in range(0, len(x), 1024):
        d = x[start : start + 1024] - mean
        cov += d.T @ d
    cov /= max(len(x) - 1, 1)
    val, vec = np.linalg.eigh(cov)
    order = np.argsort(val)[::-1][:dim]
    val, vec = val[order], vec[:, order]
    tiny = val <= val.max(initial=0) * 1e-9
    std = np.where(tiny, 1.0, np.sqrt(np.maximum(val, 0)))
    vec[:, tiny] = 0
    if len(order) < dim:  # fewer mesh coordinates than E cannot happen (1404 > 64); kept simple
        raise ValueError(f"expression basis: {len(order)} components < {dim}")
    basis = vec.T.reshape(dim, N_FACE_POINTS, 3)
    return (
        mean.reshape(N_FACE_POINTS, 3).astype(np.float32),
        basis.astype(np.float32),
        std.astype(np.float32),
    )


def project(
    posefree: np.ndarray, mean: np.ndarray, basis: np.ndarray, std: np.ndarray
) -> np.ndarray:
    """Expression coefficients e = Bᵀ(x − x̄)/σ.

    Args:
      posefree: (N, 478, 3); mean (468, 3); basis (E, 468, 3); std (E,).

    Returns:
      (N, E) float32.
    """
    d = np.asarray(posefree, np.float64)[:, :N_FACE_POINTS] - mean
    coef = d.reshape(len(d), -1) @ np.asarray(basis, np.float64).reshape(len(basis), -1).T
    return (coef / std).astype(np.float32)


def eye_aspect_ratio(landmarks: np.ndarray) -> np.ndarray:
    """Mean EAR of both eyes.

    Args:
      landmarks: (N, 478, C) with C = 2 or 3 (pose-free 3D preferred).

    Returns:
      (N,) float64.
    """
    lm = np.asarray(landmarks, np.float64)
    ears = []
    for p1, p2, p3, p4, p5, p6 in EYE_POINTS:
        dist = lambda a, b: np.linalg.norm(lm[:, a] - lm[:, b], axis=-1)
        ears.append((dist(p2, p6) + dist(p3, p5)) / (2 * dist(p1, p4) + 1e-12))
    return np.mean(ears, 0)


def blink_closure(ear: np.ndarray) -> np.ndarray:
    """Eye closure c ∈ [0, 1] per frame from the EAR curve (see the module docstring).

    Args:
      ear: (N,) eye aspect ratios.

    Returns:
      (N,) float32.
    """
    ear = np.asarray(ear, np.float64)
    # the open level on each side of the frame (half windows ending / starting at it); a blink is a
    # dip below both, a held change of aperture a step that one side already shares
    half = BASELINE_FRAMES // 2
    before = np.zeros(2 * half + 1, bool)
    before[: half + 1] = True
    ear_open = np.minimum(
        percentile_filter(ear, EAR_OPEN_PERCENTILE, footprint=before, mode="nearest"),
        percentile_filter(ear, EAR_OPEN_PERCENTILE, footprint=before[::-1].copy(), mode="nearest"),
    )
    drop = ear_open - ear
    full = max(np.percentile(drop, 100 - EAR_CLOSED_PERCENTILE), MIN_EAR_DROP * np.median(ear_open))
    return np.clip(drop / full, 0, 1).astype(np.float32)


def au45(closure: np.ndarray) -> np.ndarray:
    """OpenFace-scale AU45 intensity from closure: (N,) → (N,) float32."""
    return (AU45_FULL * np.asarray(closure, np.float32)).astype(np.float32)
