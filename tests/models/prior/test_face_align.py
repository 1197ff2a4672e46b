"""Deep3DFaceRecon's 5-point alignment: the template geometry, the image warp, a real photograph."""

import numpy as np
import pytest

from ua3dtalk_jax.models.prior import face_align as fa

# Frontal points land on the template up to the integer crop offset and the floor of the resized
# size (each < 1 px) and the resize's half-pixel shift: measured ≤ 1.25 px.
TEMPLATE_TOL_PX = 1.5
# A real face is not the mean BFM face (the astronaut smiles: wider mouth, a slight roll): its
# points sit 6.0-11.2 px (mean 8.5) from the template in the 224² crop, at 102 px per BFM unit;
# a misplaced crop (a y flip missed, a wrong scale) is off by tens of pixels.
PHOTO_TEMPLATE_MAX_PX, PHOTO_TEMPLATE_MEAN_PX = 16.0, 12.0
# MediaPipe re-run on the aligned crop vs the original points through the affine: the tracker's
# own disagreement between a 512² and a 224² view of one face (measured ≤ 2.2 px, the nose tip).
REDETECT_TOL_PX = 3.5


def _frontal(k: float, cx: float, cy: float) -> np.ndarray:
    """The template face seen frontally at k px per unit, centred at (cx, cy), rows down."""
    return np.stack([cx + k * fa.LM3D_STD[:, 0], cy - k * fa.LM3D_STD[:, 1]], axis=1)


@pytest.mark.parametrize(
    "k,cx,cy,hw",
    [(100, 250, 260, (512, 512)), (30, 40, 35, (64, 80)), (400, 700, 500, (1080, 1920))],
)
def test_frontal_points_land_on_the_template(k, cx, cy, hw):
    p = _frontal(k, cx, cy)
    prm = fa.align_params(p, hw)
    np.testing.assert_allclose(prm["scale"], 102.0 / k, rtol=1e-9)  # POS recovers the scale
    np.testing.assert_allclose(
        fa.apply_affine(prm["affine"], p), fa.template_points(), atol=TEMPLATE_TOL_PX
    )


def test_aligned_image_moves_the_pixels_where_the_affine_says():
    """Five bright dots at the points of a 300×400 frame reappear at the affine's positions."""
    h, w = 300, 400
    p = _frontal(120, 210, 140) + np.array([[3.0, -2.0], [-1, 4], [0, 0], [2, 1], [-3, 2]])
    img = np.zeros((h, w, 3), np.uint8)
    yy, xx = np.mgrid[0:h, 0:w]
    for x, y in p:  # Gaussian dots (σ 2.5 px) the resize keeps the centre of
        img[..., 1] = np.maximum(
            img[..., 1], (255 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / 12.5)).astype(np.uint8)
        )
    aligned, affine = fa.align_face(img, p)
    assert aligned.shape == (224, 224, 3) and aligned.dtype == np.uint8
    for q in fa.apply_affine(affine, p):
        r0, c0 = int(round(q[1])) - 6, int(round(q[0])) - 6
        win = aligned[r0 : r0 + 13, c0 : c0 + 13, 1].astype(np.float64)
        yy2, xx2 = np.mgrid[0:13, 0:13]
        centroid = np.array([(win * xx2).sum(), (win * yy2).sum()]) / win.sum() + [c0, r0]
        np.testing.assert_allclose(centroid, q, atol=0.5)


def test_a_face_near_the_border_is_padded_with_zeros():
    p = _frontal(60, 10, 40)  # the face's left half outside a 100×100 frame
    img = np.full((100, 100, 3), 200, np.uint8)
    aligned, affine = fa.align_face(img, p)
    (c0, r0), (c1, r1) = fa.apply_affine(affine, [[-0.5, -0.5], [99.5, 99.5]])  # the frame's edges
    assert c0 > 10 and r1 < 214  # the frame ends inside the crop on the left and at the bottom
    inside = np.zeros((224, 224), bool)
    inside[max(0, int(r0) + 1) : int(r1), int(c0) + 1 : min(224, int(c1))] = True
    outside = np.ones((224, 224), bool)
    outside[max(0, int(r0) - 1) : int(r1) + 2, int(c0) - 1 : int(c1) + 2] = False
    assert (aligned[inside] == 200).all() and not aligned[outside].any()


def test_photo_face_is_aligned_where_the_template_says():
    """The astronaut photograph: MediaPipe's mesh → 5 points → aligned crop; the points land near
    the template, and the tracker finds the face in the crop where the affine put it."""
    skimage_data = pytest.importorskip("skimage.data")
    from ua3dtalk_jax.preprocess.landmarks import FaceTracker

    img = skimage_data.astronaut()
    lm = FaceTracker(static=True)(img)
    p = fa.five_points(lm)
    aligned, affine = fa.align_face(img, p)
    q = fa.apply_affine(affine, p)
    d = np.linalg.norm(q - fa.template_points(), axis=1)
    print(f"astronaut: 5 points vs template, px: {np.round(d, 1)}")
    assert d.max() <= PHOTO_TEMPLATE_MAX_PX and d.mean() <= PHOTO_TEMPLATE_MEAN_PX
    again = FaceTracker(static=True)(aligned)
    assert again is not None
    np.testing.assert_allclose(fa.five_points(again), q, atol=REDETECT_TOL_PX)


def test_mediapipe_points_are_the_68_point_ones():
    """MEDIAPIPE_5 picks the mesh vertices that the project's 68-point map uses for the same
    iBUG points, so either landmark set gives the same 5 points."""
    from ua3dtalk_jax.preprocess.landmarks import N_LANDMARKS, to_dlib68

    mesh = np.random.default_rng(0).uniform(0, 500, (N_LANDMARKS, 2))
    np.testing.assert_allclose(fa.five_points(mesh), fa.five_points(to_dlib68(mesh)), atol=1e-3)
    assert fa.five_points(np.c_[mesh, np.ones(N_LANDMARKS)]).shape == (5, 2)  # (478, 3) too


def test_bad_landmarks_are_refused_and_missing_ones_use_the_template():
    with pytest.raises(ValueError, match=r"\(68, 2\) or \(478, 2\)"):
        fa.five_points(np.zeros((10, 2)))
    with pytest.raises(ValueError, match="degenerate"):
        fa.align_params(np.zeros((5, 2)), (100, 100))
    m = fa.missing_points((256, 256))  # SadTalker's square frames: a frontal template face
    q = fa.apply_affine(fa.align_params(m, (256, 256))["affine"], m)
    np.testing.assert_allclose(q, fa.template_points(), atol=TEMPLATE_TOL_PX)
