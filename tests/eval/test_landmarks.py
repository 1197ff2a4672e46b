"""LMD with dlib's 68-point predictor (TalkingGaussian's LMDMeter, backend 'dlib')."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import skimage.data

from ua3dtalk_jax.eval import landmarks as L

# Re-detecting a shifted copy moves dlib's HOG box by a pyramid-quantised amount and the
# predictor's integer output by ≤ 2 px per point; measured mouth LMD 0.48–0.64 px on astronaut
# for shifts of 4–32 px. 1 px is that jitter bound; the mouth warp below measures ~2 px.
DLIB_JITTER_PX = 1.0


SAME_FACE_IOU = 0.5  # PASCAL VOC's criterion for two boxes of one object


def _iou(a, b) -> float:
    w = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    area = lambda r: (r[2] - r[0]) * (r[3] - r[1])
    return w * h / (area(a) + area(b) - w * h)


@pytest.fixture(scope="module")
def astronaut():
    im = skimage.data.astronaut()
    box = L.largest_face(im)
    return im, box, L.landmarks68(im, box)


def test_centring_removes_translation():
    rng = np.random.default_rng(0)
    lms = rng.uniform(0, 512, (68, 2))
    assert L.mouth_distance(lms + np.array([13.0, -7.0]), lms) == pytest.approx(0.0, abs=1e-5)
    moved = lms.copy()
    moved[60:68, 1] += 4.0  # inner lips 4 px down: centring leaves 4·(1 − 8/20) on 8 points
    expect = (8 * 4.0 * (1 - 8 / 20) + 12 * 4.0 * 8 / 20) / 20
    assert L.mouth_distance(moved, lms) == pytest.approx(expect, rel=1e-6)


def test_astronaut_landmarks(astronaut):
    im, box, lms = astronaut
    # dlib's HOG detector finds two boxes here; the one picked is the face that OpenCV's Haar
    # cascade (Viola-Jones, independent of dlib) finds: the same object at IoU ≥ SAME_FACE_IOU
    haar = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    faces = haar.detectMultiScale(cv2.cvtColor(im, cv2.COLOR_RGB2GRAY), 1.1, 5)
    assert len(faces) == 1
    x, y, w, h = faces[0]
    assert _iou(box, (x, y, x + w, y + h)) >= SAME_FACE_IOU
    assert lms.shape == (68, 2)
    mouth = lms[L.MOUTH]
    assert (box[0] < mouth[:, 0]).all() and (mouth[:, 0] < box[2]).all()
    assert (mouth[:, 1] > lms[30, 1]).all()  # below the nose tip


def test_lmd_of_frame_against_itself_is_zero(astronaut):
    im = astronaut[0]
    out = L.lmd(im[None], im[None])
    assert out["LMD"] == 0.0 and out["n_missing"] == 0


def test_shifted_copy_is_translation_free(astronaut):
    im, box, lms = astronaut
    dy, dx = 16, -8
    shifted = np.roll(im, (dy, dx), axis=(0, 1))
    # With the box shifted too, dlib's predictor is exactly equivariant: LMD is 0.
    sbox = (box[0] + dx, box[1] + dy, box[2] + dx, box[3] + dy)
    assert L.mouth_distance(L.landmarks68(shifted, sbox), lms) == 0.0
    # With detection on the shifted copy, only dlib's jitter remains.
    assert L.lmd(shifted[None], im[None])["LMD"] < DLIB_JITTER_PX


def test_mouth_warp_increases_lmd(astronaut):
    im, _, lms = astronaut
    cx, cy = lms[L.MOUTH].mean(0)
    yy, xx = np.mgrid[: im.shape[0], : im.shape[1]].astype(np.float32)
    weight = np.exp(-(((xx - cx) / 30) ** 2 + ((yy - cy) / 20) ** 2))
    warped = cv2.remap(im, xx, yy - 0.5 * (yy - cy) * weight, cv2.INTER_LINEAR)  # open the mouth
    assert L.lmd(warped[None], im[None])["LMD"] > 1.5 * DLIB_JITTER_PX


def test_frame_without_face_is_counted_missing(astronaut):
    im = astronaut[0]
    blank = np.zeros_like(im[:64, :64])
    out = L.lmd(np.stack([im[:64, :64], blank]), np.stack([blank, blank]))
    assert out["n_missing"] == 2 and np.isnan(out["LMD"])
    assert L.largest_face(np.zeros((64, 64, 3), np.float32)) is None
