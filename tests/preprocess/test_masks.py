"""Landmark-polygon masks and person segmentation on the astronaut photo; the background plate."""

import numpy as np
from skimage import data

from ua3dtalk_jax.preprocess import landmarks as lm
from ua3dtalk_jax.preprocess import masks


def test_region_masks_on_astronaut():
    img = data.astronaut()
    tracker, seg = lm.FaceTracker(static=True), masks.PersonSegmenter()
    try:
        pts = tracker(img)
        m = masks.region_masks(img, pts, seg(img))
    finally:
        tracker.close()
        seg.close()
    names = ("face", "mouth", "teeth", "hair", "neck", "torso")
    stack = np.stack([m[k] for k in names]).astype(int)
    assert stack[[0, 1, 3, 4, 5]].sum(0).max() == 1  # regions are disjoint (teeth ⊂ mouth)
    assert not (m["teeth"] & ~m["mouth"]).any() and m["teeth"].sum() > 20  # she smiles: teeth
    nose = pts[4, :2].astype(int)
    assert m["face"][nose[1], nose[0]]
    assert m["hair"][40, 220] and not m["person"][20, 480]  # hair above the face; wall at the right
    assert m["torso"][480, 250]  # the suit
    assert m["eyes"][int(pts[159, 1]) + 1, int(pts[159, 0])]  # just under the upper lid
    box = masks.eye_boxes(pts)
    assert box.shape == (2, 4) and (box[:, 1] > box[:, 0]).all()
    # torso_imgs: the frame on neck and torso, the neck continued up under the chin (data.torso)
    rgba = masks.torso_image(img, m)
    body = m["neck"] | m["torso"]
    np.testing.assert_array_equal(rgba[body, :3], img[body])
    head = m["face"] | m["mouth"] | m["hair"]
    assert (rgba[body, 3] == 255).all() and (rgba[~body & ~head, 3] == 0).all()
    chin = pts[152, :2].astype(int)
    assert (rgba[chin[1] - 10 : chin[1], chin[0], 3] == 255).all()  # under the chin
    assert (rgba[nose[1], nose[0], 3] == 0).all()  # the rest of the face stays open


def test_background_plate_median_and_inpainting():
    h = w = 40
    bg = np.zeros((h, w, 3), np.uint8)
    bg[:, :, 0] = np.arange(w)[None] * 5
    plate = masks.BackgroundPlate((h, w), max_samples=10)
    for t in range(10):
        frame = bg.copy()
        person = np.zeros((h, w), bool)
        person[10:30, 2 + 3 * t : 12 + 3 * t] = True  # a walker crossing the frame
        person[32:, 15:25] = True  # something never moving: never seen behind
        frame[person] = 255
        frame[0, 0] = 200 if t == 3 else frame[0, 0]  # a one-frame flicker the median removes
        plate.add(frame, person)
    out, seen = plate.plate()
    ok = seen.copy()
    ok[30:, :] = False  # near the never-seen block, inpainting
    np.testing.assert_array_equal(out[ok], bg[ok])
    assert not seen[36, 20] and seen[20, 20]
    assert abs(int(out[36, 20, 0]) - int(bg[36, 20, 0])) < 30  # inpainted from the sides
    assert out[36, 20, 1] < 30  # the never-seen white block is gone


def test_temporal_person_removes_blips_and_keeps_moving_edges():
    """A one-frame blob (a moving window read as person) goes; an edge sweeping across the frame
    keeps each frame's own position (the median of a single crossing is the middle frame's)."""
    n, w = 12, 20
    frames = [np.full((4, w, 3), t, np.uint8) for t in range(n)]  # the frame index in its pixels

    def seg(frame):
        t = int(frame[0, 0, 0])
        prob = (np.arange(w)[None].repeat(4, 0) < t + 3).astype(np.float32)  # edge at col t + 3
        if t == 6:
            prob[:, 15:] = 1  # the blip
        return prob

    out = list(masks.temporal_person(iter(frames), seg, radius=2))
    assert [int(f[0, 0, 0]) for f, _ in out] == list(range(n))  # every frame, in order
    for t, (_, prob) in enumerate(out):
        np.testing.assert_array_equal(
            prob > 0.5, seg(frames[t]) > 0.5 if t != 6 else np.arange(w)[None].repeat(4, 0) < t + 3
        )
    assert len(list(masks.temporal_person(iter(frames[:1]), seg))) == 1
    assert list(masks.temporal_person(iter([]), seg)) == []
