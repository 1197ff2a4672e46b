"""MediaPipe on the portrait: FaceMesh landmarks, the person's alpha and the index tables used.

The synthetic generator's only contact with MediaPipe (the preprocessing pipeline has its own
tracker, `preprocess.landmarks`). Landmarks are (478, 3): x, y in continuous pixels (MediaPipe's
normalised x·W, y·H), z = MediaPipe's relative depth ·W (negative = nearer). Indices 0-467 are the
face mesh, 468-477 the irises (landmarks only, never mesh vertices).
"""

from __future__ import annotations

import cv2
import numpy as np

from ua3dtalk_jax import native_log  # MediaPipe's C++ log lines → the debug log

N_FACE = 478  # MediaPipe FaceMesh with refine_landmarks (468 + 10 iris)
N_MESH = 468  # the iris points are landmarks only, not mesh vertices

# fmt: off
FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400,
             377, 152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67,
             109)
INNER_LIPS = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308, 324, 318, 402, 317, 14, 87, 178,
              88, 95)
# MediaPipe → iBUG-68 (PeizhiYan/Mediapipe_2_Dlib_Landmarks; preprocess.landmarks reads it too);
# a pair is averaged.
TO_68 = (
    127, 234, 93, (132, 58), (58, 172), 136, 150, 176, 152, 400, 379, 365, (397, 288), 361, 323,
    454, 356,                                                            # jaw 0-16
    70, 63, 105, 66, 107, 336, 296, 334, 293, 300,                       # brows 17-26
    (168, 6), (197, 195), 5, 4, 75, 97, 2, 326, 305,                     # nose 27-35
    33, 160, 158, 133, 153, 144, 362, 385, 387, 263, 373, 380,           # eyes 36-47
    61, 39, 37, 0, 267, 269, 291, 321, 314, 17, 84, 91,                  # outer mouth 48-59
    78, 82, 13, 312, 308, 317, 14, 87,                                   # inner mouth 60-67
)
# fmt: on
_TO68_A = np.array([p[0] if isinstance(p, tuple) else p for p in TO_68])
_TO68_B = np.array([p[1] if isinstance(p, tuple) else p for p in TO_68])


def detect_landmarks(rgb: np.ndarray, name: str = "<image>") -> np.ndarray:
    """MediaPipe FaceMesh on one image.

    Args:
      rgb: (H, W, 3) uint8.
      name: used in the error message.

    Returns:
      (478, 3) float64: x, y in continuous pixels, z in pixels (MediaPipe's z·W, negative = nearer).

    Raises:
      ValueError: naming `name` when no face is found.
    """
    found = detect_landmarks_batch([rgb])[0]
    if found is None:
        raise ValueError(f"{name}: MediaPipe FaceMesh found no face in this image")
    return found


def detect_landmarks_batch(images) -> list:
    """FaceMesh (static mode) on each image; a (478, 3) array or None per image."""
    import mediapipe as mp

    out = []
    with (
        native_log.quiet(),
        mp.solutions.face_mesh.FaceMesh(
            static_image_mode=True, refine_landmarks=True, max_num_faces=1
        ) as mesh,
    ):
        for img in images:
            res = mesh.process(np.ascontiguousarray(img))
            if not res.multi_face_landmarks:
                out.append(None)
                continue
            h, w = img.shape[:2]
            pts = res.multi_face_landmarks[0].landmark
            out.append(np.array([[p.x * w, p.y * h, p.z * w] for p in pts], np.float64))
    return out


def to_68(points: np.ndarray) -> np.ndarray:
    """(..., 478, D) MediaPipe points → (..., 68, D) iBUG-68 points (pairs averaged)."""
    return 0.5 * (points[..., _TO68_A, :] + points[..., _TO68_B, :])


def person_alpha(rgb: np.ndarray, oval: np.ndarray) -> np.ndarray:
    """(H, W) float32 person opacity of `rgb` (SelfieSegmentation, sharpened), 1 inside `oval`
    ((K, 2) continuous pixels, dilated 2 px) so the face never has a hole."""
    import mediapipe as mp

    with (
        native_log.quiet(),
        mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=0) as seg,
    ):
        alpha = seg.process(np.ascontiguousarray(rgb)).segmentation_mask.astype(np.float32)
    alpha = np.clip((alpha - 0.2) / 0.6, 0, 1)  # sharpen the soft edge a little
    face = np.zeros(alpha.shape, np.uint8)
    cv2.fillPoly(face, [np.round(oval - 0.5).astype(np.int32)], 1)
    face = cv2.dilate(face, np.ones((5, 5), np.uint8))
    return np.maximum(alpha, face.astype(np.float32))  # never a hole in the face
