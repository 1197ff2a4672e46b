"""Accuracy on the synthetic subject (known head poses, landmarks, blinks, expressions).

The synthetic subject's own frames and audio are written as an mp4, preprocessed at full frame
(crop 0,0,S,S, so pixel coordinates agree), and the recovered values compared with the truth the
generator wrote into its layout. Thresholds are the issue's; each test also checks that its bar
could not be passed by an uninformative estimate (a constant pose, a time-shifted expression), since
the synthetic head moves little (±3°/2°/1.5°) and its expressions change slowly (in-sample
canonical correlations of 16 coefficients against a time-shifted copy reach 0.99).
"""

import os

import numpy as np
import pytest
import soundfile
from scipy.spatial.transform import Rotation

from tests.preprocess import media
from ua3dtalk_jax.data import Subject
from ua3dtalk_jax.preprocess import pipeline

generate = pytest.importorskip("ua3dtalk_jax.data.synthetic.generate")

SIZE, FPS = 256, 25
ROT_TOL_DEG = 2.0  # the bound, read as the mean over frames
# Single frames stray further (measured p95 2.1°, max 2.9°). The error is MediaPipe's: its
# landmarks follow only half to two thirds of the synthetic head's pitch (the renderer warps the
# face inside a surround that moves half or not at all), while the same fit on the generator's
# exact 2D landmarks is within 0.3°.
ROT_P95_TOL_DEG = 3.0
LANDMARK_TOL_PX = 3.0
ROT_VS_STATIC = 0.7  # mean error / that of a constant pose (measured 1.11° / 2.00° = 0.55)
BLINK_F1_MIN = 0.8
EXP_CORR_MIN = 0.8
EXP_VAR_MIN = 1e-3  # ground-truth coefficients varying less than this carry no signal to recover
RIDGE = 1e-3  # per-frame ridge of the held-out linear map (coefficients have unit variance)


def _f1(pred, truth):
    return 2 * (pred & truth).sum() / max(pred.sum() + truth.sum(), 1)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("syn")
    truth_dir = generate.generate_subject(
        str(root / "truth"),
        seed=3,
        size=SIZE,
        fps=FPS,
        seconds_train=4.0,
        seconds_test=2.0,
        head_motion=True,
        workers=1,
    )
    truth = Subject.open(truth_dir)
    frames = np.stack([truth.frame(i, ["image"])["image"] for i in range(len(truth))])
    wav, _ = soundfile.read(os.path.join(truth_dir, "aud.wav"), dtype="float32")
    video = media.write_video(str(root / "syn.mp4"), frames, FPS, wav)
    out = pipeline.preprocess(
        video,
        str(root / "est"),
        fps=FPS,
        size=SIZE,
        crop=(0, 0, SIZE, SIZE),
        workers=1,
        progress=False,
    )
    return truth, Subject.open(out)


def test_head_rotation(pair):
    truth, est = pair
    n = len(truth)
    r_t = np.stack([truth.viewmat(i)[:3, :3] for i in range(n)]).astype(np.float64)
    r_e = np.stack([est.viewmat(i)[:3, :3] for i in range(n)]).astype(np.float64)
    # our world frame is the subject's canonical shape: the truth's up to one fixed rotation Q
    q = Rotation.from_matrix(np.einsum("nji,njk->nik", r_t, r_e)).mean().as_matrix()
    err = np.degrees(Rotation.from_matrix(r_t @ q @ np.swapaxes(r_e, 1, 2)).magnitude())
    spread = np.degrees(Rotation.from_matrix(r_t[0].T @ r_t).magnitude()).max()
    mean_t = Rotation.from_matrix(r_t).mean()
    static = np.degrees((Rotation.from_matrix(r_t) * mean_t.inv()).magnitude())  # constant estimate
    print(
        f"rotation error mean {err.mean():.2f} max {err.max():.2f} deg (motion up to "
        f"{spread:.1f}; a constant pose: mean {static.mean():.2f})"
    )
    assert err.mean() < ROT_TOL_DEG and np.percentile(err, 95) < ROT_P95_TOL_DEG
    assert err.mean() < ROT_VS_STATIC * static.mean()


