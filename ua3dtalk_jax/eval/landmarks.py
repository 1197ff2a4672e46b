"""dlib 68-point landmarks and the landmark distance (LMD) of the paper's Table 1.

LMD is TalkingGaussian's / ER-NeRF's `LMDMeter(backend='dlib', region='mouth')`:
  frames in [0, 1] are turned into uint8 by truncation, `(x * 255).astype(uint8)`;
  dlib's HOG frontal-face detector (upsample 1) and the 68-point shape predictor give integer
  landmarks; the mouth points 48–67 of the rendered frame p and of the real frame g are each
  centred on their own mean (translation only, no scale or rotation), and
    LMD_t = mean_{i=48..67} ‖(p_ti − p̄_t) − (g_ti − ḡ_t)‖₂       (pixels at render resolution),
  averaged over frames. LMDMeter keeps the first detection; here the largest box is kept (the
  same face whenever one face is in view; a second, spurious detection is a known HOG behaviour).
  A frame where either image has no face is counted in `n_missing` and left out of the mean
  (LMDMeter would stop with an error there).

The predictor file comes from the `face-recognition-models` package (it ships
`shape_predictor_68_face_landmarks.dat`, iBUG 300-W derived: non-commercial). That package's
`__init__` imports `pkg_resources`, which current setuptools no longer has, so the file is located
through the import machinery without importing the package.
"""

from __future__ import annotations

import functools
import importlib.util
import os

import numpy as np

MOUTH = slice(48, 68)  # the 68-point scheme's outer (48–59) and inner (60–67) lip points
DETECTOR_UPSAMPLE = 1  # LMDMeter calls detector(img, 1)
PREDICTOR_FILE = "shape_predictor_68_face_landmarks.dat"


def predictor_path() -> str:
    """Path of the 68-point predictor shipped by `face-recognition-models` (never downloaded)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "dlib 68-point predictor not found: pip install face-recognition-models==0.3.0"
        )
    path = os.path.join(next(iter(spec.submodule_search_locations)), "models", PREDICTOR_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} is missing; reinstall face-recognition-models==0.3.0")
    return path


@functools.lru_cache(maxsize=1)
def _dlib_models():
    import dlib  # optional dependency (dlib-bin), needed only here

    return dlib.get_frontal_face_detector(), dlib.shape_predictor(predictor_path())


def to_uint8(image: np.ndarray) -> np.ndarray:
    """LMDMeter's conversion: float [0, 1] → uint8 by truncation; uint8 passes through."""
    image = np.asarray(image)
    if image.dtype == np.uint8:
        return image
    return (np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)


def largest_face(image: np.ndarray) -> tuple[int, int, int, int] | None:
    """The largest dlib HOG face box of an RGB frame.

    Args:
      image: (H, W, 3) RGB, uint8 or float in [0, 1].

    Returns:
      (left, top, right, bottom) in pixels (dlib's inclusive corners), or None if no face.
    """
    detector, _ = _dlib_models()
    dets = detector(np.ascontiguousarray(to_uint8(image)), DETECTOR_UPSAMPLE)
    if len(dets) == 0:
        return None
    d = max(dets, key=lambda r: r.width() * r.height())
    return d.left(), d.top(), d.right(), d.bottom()


def landmarks68(
    image: np.ndarray, box: tuple[int, int, int, int] | None = None
) -> np.ndarray | None:
    """dlib's 68 landmarks of the largest face.

    Args:
      image: (H, W, 3) RGB, uint8 or float in [0, 1].
      box: optional (left, top, right, bottom) face box; default the largest detection.

    Returns:
      (68, 2) float32 (x, y) pixel positions (integers, as dlib gives them), or None if no face.
    """
    import dlib

    img = np.ascontiguousarray(to_uint8(image))
    box = largest_face(img) if box is None else box
    if box is None:
        return None
    _, predictor = _dlib_models()
    shape = predictor(img, dlib.rectangle(*[int(v) for v in box]))
    return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float32)


def mouth_distance(pred_lms: np.ndarray, true_lms: np.ndarray) -> float:
    """LMD of one frame pair from their 68-point landmarks.

    Args:
      pred_lms: (68, 2) landmarks of the rendered frame.
      true_lms: (68, 2) landmarks of the real frame.

    Returns:
      Mean over the 20 mouth points of the distance between the mean-centred sets, in pixels.
    """
    p = np.asarray(pred_lms, np.float32)[MOUTH]
    g = np.asarray(true_lms, np.float32)[MOUTH]
    p = p - p.mean(0)
    g = g - g.mean(0)
    return float(np.sqrt(((p - g) ** 2).sum(1)).mean(0))


def lmd(pred: np.ndarray, target: np.ndarray) -> dict:
    """Landmark distance over a sequence of frame pairs.

    Args:
      pred: (N, H, W, 3) rendered frames, uint8 or float in [0, 1].
      target: (N, H, W, 3) real frames.

    Returns:
      {"LMD": mean over frames with a face in both (NaN if none), "per_frame": (N,) with NaN
      where a face is missing, "n_missing": count of such frames}.
    """
    if len(pred) != len(target):
        raise ValueError(f"frame counts differ: {len(pred)} vs {len(target)}")
    per = np.full(len(pred), np.nan)
    for i, (p, t) in enumerate(zip(pred, target)):
        lp, lt = landmarks68(p), landmarks68(t)
        if lp is not None and lt is not None:
            per[i] = mouth_distance(lp, lt)
    ok = np.isfinite(per)
    return {
        "LMD": float(per[ok].mean()) if ok.any() else float("nan"),
        "per_frame": per,
        "n_missing": int((~ok).sum()),
    }
