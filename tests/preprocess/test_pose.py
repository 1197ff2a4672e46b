"""Rigid fit and focal search on exactly projected shapes with known poses; the roll of a real
photograph through MediaPipe (the one head rotation a single photo can show exactly)."""

import cv2
import numpy as np
from scipy.spatial.transform import Rotation
from skimage import data

from ua3dtalk_jax.preprocess import landmarks as lm
from ua3dtalk_jax.preprocess import pose

ROT_TOL_DEG = 0.05  # noiseless perspective projections: only solver tolerance remains
FOCAL_TOL = 0.05  # relative; the grid step is 0.2·W, refined by a parabola
SIZE = (256, 256)
REPROJ_TOL = 0.5  # px; the focal estimate is within FOCAL_TOL, not exact
ROLL_DEG = 12.0  # amplitude of the photograph's roll (a constant estimate is 7.6° off on average)
ROLL_TOL_DEG = 2.0  # the bound, as the mean over frames (measured 0.74°, max 1.3°)


def _shape(seed=0):
    """A face-like point cloud (cam-like axes, ~14 cm wide, 3 cm deep nose)."""
    rng = np.random.default_rng(seed)
    xy = rng.uniform(-1, 1, (478, 2)) * [0.07, 0.09]
    z = -0.03 * np.exp(-(xy**2).sum(1) / 0.002) + 0.02 * (xy[:, 0] / 0.07) ** 2
    shape = np.concatenate([xy, z[:, None]], 1)
    shape[pose.CHEEKS[0]] = [-0.07, 0, 0.02]
    shape[pose.CHEEKS[1]] = [0.07, 0, 0.02]
    return shape


def _project(shape, rot, t, focal):
    cam = shape @ rot.T + t
    uv = focal * cam[:, :2] / cam[:, 2:] + np.array(SIZE[::-1]) / 2
    z = focal * (cam[:, 2] - t[2]) / t[2]  # MediaPipe-like relative depth in px
    return np.concatenate([uv, z[:, None]], 1)


def test_umeyama_recovers_similarity():
    src = _shape()
    rot = Rotation.from_euler("xyz", [10, -20, 5], degrees=True).as_matrix()
    s, r, t = pose.umeyama(src, 3.0 * src @ rot.T + [1, 2, 3])
    np.testing.assert_allclose([s, *t], [3, 1, 2, 3], atol=1e-9)
    np.testing.assert_allclose(r, rot, atol=1e-9)


def test_poses_and_focal_from_projections():
    shape, focal = _shape(), 2.4 * SIZE[1]
    angles = np.stack(
        [
            8 * np.sin(np.arange(40) / 5),
            15 * np.sin(np.arange(40) / 7),
            3 * np.cos(np.arange(40) / 4),
        ],
        1,
    )
    rots = Rotation.from_euler("xyz", angles, degrees=True).as_matrix()
    t = np.array([0.01, -0.005, 0.45])
    lms = np.stack([_project(shape, r, t, focal) for r in rots])
    _, rigid0 = pose.canonical_shape(lms)
    est = pose.estimate_focal(lms, rigid0, SIZE)
    assert abs(est / focal - 1) < FOCAL_TOL, est
    fit = pose.fit_poses(lms, est, SIZE)
    views, canon = fit["viewmats"], fit["canon"]
    assert fit["reproj"].max() < REPROJ_TOL
    # world frame = canonical up to one fixed rotation Q: R_est_i = R_i · Q
    q = rots[0].T @ views[0, :3, :3]
    for r, v in zip(rots, views):
        delta = Rotation.from_matrix(r @ q @ v[:3, :3].T.astype(np.float64)).magnitude()
        assert np.degrees(delta) < ROT_TOL_DEG
    # the head stays at the origin: its centre projects where the shape's centre does
    np.testing.assert_allclose(np.linalg.det(views[:, :3, :3]), 1, atol=1e-5)
    width = np.linalg.norm(canon[pose.CHEEKS[0]] - canon[pose.CHEEKS[1]])
    assert abs(width - pose.FACE_WIDTH) < 1e-6


def test_roll_of_a_real_photograph():
    """The astronaut photograph rolled ±12° about the frame centre, tracked as a video.

    Rotating the image about the principal point is exactly a camera roll whatever the focal, so
    the truth is exact on a real face: R_i = Rz(−roll_i) · R_0 up to the fixed world frame Q.
    """
    img, n, side = data.astronaut(), 40, 192
    roll = ROLL_DEG * np.sin(2 * np.pi * np.arange(n) / n)
    frames = []
    for a in roll:  # a 300 px window around the face (centre 222, 150) at 192², rolled by a
        m = cv2.getRotationMatrix2D((222, 150), a, side / 300)
        m[:, 2] += (side / 2 - 222, side / 2 - 150)
        frames.append(
            cv2.warpAffine(
                img, m, (side, side), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE
            )
        )
    tracker = lm.FaceTracker()
    try:
        raw = [tracker(f) for f in frames]
    finally:
        tracker.close()
    assert all(r is not None for r in raw)
    lms = lm.fill_and_smooth(np.stack(raw), np.ones(n, bool))
    _, rigid = pose.canonical_shape(lms)
    fit = pose.fit_poses(lms, pose.estimate_focal(lms, rigid, (side, side)), (side, side))
    r_e = fit["viewmats"][:, :3, :3].astype(np.float64)
    r_t = Rotation.from_euler("z", -roll[:, None], degrees=True).as_matrix()  # cv2: + = ccw
    q = Rotation.from_matrix(np.einsum("nji,njk->nik", r_t, r_e)).mean().as_matrix()
    err = np.degrees(Rotation.from_matrix(r_t @ q @ np.swapaxes(r_e, 1, 2)).magnitude())
    print(f"roll ±{ROLL_DEG:g}°: rotation error mean {err.mean():.2f} max {err.max():.2f} deg")
    assert err.mean() < ROLL_TOL_DEG
