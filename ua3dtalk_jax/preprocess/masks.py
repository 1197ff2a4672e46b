"""Region masks from landmark polygons and person segmentation; the static background plate.

Replaces BiSeNet parsing + EasyPortrait teeth with what runs from pip:
- face: the MediaPipe face-oval polygon (brow to chin, cheek to cheek) minus the mouth interior;
- mouth: the inner-lip polygon; teeth: its bright, desaturated pixels (TEETH_*);
- eyes: the eyelid polygons (not a layout class; `eye_boxes.npy` keeps their boxes per frame);
- person: MediaPipe selfie segmentation (probability > PERSON_THRESHOLD) ∪ the face polygon; in a
  clip the probability is first the per-pixel median over frames i−PERSON_MEDIAN_RADIUS..i+R
  (`temporal_person`): a moving background (a window onto a street) now and then gives a
  one-frame blob of "person" stuck to the hair, which the median removes, while a moving edge
  that crosses a pixel once in the window keeps the middle frame's value, so motion is not
  smeared;
- hair: person pixels outside the face, above the jaw-angle line (points 132-361) and within
  HEAD_HALF_WIDTH face widths of the face centre (ears, hair, hat);
- neck: person pixels below that line within NECK_HALF_WIDTH face widths, down to NECK_LENGTH face
  heights below the chin; torso: the remaining person pixels.
Polygons are filled on an 8× sub-pixel grid (cv2 shift=3).

Torso layer (torso_imgs): the frame on neck and torso, with the neck continued up under the chin
as TalkingGaussian's preprocessing does (`data.torso`), so a rendered jaw line never uncovers
bc.jpg.

Background plate (bc.jpg): the per-pixel temporal median over sampled frames of the pixels that
are not person (person dilated by BG_DILATE px against halos); pixels that are person in every
sample are inpainted (cv2 Telea) from their surroundings.
"""

from __future__ import annotations

import contextlib

import cv2
import numpy as np

from ua3dtalk_jax import native_log
from ua3dtalk_jax.data import torso as torso_lib

# fmt: off
FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400,
             377, 152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109)
INNER_LIPS = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308, 324, 318, 402, 317, 14, 87, 178,
              88, 95)
RIGHT_EYE = (33, 246, 161, 160, 159, 158, 157, 173, 133, 155, 154, 153, 145, 144, 163, 7)
LEFT_EYE = (263, 466, 388, 387, 386, 385, 384, 398, 362, 382, 381, 380, 374, 373, 390, 249)
# fmt: on
JAW_ANGLES, CHIN, CHEEKS = (132, 361), 152, (234, 454)
PERSON_THRESHOLD = 0.5
HEAD_HALF_WIDTH = 1.0  # face widths: hair and ears reach at most this far sideways
NECK_HALF_WIDTH = 0.45
NECK_LENGTH = 0.6  # face heights below the chin
TEETH_MIN_VALUE = 0.75  # × the face's median brightness (HSV V)
TEETH_MAX_SAT = 0.35  # HSV saturation in [0, 1]; lips and tongue are saturated
BG_DILATE = 5  # px (at 512²; scaled with the frame)
PERSON_MEDIAN_RADIUS = 2  # frames each side: blips of up to 2 frames (80 ms at 25 fps) go
_SHIFT = 3


def polygon_mask(points: np.ndarray, loop, size) -> np.ndarray:
    """Fills a landmark polygon.

    Args:
      points: (478, ≥2) landmarks in px (continuous coordinates, pixel centres at i + 0.5).
      loop: landmark indices in order around the polygon.
      size: (H, W).

    Returns:
      (H, W) bool.
    """
    mask = np.zeros(size, np.uint8)
    poly = np.round((np.asarray(points)[list(loop), :2] - 0.5) * (1 << _SHIFT)).astype(np.int32)
    cv2.fillPoly(mask, [poly], 1, cv2.LINE_8, _SHIFT)
    return mask.astype(bool)


