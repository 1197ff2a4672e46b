"""The torso layer's neck continuation under the chin (`data.torso`, TalkingGaussian's
`extract_torso_and_gt`): on a hand-drawn head / neck / torso layout at 256², and on every frame of
a generated synthetic subject."""

import json
import os

import cv2
import numpy as np
import pytest

from ua3dtalk_jax.data import Subject, layout, torso
from ua3dtalk_jax.data.synthetic import generate

SIZE = 256
NECK_RGB = (200.0, 150.0, 100.0)
HEAD_RGB = (0.0, 0.0, 255.0)  # a colour the continuation must never pick up
# Strip reach above the neck's top at 256²: NECK_EXTEND and NECK_DILATE scaled by 256/512.
REACH = round(torso.NECK_EXTEND / 2) + round(torso.NECK_DILATE / 2)
GREY_TOL = 1.0  # uint8 rounding of the layer


def _layout():
    """A round head whose chin sits on a neck band, shoulders below, background around."""
    yy, xx = np.mgrid[:SIZE, :SIZE] + 0.5
    head = (xx - 128) ** 2 / 60**2 + (yy - 100) ** 2 / 75**2 < 1
    neck = ~head & (np.abs(xx - 128) < 70) & (yy > 120) & (yy < 210)  # wider than the chin
    body = ~head & ~neck & (yy >= 200)
    rgb = np.zeros((SIZE, SIZE, 3), np.float32)
    rgb[neck | body] = NECK_RGB
    rgb[head] = HEAD_RGB
    return rgb, head, neck, body


def test_neck_continues_up_under_the_chin_and_nothing_else_changes():
    rgb, head, neck, body = _layout()
    alpha = (neck | body).astype(np.float32)
    out = torso.torso_rgba(rgb, alpha, head, neck, body)
    a = out[..., 3]
    # outside the head: the person exactly as given, background transparent
    np.testing.assert_array_equal(a[~head], np.round(255 * alpha[~head]))
    np.testing.assert_array_equal(
        out[~head & (alpha > 0), :3],
        np.broadcast_to(NECK_RGB, (int((~head & (alpha > 0)).sum()), 3)),
    )
    # under the head: an opaque strip REACH px up from every neck column's top, nothing above it
    covered = 0
    for c in np.nonzero(neck.any(0))[0]:
        top = int(neck[:, c].argmax())
        if not head[top - 1, c]:
            continue
        covered += 1
        assert (a[top - REACH : top, c] == 255).all(), f"column {c}: a hole under the chin"
        assert (a[: top - REACH - 1, c] == 0).all(), f"column {c}: the strip reaches too far"
        grey = out[top - REACH : top, c, :3].astype(float)
        assert (np.diff(grey[::-1, 0]) <= GREY_TOL).all(), "the strip darkens upward"
        assert grey[-1, 0] > NECK_RGB[0] * 0.9 and grey[0, 0] < grey[-1, 0]
        assert (grey[:, 2] <= NECK_RGB[2] + GREY_TOL).all(), "background-coloured strip edge"
    assert covered > 40
    assert (a[head & (np.mgrid[:SIZE, :SIZE][0] < 60)] == 0).all()  # the head stays open above


def test_a_soft_matte_keeps_its_alpha_and_a_neck_beside_no_head_is_not_continued():
    rgb, head, neck, body = _layout()
    alpha = (neck | body).astype(np.float32)
    fringe = body & (np.mgrid[:SIZE, :SIZE][1] > 240)
    alpha[fringe] = 0.4  # a matte's soft edge at the shoulder
    out = torso.torso_rgba(rgb, alpha, head, neck, body)
    assert (out[fringe, 3] == round(0.4 * 255)).all()
    beside = [c for c in np.nonzero(neck.any(0))[0] if not head[neck[:, c].argmax() - 1, c]]
    assert len(beside) > 10  # the layout has them: neck columns left and right of the chin
    strip_cols = np.nonzero(neck.any(0) & (out[..., 3] * head > 0).any(0))[0]
    side = round(torso.NECK_SIDE * SIZE / torso.REF_SIZE)
    for c in beside:
        top = int(neck[:, c].argmax())
        assert (out[:top, c, 3][~head[:top, c]] == 0).all(), (
            f"column {c}: continued above background"
        )
        if np.abs(strip_cols - c).min() > side:  # beyond the strip's sideways widening
            assert (out[:top, c, 3] == 0).all(), f"column {c}: continued above the head"