def test_landmarks(pair):
    truth, est = pair
    t = np.load(os.path.join(truth.path, "landmarks.npy"))
    e = np.load(os.path.join(est.path, "landmarks.npy"))
    err = np.linalg.norm(t - e, axis=-1)
    print(f"landmark error mean {err.mean():.2f} px, 95th pct {np.percentile(err, 95):.2f} px")
    assert err.mean() < LANDMARK_TOL_PX
    # the 68-point landmarks (ori_imgs/<i>.lms, for LMD and the lip boxes)
    t68, e68 = (
        np.stack([s.frame(i, ["landmarks"])["landmarks"] for i in range(len(s))])
        for s in (truth, est)
    )
    err68 = np.linalg.norm(t68 - e68, axis=-1)
    print(f"68-point error mean {err68.mean():.2f} px, mouth {err68[:, 48:].mean():.2f} px")
    assert err68.mean() < LANDMARK_TOL_PX and err68[:, 48:].mean() < LANDMARK_TOL_PX


def test_blinks(pair):
    truth, est = pair
    b_t = np.array([truth.frame(i, ["blink"])["blink"] for i in range(len(truth))]) > 0.5
    b_e = np.array([est.frame(i, ["blink"])["blink"] for i in range(len(est))]) > 0.5
    f1 = _f1(b_e, b_t)
    print(f"blink frames truth {b_t.sum()} est {b_e.sum()} F1 {f1:.2f}")
    assert b_t.sum() > 0, "the test clip must contain blinks"
    assert f1 >= BLINK_F1_MIN


def test_expression_coefficients(pair):
    truth, est = pair
    g = np.load(os.path.join(truth.path, "exp_coeffs.npy")).astype(np.float64)
    e = np.load(os.path.join(est.path, "exp_coeffs.npy")).astype(np.float64)[:, : g.shape[1]]
    g = g[:, g.var(0) > EXP_VAR_MIN]
    # first canonical correlations between the two sets, dims limited to what the truth varies
    qa, _ = np.linalg.qr(g - g.mean(0))
    qb, _ = np.linalg.qr(e - e.mean(0))
    cc = np.linalg.svd(qa.T @ qb, compute_uv=False)
    print(f"canonical correlations {np.round(cc, 2)} (truth dims varying: {g.shape[1]})")
    assert cc[0] >= EXP_CORR_MIN
    # in-sample canonical correlations overfit slow signals; the held-out check: the linear map
    # from our coefficients to the truth, fitted on every other second, predicts the seconds between
    # (measured 0.92 here, 0.87-0.89 on two other clips; time-shifted estimates 0.44-0.72)
    r = _heldout_correlation(g, e)
    shifted = _heldout_correlation(g, np.roll(e, len(e) // 2, 0))  # right values, wrong frames
    print(f"held-out correlation {r:.2f} (time-shifted estimate {shifted:.2f})")
    assert r >= EXP_CORR_MIN > shifted


def _heldout_correlation(g, e):
    """Variance-weighted mean correlation of each truth column g (N, G) with its ridge prediction
    from e (N, E): alternate one-second blocks fit the map and test it, both ways round."""
    fold = (np.arange(len(g)) // FPS) % 2 == 0
    rs = []
    for fit in (fold, ~fold):
        x, y = e[fit] - e[fit].mean(0), g[fit] - g[fit].mean(0)
        w = np.linalg.solve(x.T @ x + RIDGE * len(x) * np.eye(x.shape[1]), x.T @ y)
        pred = (e[~fit] - e[fit].mean(0)) @ w
        a, b = pred - pred.mean(0), g[~fit] - g[~fit].mean(0)
        norm = np.sqrt((a**2).sum(0) * (b**2).sum(0))
        # a column constant within a fold carries no signal there: correlation 0
        rs.append(np.divide((a * b).sum(0), norm, out=np.zeros(len(norm)), where=norm > 1e-12))
    return float((np.mean(rs, 0) * g.var(0)).sum() / g.var(0).sum())