def eye_boxes(points: np.ndarray) -> np.ndarray:
    """(2, 4) [rmin, rmax, cmin, cmax] boxes of the right then left eyelid polygons (px)."""
    out = []
    for loop in (RIGHT_EYE, LEFT_EYE):
        p = np.asarray(points)[list(loop), :2]
        out.append([p[:, 1].min(), p[:, 1].max(), p[:, 0].min(), p[:, 0].max()])
    return np.array(out, np.float32)


def eye_mask(points: np.ndarray, size) -> np.ndarray:
    """(H, W) bool union of both eyelid polygons."""
    return polygon_mask(points, RIGHT_EYE, size) | polygon_mask(points, LEFT_EYE, size)


class PersonSegmenter:
    """MediaPipe selfie segmentation: (H, W, 3) uint8 RGB → (H, W) float32 person probability."""

    def __init__(self, model: int = 0):
        import mediapipe as mp

        native_log.acquire()  # MediaPipe's C++ log lines → the debug log until close()
        try:
            self._seg = mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=model)
        except BaseException:
            native_log.release()
            raise
        self._open = True

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        return self._seg.process(np.ascontiguousarray(frame)).segmentation_mask

    def close(self) -> None:
        if self._open:
            self._open = False
            try:
                self._seg.close()
            finally:
                native_log.release()

    def __del__(self):  # a caller that never closes still gives the terminal back
        if getattr(self, "_open", False):
            with contextlib.suppress(Exception):  # interpreter shutdown: nothing left to restore
                self.close()


def temporal_person(frames, segmenter, radius: int = PERSON_MEDIAN_RADIUS):
    """Person probabilities of a clip, each the median over frames i−radius..i+radius.

    Args:
      frames: iterable of (H, W, 3) uint8 frames, in order (one clip: the window never crosses
        its ends; near them it shrinks to stay centred).
      segmenter: frame → (H, W) person probability (a `PersonSegmenter`).
      radius: frames each side.

    Yields:
      (frame, (H, W) float32 median probability), in order, `radius` frames behind the input.
    """
    window, probs, first = [], [], 0  # frames[first + k] = window[k]
    centre = 0
    for frame in frames:
        window.append(frame)
        probs.append(np.asarray(segmenter(frame), np.float32))
        while centre + radius < first + len(window):
            yield _median_at(window, probs, first, centre, min(radius, centre))
            centre += 1
            drop = max(0, centre - radius - first)
            del window[:drop], probs[:drop]
            first += drop
    last = first + len(window) - 1
    while centre <= last:  # the clip's end: a window cut short on both sides, still centred
        yield _median_at(window, probs, first, centre, min(radius, centre, last - centre))
        centre += 1


def _median_at(window, probs, first, centre, radius):
    lo, hi = centre - radius - first, centre + radius + 1 - first
    return window[centre - first], np.median(np.stack(probs[lo:hi]), 0).astype(np.float32)


def region_masks(image: np.ndarray, points: np.ndarray, person_prob: np.ndarray) -> dict:
    """The layout's region masks for one frame.

    Args:
      image: (H, W, 3) uint8 RGB.
      points: (478, ≥2) landmarks, px.
      person_prob: (H, W) person probability.

    Returns:
      dict of (H, W) bool: face, mouth, teeth, hair, neck, torso, eyes, person.
    """
    size = image.shape[:2]
    h, w = size
    pts = np.asarray(points, np.float64)
    oval = polygon_mask(pts, FACE_OVAL, size)
    mouth = polygon_mask(pts, INNER_LIPS, size)
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV).astype(np.float32)
    sat, val = hsv[..., 1] / 255.0, hsv[..., 2]
    face_val = np.median(val[oval & ~mouth]) if (oval & ~mouth).any() else 255.0
    teeth = mouth & (val > TEETH_MIN_VALUE * face_val) & (sat < TEETH_MAX_SAT)
    person = (person_prob > PERSON_THRESHOLD) | oval
    face_w = np.linalg.norm(pts[CHEEKS[0], :2] - pts[CHEEKS[1], :2])
    face_h = np.linalg.norm(pts[CHIN, :2] - pts[FACE_OVAL[0], :2])
    cx = pts[list(FACE_OVAL), 0].mean()
    rows, cols = np.mgrid[0:h, 0:w] + 0.5
    (xa, ya), (xb, yb) = pts[JAW_ANGLES[0], :2], pts[JAW_ANGLES[1], :2]
    # signed side of the jaw-angle line; positive below it (rows grow downward)
    below = ((xb - xa) * (rows - ya) - (yb - ya) * (cols - xa)) * np.sign(xb - xa + 1e-9) > 0
    off = person & ~oval
    hair = off & ~below & (np.abs(cols - cx) < HEAD_HALF_WIDTH * face_w)
    neck = (
        off
        & below
        & (np.abs(cols - cx) < NECK_HALF_WIDTH * face_w)
        & (rows < pts[CHIN, 1] + NECK_LENGTH * face_h)
    )
    torso = off & ~hair & ~neck
    return {
        "face": oval & ~mouth,
        "mouth": mouth,
        "teeth": teeth,
        "hair": hair,
        "neck": neck,
        "torso": torso,
        "eyes": eye_mask(pts, size),
        "person": person,
    }