def test_the_strip_is_widened_over_the_jaw_lines_lateral_ends():
    """A chin wider than the neck's top (the jaw line's ends overhang background beside the
    neck): the strip runs up the neck's columns and is widened NECK_SIDE px sideways over the head,
    each widened pixel the colour of the strip's edge in its row (then blurred with the strip);
    nothing beyond."""
    head = np.zeros((SIZE, SIZE), bool)
    head[:100, 40:216] = True
    neck = np.zeros_like(head)
    neck[100:, 100:156] = True
    rgb = np.zeros((SIZE, SIZE, 3), np.float32)
    rgb[neck] = NECK_RGB
    rgb[100:, 100] = (90.0, 60.0, 30.0)  # the neck's left edge: the colour the left end copies
    rgb[head] = HEAD_RGB
    out = torso.torso_rgba(rgb, neck.astype(np.float32), head, neck, np.zeros_like(head))
    a = out[..., 3]
    side = round(torso.NECK_SIDE * SIZE / torso.REF_SIZE)
    rows = slice(100 - REACH, 100)
    assert (a[rows, 100:156] == 255).all()  # the strip up the neck's columns
    assert (a[rows, 100 - side : 100] == 255).all() and (a[rows, 156 : 156 + side] == 255).all()
    assert (a[rows, : 100 - side] == 0).all() and (a[rows, 156 + side :] == 0).all()
    assert (a[: 100 - REACH - 1] == 0).all()  # no higher than the strip
    left, right = out[rows, 100 - side : 100, :3], out[rows, 156 : 156 + side, :3]
    assert (left[..., 2] <= 30 + GREY_TOL).all() and (right[..., 2] <= NECK_RGB[2] + GREY_TOL).all()
    assert (left[..., 0] < right[..., 0]).all()  # each end continues its own edge colour


def test_the_strip_reaches_the_same_share_of_the_frame_at_every_size():
    reach = {}
    for size in (64, 128, 512):
        h = np.zeros((size, size), bool)
        h[: size // 2] = True
        n = np.zeros_like(h)
        n[size // 2 :, size // 4 : 3 * size // 4] = True
        out = torso.torso_rgba(
            np.full((size, size, 3), 128.0), n.astype(np.float32), h, n, np.zeros_like(h)
        )
        reach[size] = int((out[: size // 2, size // 2, 3] == 255).sum()) / size
    assert reach[512] == pytest.approx((torso.NECK_EXTEND + torso.NECK_DILATE) / 512)
    for size in (64, 128):
        assert reach[size] == pytest.approx(reach[512], abs=1.0 / size + 1e-9)


def test_mismatched_shapes_are_refused_by_name():
    rgb, head, neck, body = _layout()
    with pytest.raises(ValueError, match="neck"):
        torso.torso_rgba(rgb, np.ones((SIZE, SIZE)), head, neck[:-1], body)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return generate.generate_preset(str(tmp_path_factory.mktemp("syn") / "tiny"), "tiny", workers=1)


def test_every_frame_covers_the_neck_any_jaw_opening_uncovers(tiny):
    """Whatever jaw the model renders (any opening the subject shows), no chin leaves a hole: for
    every frame, each head pixel that some frame shows as neck is opaque in this frame's torso
    layer. Pixels touching the frame's background are left out: at the silhouette's edge the jaw
    side meets background, which the frame shows there anyway."""
    subject = Subject.open(tiny)
    keys = (
        "face_mask",
        "mouth_mask",
        "teeth_mask",
        "hair_mask",
        "neck_mask",
        "torso_mask",
        "mouth_open",
    )
    frames = [subject.frame(i, keys=keys) for i in range(len(subject))]
    ever_neck = np.any([f["neck_mask"] for f in frames], 0)
    opening = np.array([f["mouth_open"] for f in frames])
    assert opening.max() - opening.min() >= 4  # the jaw moves (px of inner-lip opening at 64²)
    exposed_total = 0
    for i, f in enumerate(frames):
        head = f["face_mask"] | f["mouth_mask"] | f["teeth_mask"] | f["hair_mask"]
        person = head | f["neck_mask"] | f["torso_mask"]
        edge = cv2.dilate((~person).astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        rgba = cv2.imread(os.path.join(tiny, layout.TORSO_DIR, f"{i}.png"), cv2.IMREAD_UNCHANGED)
        exposed = ever_neck & head & ~edge
        holes = exposed & (rgba[..., 3] < 255)
        assert not holes.any(), f"frame {i} (opening {opening[i]}): {holes.sum()} px open"
        exposed_total += int(exposed.sum())
    assert exposed_total > 20 * len(frames) * 0.5  # the check has pixels to look at


def test_a_subject_of_the_previous_generator_is_refused_with_what_changed(tiny, tmp_path):
    """The README's main job on a machine that still has the version-2 default subject: one
    line naming the subject, what version 3 changed and how to rebuild it."""
    old = tmp_path / "synthetic_default"
    old.mkdir()
    with open(os.path.join(tiny, layout.SUBJECT_JSON)) as f:
        doc = json.load(f)
    doc["metadata"]["generator_version"] = 2
    (old / layout.SUBJECT_JSON).write_text(json.dumps(doc))
    with pytest.raises(FileExistsError) as err:
        generate.ensure_synthetic(str(tmp_path), "synthetic_default")
    msg = str(err.value)
    assert "version 2" in msg and "neck under the chin" in msg and f"rm -r {old}" in msg
    assert "\n" not in msg
