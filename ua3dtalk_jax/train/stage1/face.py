"""The 3D expression prior from a user's Deep3DFaceRecon weights (paper §2.1, as SadTalker does it).

With `stage1.prior.face_recon_weights=PATH` (SadTalker's `epoch_20.pth`; read without torch by
`models.prior.face_recon.load_face_recon`), Prior Extraction uses the network's 64 expression
coefficients (c[80:144] of its 257) instead of the regressor trained on the subject:

    f_gt-exp(i) = Recon(align(frame i))[80:144]                          real frames
    f_exp(i)    = Recon(align(ref_k ⊕ G(masked ref_k, ref_k, mel i)))[80:144],   k = i mod K

where `align` is Deep3DFaceRecon's 5-point alignment (`models.prior.face_align`, points from the
subject's face mesh) and `ref_k ⊕ G` is reference frame k with the lower half of the lip expert's
generated face crop (the part it generates from audio) pasted back into its face box, as Wav2Lip
pastes its output into the video; the upper half stays the reference's own full-resolution pixels.
A `PASTE_FEATHER`-row ramp hides the seam. The paste is done in the aligned 224² image: the
reference's aligned frame and the crop → aligned affine are computed once per reference
(`paste_refs`) and stored in the stage-1 checkpoint, so novel audio needs no video.

`exp_r2` scores any f_exp (this path or the regressor's) against the tracked expression: a ridge
readout fitted on the train frames, R² on the held-out ones. The network, the paste and f_exp at
inference are `head.face_prior`; this module prepares them from the subject's frames.
"""

from __future__ import annotations

import numpy as np

from ua3dtalk_jax.head.face_prior import CHUNK, coefficients
from ua3dtalk_jax.models.prior import face_align
from ua3dtalk_jax.models.prior.face_recon import EXP

VARYING = 1e-6  # train-frame s.d. of a target component below which it is left out of the R²
RIDGE = 1e-2  # × train frames: the R² readout's ridge on standardised f_exp (64 features over a
# few hundred to a few thousand frames; also keeps a rank-deficient f_exp solvable)


def frame_points(landmarks: np.ndarray, dense: np.ndarray | None, hw: tuple) -> np.ndarray:
    """(N, 5, 2) alignment points: from the 478-point mesh when given, else the 68 points;
    frames without landmarks (all zeros) get `face_align.missing_points`."""
    src = np.asarray(dense if dense is not None else landmarks, np.float64)
    out = np.stack([face_align.five_points(lm) for lm in src])
    missing = ~np.any(src != 0, axis=(1, 2))
    out[missing] = face_align.missing_points(hw)
    return out


def real_exp(net, images: np.ndarray, points: np.ndarray) -> np.ndarray:
    """f_gt-exp (N, 64): the network on the aligned real frames (N, H, W, 3) uint8."""
    chunks = (
        np.stack(
            [
                face_align.align_face(im, p)[0]
                for im, p in zip(images[a : a + CHUNK], points[a : a + CHUNK])
            ]
        )
        for a in range(0, len(images), CHUNK)
    )
    return coefficients(net, chunks)[:, EXP].astype(np.float32)


def paste_refs(images: np.ndarray, points: np.ndarray, boxes: np.ndarray, face_size: int) -> dict:
    """Aligned reference frames and their crop → aligned affines.

    Args:
      images: (K, H, W, 3) uint8 reference frames; points: (K, 5, 2) their alignment points.
      boxes: (K, 3) their face boxes (centre x, centre y, side) as `head.crops.face_boxes`.
      face_size: S, the side of the lip expert's crops.
    Returns:
      {"frames": (K, 224, 224, 3) uint8, "affine": (K, 2, 3) float32}.
    """
    frames, affines = [], []
    for im, p, (cx, cy, side) in zip(images, points, boxes):
        aligned, img_to_al = face_align.align_face(im, p)
        a = face_size / side  # `head.crops.face_crops`: crop = a·(image − centre) + S/2
        crop_to_img = np.array(
            [[1 / a, 0.0, cx - face_size / (2 * a)], [0.0, 1 / a, cy - face_size / (2 * a)]]
        )
        affines.append(_compose(img_to_al, crop_to_img))
        frames.append(aligned)
    return {"frames": np.stack(frames), "affine": np.stack(affines).astype(np.float32)}


def _compose(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """The (2, 3) affine outer ∘ inner."""
    return np.concatenate(
        [outer[:, :2] @ inner[:, :2], outer[:, :2] @ inner[:, 2:] + outer[:, 2:]], axis=1
    )


def exp_r2(f_exp, target, n_train: int) -> float:
    """Held-out R² of f_exp against the tracked expression through a linear readout.

    f_exp is standardised with its statistics over all N frames (the ridge then does not depend
    on its offset or per-component scale: lip-wav f_exp can sit at a mean of 0.6 with an s.d. of
    0.01; f_exp comes from the audio alone, so using the held-out frames' f_exp here is no leak,
    and a component constant over the train frames does not explode on the held-out ones), a
    ridge map [z, 1] → target is fitted on frames [0, n_train), and R² = 1 − Σ‖ŷ − y‖² /
    Σ‖y − ȳ‖² over the held-out frames [n_train, N) (ȳ their mean), pooled over the target's
    components that vary over the train frames (one constant there, an expression the train
    frames never show, cannot be read out of them, and its standardisation by a floored s.d.
    would swamp the sum).

    Args:
      f_exp: (N, D); target: (N, E) (standardised tracked coefficients).
    Returns:
      R², or nan without held-out frames (or without a component that varies).
    """
    x = np.asarray(f_exp, np.float64)
    y = np.asarray(target, np.float64)
    if len(x) <= n_train or n_train < 2:
        return float("nan")
    y = y[:, y[:n_train].std(0) > VARYING]
    if not y.shape[1]:
        return float("nan")
    sd = x.std(0)
    z = np.where(sd > 0, (x - x.mean(0)) / np.where(sd > 0, sd, 1.0), 0.0)
    z = np.concatenate([z, np.ones((len(z), 1))], axis=1)
    zt, yt = z[:n_train], y[:n_train]
    penalty = np.full(z.shape[1], RIDGE * n_train)
    penalty[-1] = 0.0  # the intercept is not shrunk
    w = np.linalg.solve(zt.T @ zt + np.diag(penalty), zt.T @ yt)
    yv = y[n_train:]
    sst = np.sum((yv - yv.mean(0)) ** 2)
    return float(1.0 - np.sum((z[n_train:] @ w - yv) ** 2) / max(sst, 1e-12))
