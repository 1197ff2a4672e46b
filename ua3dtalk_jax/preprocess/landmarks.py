"""MediaPipe face mesh per frame, gap filling and temporal smoothing, and the dlib-68 map.

Landmarks are (478, 3) float32 in pixels of the processed frame: x = col, y = row (MediaPipe's
normalised x·W, y·H) and z = MediaPipe's relative depth ·W (same scale as x; larger = farther from
the camera). With x right, y down, z forward this is OpenCV's camera frame, right-handed.
Indices 0-467 are the face mesh, 468-477 the irises (468 and 473 the iris centres).

Smoothing: a Savitzky-Golay filter (window SMOOTH_WINDOW, order 2) over time removes the tracker's
frame-to-frame jitter while keeping the few-frame shape of a blink; frames without a face are
filled by linear interpolation from their neighbours before smoothing.

The 68-point map (PeizhiYan/Mediapipe_2_Dlib_Landmarks; a pair is the mean of two points) gives
the iBUG layout used by LMD; against dlib on the astronaut photograph its mouth points differ by
about 1 px (reference/metrics_and_offline_tools.md §2b).
"""

from __future__ import annotations

import contextlib

import numpy as np
from scipy.signal import savgol_filter

from ua3dtalk_jax import native_log
from ua3dtalk_jax.data.synthetic.mediapipe_face import TO_68

N_LANDMARKS = 478
SMOOTH_WINDOW = 5  # frames; odd. 0.2 s at 25 fps: shorter than a blink's closing + opening
SMOOTH_ORDER = 2
MIN_DETECTION_CONFIDENCE = 0.5
MIN_TRACKING_CONFIDENCE = 0.5

# MediaPipe → iBUG-68 (one table with the synthetic generator's; a pair is averaged)
DLIB68_FROM_MEDIAPIPE = TO_68


def _dlib_matrix() -> np.ndarray:
    m = np.zeros((68, N_LANDMARKS), np.float32)
    for row, src in enumerate(DLIB68_FROM_MEDIAPIPE):
        for s in src if isinstance(src, tuple) else (src,):
            m[row, s] = 1.0 / (len(src) if isinstance(src, tuple) else 1)
    return m


_DLIB = _dlib_matrix()


def to_dlib68(landmarks: np.ndarray) -> np.ndarray:
    """MediaPipe landmarks (..., 478, C) → iBUG 68-point landmarks (..., 68, C)."""
    return np.einsum("kl,...lc->...kc", _DLIB, np.asarray(landmarks, np.float32))


class FaceTracker:
    """MediaPipe FaceMesh in video mode (478 points), keeping the largest face in each frame.

    Args:
      max_faces: faces MediaPipe looks for; with more than one found, the largest (by the area of
        its landmark box) is kept, so a passer-by does not take over the track.
      static: run detection on every frame (no temporal tracking).
    """

    def __init__(self, *, max_faces: int = 2, static: bool = False):
        import mediapipe as mp

        native_log.acquire()  # MediaPipe's C++ log lines → the debug log until close()
        try:
            self._mesh = mp.solutions.face_mesh.FaceMesh(
                static_image_mode=static,
                max_num_faces=max_faces,
                refine_landmarks=True,
                min_detection_confidence=MIN_DETECTION_CONFIDENCE,
                min_tracking_confidence=MIN_TRACKING_CONFIDENCE,
            )
        except BaseException:
            native_log.release()
            raise
        self._open = True
        self.faces_seen = 0  # frames where more than one face was found

    def __call__(self, frame: np.ndarray) -> np.ndarray | None:
        """Landmarks of the largest face in an (H, W, 3) uint8 RGB frame: (478, 3) px, or None."""
        h, w = frame.shape[:2]
        result = self._mesh.process(np.ascontiguousarray(frame))
        faces = result.multi_face_landmarks or []
        if not faces:
            return None
        if len(faces) > 1:
            self.faces_seen += 1
        best, best_area = None, -1.0
        for face in faces:
            pts = np.array([(p.x * w, p.y * h, p.z * w) for p in face.landmark], np.float32)
            area = np.ptp(pts[:, 0]) * np.ptp(pts[:, 1])
            if area > best_area:
                best, best_area = pts, area
        return best

    def close(self) -> None:
        if self._open:
            self._open = False
            try:
                self._mesh.close()
            finally:
                native_log.release()

    def __del__(self):  # a caller that never closes still gives the terminal back
        if getattr(self, "_open", False):
            with contextlib.suppress(Exception):  # interpreter shutdown: nothing left to restore
                self.close()


def detect_face_box(frame: np.ndarray) -> np.ndarray | None:
    """Largest face box (x0, y0, x1, y1) in pixels from one frame via the face mesh, or None."""
    tracker = FaceTracker(static=True)
    try:
        pts = tracker(frame)
    finally:
        tracker.close()
    if pts is None:
        return None
    return np.array([pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max()])


def fill_and_smooth(landmarks: np.ndarray, found: np.ndarray) -> np.ndarray:
    """Interpolates frames without a face, then smooths every coordinate over time.

    Args:
      landmarks: (N, 478, 3) float32; rows where `found` is False are ignored.
      found: (N,) bool, at least one True.

    Returns:
      (N, 478, 3) float32.
    """
    lms = np.asarray(landmarks, np.float32).reshape(len(found), -1)
    found = np.asarray(found, bool)
    if not found.any():
        raise ValueError("no face found in any frame")
    t = np.arange(len(found))
    if not found.all():
        good = np.nonzero(found)[0]
        lms = np.stack([np.interp(t, good, lms[good, k]) for k in range(lms.shape[1])], 1)
    if len(found) >= SMOOTH_WINDOW:
        lms = savgol_filter(lms, SMOOTH_WINDOW, SMOOTH_ORDER, axis=0, mode="interp")
    return lms.reshape(len(found), N_LANDMARKS, 3).astype(np.float32)


def frame_ranges(indices) -> str:
    """'3-7, 12, 40-41' from sorted frame indices (for error messages)."""
    idx = sorted(int(i) for i in indices)
    parts, i = [], 0
    while i < len(idx):
        j = i
        while j + 1 < len(idx) and idx[j + 1] == idx[j] + 1:
            j += 1
        parts.append(str(idx[i]) if i == j else f"{idx[i]}-{idx[j]}")
        i = j + 1
    return ", ".join(parts)