def torso_image(image: np.ndarray, masks: dict) -> np.ndarray:
    """torso_imgs for one frame: (H, W, 3) uint8 RGB and `region_masks` → (H, W, 4) uint8 RGBA,
    opaque on neck, torso and the neck's continuation under the head, transparent elsewhere."""
    body = (masks["neck"] | masks["torso"]).astype(np.float32)
    head = masks["face"] | masks["mouth"] | masks["teeth"] | masks["hair"]
    return torso_lib.torso_rgba(image, body, head, masks["neck"], masks["torso"])


def composite_gt(image: np.ndarray, person: np.ndarray, background: np.ndarray) -> np.ndarray:
    """gt_imgs: the frame with non-person pixels replaced by the plate. (H,W,3) uint8 each."""
    return np.where(person[..., None], image, background).astype(np.uint8)


class BackgroundPlate:
    """Accumulates sampled frames and person masks; `plate()` gives bc.jpg.

    Args:
      size: (H, W); max_samples: frames kept (memory: max_samples·H·W·4 bytes).
    """

    def __init__(self, size, max_samples: int = 48):
        self.size, self.max_samples = tuple(size), int(max_samples)
        self._frames, self._masks = [], []

    def __len__(self) -> int:
        return len(self._frames)

    def add(self, image: np.ndarray, person: np.ndarray) -> None:
        """Keeps one sample: (H, W, 3) uint8 frame and (H, W) bool person mask."""
        if len(self._frames) >= self.max_samples:
            return
        r = max(1, round(BG_DILATE * max(self.size) / 512))
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
        self._frames.append(np.asarray(image, np.uint8))
        self._masks.append(cv2.dilate(person.astype(np.uint8), kernel).astype(bool))

    def plate(self):
        """Median of unmasked samples, inpainted where never seen.

        Returns:
          (H, W, 3) uint8 plate and (H, W) bool `seen` (False where it was inpainted).
        """
        if not self._frames:
            raise ValueError("background plate: no samples")
        h, w = self.size
        out = np.zeros((h, w, 3), np.uint8)
        seen = np.zeros((h, w), bool)
        for r0 in range(0, h, 64):  # row blocks keep the float copy small
            stack = np.stack([f[r0 : r0 + 64] for f in self._frames]).astype(np.float32)
            masks = np.stack([m[r0 : r0 + 64] for m in self._masks])
            stack[masks] = np.nan
            seen[r0 : r0 + 64] = ~masks.all(0)
            with np.errstate(all="ignore"):
                import warnings

                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    med = np.nanmedian(stack, 0)
            out[r0 : r0 + 64] = np.nan_to_num(np.round(med), nan=0).astype(np.uint8)
        if not seen.all():
            radius = max(3, round(0.02 * max(h, w)))
            out = cv2.inpaint(out, (~seen).astype(np.uint8), radius, cv2.INPAINT_TELEA)
        return out, seen
