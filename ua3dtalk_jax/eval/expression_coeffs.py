"""Expression coefficients of frames, for the evaluation's "E-FD (own)" (not the paper's E-FID).

The paper's E-FID is the Fréchet distance between Deep3DFaceRecon's 64 BFM expression
coefficients of generated and real frames (EMO, §4.1); that model and its BFM data cannot be had
here. "E-FD (own)" uses this project's own extractor instead, the one that produces f_gt-exp for
preprocessed subjects (`preprocess/`):

  1. MediaPipe face mesh (478 points, px) per frame, static-image mode (every frame detected on
     its own, no tracking or temporal smoothing, so rendered and real frames are treated alike);
  2. pose removed by a similarity fit of the rigid points onto a canonical shape
     (`preprocess.pose.align_to`);
  3. projection on an expression PCA basis (`preprocess.expression.project`), kept in
     millimetres: e = 1000 · Bᵀ(x − x̄) with the canonical shape in metres (cheek width 0.14).
     f_gt-exp divides by the components' σ as well; here that would let the near-zero trailing
     components (tracker jitter) dominate the distance, so E-FD is in mm² of mesh motion.

The reference — canonical shape, rigid points, basis x̄, B, σ — is fitted on the *real* frames
being evaluated (`ExpressionReference.fit`), and the rendered frames are projected on it, so the
real coefficients have zero mean and both sets live in one coordinate system.
(A subject's saved exp_basis.npy is not reused: its canonical frame is not saved with its rigid
point set, and the synthetic subject's f_gt-exp are blendshape weights, not this PCA.) Frames
without a detected face are left out and counted.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ua3dtalk_jax.eval.landmarks import to_uint8

EXP_DIM = 64  # the paper's f_exp / BFM expression size
MM_PER_UNIT = 1000.0  # canonical units are metres (preprocess.pose.FACE_WIDTH = 0.14)


def mesh_landmarks(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """MediaPipe face-mesh landmarks of each frame (largest face).

    Args:
      frames: (N, H, W, 3) RGB, uint8 or float in [0, 1].

    Returns:
      landmarks (N, 478, 3) float32 px (zeros where no face), found (N,) bool.
    """
    from ua3dtalk_jax.preprocess.landmarks import N_LANDMARKS, FaceTracker

    tracker = FaceTracker(static=True)
    out = np.zeros((len(frames), N_LANDMARKS, 3), np.float32)
    found = np.zeros(len(frames), bool)
    try:
        for i, frame in enumerate(frames):
            pts = tracker(np.ascontiguousarray(to_uint8(frame)))
            if pts is not None:
                out[i], found[i] = pts, True
    finally:
        tracker.close()
    return out, found


@dataclasses.dataclass(frozen=True)
class ExpressionReference:
    """Canonical shape, rigid points and PCA basis that coefficients are measured in."""

    canon: np.ndarray  # (478, 3) cam-like canonical shape
    rigid: np.ndarray  # (R,) rigid point indices
    mean: np.ndarray  # (468, 3)
    basis: np.ndarray  # (E, 468, 3)
    std: np.ndarray  # (E,)

    @classmethod
    def fit(cls, landmarks: np.ndarray, dim: int = EXP_DIM) -> ExpressionReference:
        """Fits the reference on real frames' mesh landmarks.

        Args:
          landmarks: (N, 478, 3) landmarks of frames with a face, N ≥ 2.
          dim: E, number of coefficients.
        """
        from ua3dtalk_jax.preprocess import expression, pose

        if len(landmarks) < 2:
            raise ValueError(f"the expression reference needs ≥ 2 faces, got {len(landmarks)}")
        canon, rigid = pose.canonical_shape(landmarks)
        mean, basis, std = expression.fit_basis(pose.align_to(landmarks, canon, rigid), dim)
        return cls(canon, rigid, mean, basis, std)

    def coefficients(self, landmarks: np.ndarray) -> np.ndarray:
        """(N, 478, 3) mesh landmarks → (N, E) float32 expression coefficients in mm."""
        from ua3dtalk_jax.preprocess import expression, pose

        posefree = pose.align_to(landmarks, self.canon, self.rigid)
        unit = np.full_like(self.std, 1.0 / MM_PER_UNIT)
        return expression.project(posefree, self.mean, self.basis, unit)


def expression_sets(rendered: np.ndarray, real: np.ndarray, dim: int = EXP_DIM) -> dict:
    """Coefficients of rendered and real frames in the reference fitted on the real ones.

    Args:
      rendered: (N, H, W, 3) rendered frames.
      real: (M, H, W, 3) real frames.
      dim: E.

    Returns:
      {"rendered": (n, E), "real": (m, E) coefficients of the frames with a face,
       "missing_rendered", "missing_real": counts of frames without one}.
    """
    lm_real, ok_real = mesh_landmarks(real)
    lm_pred, ok_pred = mesh_landmarks(rendered)
    ref = ExpressionReference.fit(lm_real[ok_real], dim)
    pred = ref.coefficients(lm_pred[ok_pred]) if ok_pred.any() else np.zeros((0, dim), np.float32)
    return {
        "rendered": pred,
        "real": ref.coefficients(lm_real[ok_real]),
        "missing_rendered": int((~ok_pred).sum()),
        "missing_real": int((~ok_real).sum()),
    }
