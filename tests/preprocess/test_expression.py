"""PCA expression coefficients and the EAR blink signal on shapes with known ground truth."""

import numpy as np

from ua3dtalk_jax.preprocess import expression as ex

CCA_MIN = 0.99  # noise-free linear expressions: the PCA subspace must contain them
BLINK_F1_MIN = 0.95
HELD_CHANGE_MAX = 0.1  # closure allowed on a held change of eye aperture (no blink)


def _canonical_correlations(a, b):
    qa, _ = np.linalg.qr(a - a.mean(0))
    qb, _ = np.linalg.qr(b - b.mean(0))
    return np.linalg.svd(qa.T @ qb, compute_uv=False)


def test_basis_recovers_linear_expressions():
    rng = np.random.default_rng(0)
    mean = rng.normal(size=(478, 3))
    modes = rng.normal(size=(3, 478, 3))
    truth = rng.normal(size=(200, 3)) * [3, 2, 1]
    shapes = mean + np.einsum("ne,evc->nvc", truth, modes) + 1e-3 * rng.normal(size=(200, 478, 3))
    m, basis, std = ex.fit_basis(shapes)
    assert basis.shape == (ex.EXP_DIM, 468, 3) and std.shape == (ex.EXP_DIM,)
    coef = ex.project(shapes, m, basis, std)
    np.testing.assert_allclose(coef[:, :3].std(0), 1, atol=0.02)  # unit variance per component
    assert _canonical_correlations(truth, coef[:, :3]).min() > CCA_MIN
    flat = basis.reshape(ex.EXP_DIM, -1)[:3]
    np.testing.assert_allclose(flat @ flat.T, np.eye(3), atol=1e-5)


def test_blink_from_eye_aspect_ratio():
    n = 100
    closed = np.zeros(n, bool)
    for start in (10, 40, 75):
        closed[start : start + 4] = True
    lms = np.zeros((n, 478, 3))
    for p1, p2, p3, p4, p5, p6 in ex.EYE_POINTS:
        lms[:, p1, 0], lms[:, p4, 0] = 0.0, 3.0  # eye 3 units wide
        lid = np.where(closed, 0.1, 0.45)
        lms[:, [p2, p3], 1], lms[:, [p6, p5], 1] = -lid[:, None], lid[:, None]
    ear = ex.eye_aspect_ratio(lms)
    np.testing.assert_allclose(ear[~closed], 0.3, atol=1e-9)
    c = ex.blink_closure(ear)
    pred = c > ex.BLINK_THRESHOLD
    f1 = 2 * (pred & closed).sum() / (pred.sum() + closed.sum())
    assert f1 >= BLINK_F1_MIN
    assert np.abs(ex.au45(c)[~closed]).max() == 0
    # no blink at all: closure stays near zero instead of amplifying noise
    flat = 0.3 + 0.005 * np.random.default_rng(0).normal(size=n)
    assert ex.blink_closure(flat).max() < 0.2
    # wide eyes relaxing over 12 frames into a held squint (EAR 0.4 → 0.22) with one blink later:
    # the step is not a blink (a centred baseline window read closure ~0.5 around it)
    ear = np.where(np.arange(n) < 30, 0.4, 0.22)
    ear[30:42] = np.linspace(0.4, 0.22, 12)
    ear[70:74] = 0.05
    c = ex.blink_closure(ear)
    assert c[:66].max() < HELD_CHANGE_MAX and c[70:74].min() > ex.BLINK_THRESHOLD
