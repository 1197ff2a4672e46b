"""The synthetic renderer's fast path (cv2 id buffer + per-triangle affine maps) against a slow
per-triangle barycentric rasteriser with a z-test, and the rest pose against the photo."""

import numpy as np
import pytest

from ua3dtalk_jax.data.synthetic import animation, face_model, render
from ua3dtalk_jax.data.synthetic.blendshapes import EXP_NAMES, E

RES = 96
UV_TOL = 1e-2  # texture px: float32 affine maps vs float64 barycentric interpolation
EDGE_UV_MEAN_TOL, EDGE_UV_P99_TOL = (
    0.05,
    0.25,
)  # texture px over all covered pixels (measured 0.01, 0.05)
HOLE_SHARE = 0.6  # the one-pixel edge band of a ~10 px mouth opening (measured 77 of 98 pixels)
REST_TOL = 6.0  # mean |Δ| grey levels, rest render vs the photo crop away from the mouth


@pytest.fixture(scope="module")
def model():
    return face_model.build_face_model(size=RES // render.SUPERSAMPLE)


def _reference(pix, depth, tris, uv, res):
    """Per-pixel front triangle by barycentric inclusion (painter order) and interpolated uv."""
    ids = np.full((res, res), render.NO_TRIANGLE, np.int64)
    yy, xx = np.mgrid[:res, :res] + 0.5
    for t in np.argsort(-depth[tris].mean(1), kind="stable"):
        a, b, c = pix[tris[t]]
        det = (b[1] - c[1]) * (a[0] - c[0]) + (c[0] - b[0]) * (a[1] - c[1])
        if abs(det) < 1e-9:
            continue
        lo, hi = np.floor(pix[tris[t]].min(0)).astype(int), np.ceil(pix[tris[t]].max(0)).astype(int)
        sl = (slice(max(lo[1], 0), max(hi[1] + 1, 0)), slice(max(lo[0], 0), max(hi[0] + 1, 0)))
        x, y = xx[sl], yy[sl]
        w0 = ((b[1] - c[1]) * (x - c[0]) + (c[0] - b[0]) * (y - c[1])) / det
        w1 = ((c[1] - a[1]) * (x - c[0]) + (a[0] - c[0]) * (y - c[1])) / det
        inside = (w0 >= 0) & (w1 >= 0) & (w0 + w1 <= 1)
        ids[sl][inside] = t
    uvs = np.zeros((res, res, 2))
    for t in np.unique(ids[ids != render.NO_TRIANGLE]):
        a, b, c = pix[tris[t]]
        m = ids == t
        det = (b[1] - c[1]) * (a[0] - c[0]) + (c[0] - b[0]) * (a[1] - c[1])
        w0 = ((b[1] - c[1]) * (xx[m] - c[0]) + (c[0] - b[0]) * (yy[m] - c[1])) / det
        w1 = ((c[1] - a[1]) * (xx[m] - c[0]) + (a[0] - c[0]) * (yy[m] - c[1])) / det
        uvs[m] = w0[:, None] * uv[tris[t, 0]] + w1[:, None] * uv[tris[t, 1]]
        uvs[m] += (1 - w0 - w1)[:, None] * uv[tris[t, 2]]
    return ids, uvs - 0.5  # texture index coordinates, as cv2.remap takes them


@pytest.mark.parametrize("expression", ["rest", "talking_turned"])
def test_id_buffer_and_maps_match_barycentric_reference(model, expression):
    exp, viewmat = np.zeros(E), np.eye(4)
    viewmat[:3, 3] = model.t0
    if expression == "talking_turned":
        exp[EXP_NAMES.index("jaw_open")] = 0.8
        exp[EXP_NAMES.index("smile_left")] = 0.6
        viewmat = animation.head_viewmats(30, 25, model.t0, np.random.default_rng(1), True)[20]
    cam = render.camera_vertices(model, exp, viewmat)
    pix = face_model.project(cam, model.focal, model.size) * render.SUPERSAMPLE
    ids = render.id_buffer(pix, cam[:, 2], model.tris, RES)
    map_x, map_y = render.texture_maps(ids, pix, model.uv, model.tris)
    ref_ids, ref_uv = _reference(pix, cam[:, 2], model.tris, model.uv, RES)
    same = ids.astype(np.int64) == ref_ids
    hit = same & (ref_ids != render.NO_TRIANGLE)
    np.testing.assert_allclose(map_x[hit], ref_uv[hit, 0], atol=UV_TOL)
    np.testing.assert_allclose(map_y[hit], ref_uv[hit, 1], atol=UV_TOL)
    # cv2 also fills pixels its edges touch, so a neighbour may own an edge pixel: its affine map
    # extrapolated by < 1 px lands within a fraction of a texel (except on the closed-lip seam).
    both = (ids != render.NO_TRIANGLE) & (ref_ids != render.NO_TRIANGLE)
    dist = np.hypot(map_x - ref_uv[..., 0], map_y - ref_uv[..., 1])[both]
    assert dist.mean() < EDGE_UV_MEAN_TOL and np.percentile(dist, 99) < EDGE_UV_P99_TOL
    fast_hole, ref_hole = ids == render.NO_TRIANGLE, ref_ids == render.NO_TRIANGLE
    assert not (fast_hole & ~ref_hole).any()  # over-coverage only shrinks the mouth opening
    if expression == "talking_turned":
        assert fast_hole.sum() >= HOLE_SHARE * ref_hole.sum() > 0


def test_rest_pose_reproduces_the_photo_away_from_the_mouth(model):
    import cv2

    viewmat = np.eye(4)
    viewmat[:3, 3] = model.t0
    out = render.render_frame(model, np.zeros(E), viewmat)
    size = model.size
    tex = cv2.resize(model.texture, (size, size), interpolation=cv2.INTER_AREA).astype(float)
    alpha = tex[..., 3:] / 255
    photo = alpha * tex[..., :3] + (1 - alpha) * model.background
    lips = out["landmarks"][[61, 291, 0, 17]]
    yy, xx = np.mgrid[:size, :size] + 0.5
    centre, radius = lips.mean(0), 0.75 * np.ptp(lips[:, 0])
    away = (xx - centre[0]) ** 2 + (yy - centre[1]) ** 2 > radius**2
    assert np.abs(out["image"] - photo)[away].mean() < REST_TOL
