"""Uncertainty maps: alpha-normalised splatting, face-over-mouth compositing, the PNG/mp4 output."""

import os

import jax.numpy as jnp
import numpy as np
import pytest

from ua3dtalk_jax.eval import uncertainty_maps as um
from ua3dtalk_jax.head.workdir import Workdir

# float32 compositing of a few Gaussians: sums of weights that should be 1 agree to ~1e-6; the
# rasterizer's per-pixel sums of ~50 Gaussians stay well inside 1e-4.
TOL = 1e-4


def _branch(alpha, per_channel):
    """A fake `branch_maps` result whose Gaussians all carry the constant `per_channel` values."""
    alpha = jnp.asarray(alpha, jnp.float32)
    vals = jnp.stack([c * alpha for c in per_channel])
    return {"rgb": jnp.zeros(alpha.shape + (3,)), "alpha": alpha, "values": vals}


def test_combine_normalises_by_alpha_and_blanks_empty_pixels():
    alpha = np.array([[0.9, 0.5], [0.2, 0.01]], np.float32)
    views = ("audio", "exp")
    consts = [2.0, 3.0, 0.5, 0.7, 0.4, 0.6]  # aleatoric a/e, epistemic a/e, weights a/e
    _, names, maps = um.combine(_branch(alpha, consts), None, views, ())
    assert names == list(views)
    for qi, q in enumerate(um.QUANTITIES):
        m = np.asarray(maps[q])
        for v in range(2):
            np.testing.assert_allclose(m[v][alpha >= um.ALPHA_MIN], consts[2 * qi + v], rtol=TOL)
            assert np.isnan(m[v][alpha < um.ALPHA_MIN]).all()


def test_combine_face_over_mouth_and_face_only_view():
    af = np.array([[0.8, 0.0, 0.3]], np.float32)
    am = np.array([[0.9, 0.9, 0.0]], np.float32)
    face = _branch(af, [1.0, 4.0] + [0.0, 0.0] + [0.5, 0.5])  # views audio, emotion
    mouth = _branch(am, [3.0] + [0.0] + [1.0])  # view audio
    _, names, maps = um.combine(face, mouth, ("audio", "emotion"), ("audio",))
    assert names == ["audio", "emotion"]
    a = np.asarray(maps["aleatoric"])
    want = (1.0 * af + (1 - af) * 3.0 * am) / (af + (1 - af) * am)
    np.testing.assert_allclose(a[0], want, rtol=TOL)
    # the emotion view exists in the face only: its own value wherever the face is visible
    np.testing.assert_allclose(a[1][af >= um.ALPHA_MIN], 4.0, rtol=TOL)
    assert np.isnan(a[1][af < um.ALPHA_MIN]).all()


def test_models_without_uncertainty_or_deformation_are_refused():
    from ua3dtalk_jax.configs import get_config
    from ua3dtalk_jax.eval.ablation import ablation_config
    from ua3dtalk_jax.models.motion import MotionNetwork, motion_spec

    cfg = ablation_config(get_config("tiny"), "+P")  # U off
    net = MotionNetwork(motion_spec(cfg.model, "face"))
    with pytest.raises(ValueError, match="without uncertainty"):
        um.branch_maps(net, {}, None, {}, width=8, height=8)
    cfg.train.deform = False
    with pytest.raises(ValueError, match="train.deform=False"):
        um.make_frame_fn(cfg, {}, width=8, height=8)
    with pytest.raises(ValueError, match="branch"):
        um.make_frame_fn(cfg, {}, width=8, height=8, branch="torso")


def test_colour_ranges_and_frames_spec(tiny_trained):
    from ua3dtalk_jax.data import Subject

    r = um.colour_ranges(
        [{"aleatoric": np.array([np.nan, 1.0, 2.0, 3.0]), "epistemic": np.array([0.0, np.nan])}]
    )
    assert 1.0 <= r["aleatoric"][0] < r["aleatoric"][1] <= 3.0
    assert r["epistemic"][0] > 0 and r["view_weights"] == (0.0, 1.0)
    s = Subject.open(tiny_trained["subject"])
    np.testing.assert_array_equal(um.parse_frames(None, s), s.split("val"))
    np.testing.assert_array_equal(um.parse_frames("3:6", s), [3, 4, 5])
    np.testing.assert_array_equal(um.parse_frames("1,4", s), [1, 4])
    for bad in ("x", f"0:{len(s) + 1}", "-1"):
        with pytest.raises(ValueError, match="--frames"):
            um.parse_frames(bad, s)


@pytest.mark.slow
def test_uncertainty_maps_of_tiny_workdir(tiny_trained, tmp_path):
    """Real heads: the splatted fusion weights of the face branch sum to 1 over the views (the
    per-Gaussian weights do, and splatting is linear); PNGs and an mp4 with audio are written."""
    from ua3dtalk_jax.data import Subject
    from ua3dtalk_jax.data.video import probe
    from ua3dtalk_jax.head.features import frame_with_features

    wd, subj = tiny_trained["workdir"], tiny_trained["subject"]
    model = Workdir(wd).load_trained(subj, drivable=False)
    cfg, heads = model.cfg, model.heads
    s = Subject.open(subj)
    i = int(s.split("val")[0])
    features = Workdir(wd).stage1_features(s)
    frame = {k: jnp.asarray(v) for k, v in frame_with_features(s, features, i).items()}
    fn, views = um.make_frame_fn(cfg, heads, width=s.size[1], height=s.size[0], branch="face")
    assert views == list(heads["face"][0].spec.view_names)
    _, maps = fn(frame)
    w = np.asarray(maps["view_weights"])
    seen = np.isfinite(w).all(0)
    assert seen.mean() > 0.05, "the face branch covers almost no pixel"
    np.testing.assert_allclose(w[:, seen].sum(0), 1.0, atol=TOL)
    for q in ("aleatoric", "epistemic"):
        m = np.asarray(maps[q])[:, seen]
        assert (m >= 0).all() and np.isfinite(m).all()

    frames = s.split("val")[:3]
    res = um.render_uncertainty(
        wd,
        subj,
        frames=f"{frames[0]}:{frames[-1] + 1}",
        branch="face",
        out_dir=str(tmp_path),
        log=lambda *_: None,
    )
    assert [os.path.basename(p) for p in res["pngs"]] == [f"face_{int(f):05d}.png" for f in frames]
    info = probe(res["mp4"])
    assert info["frames"] == 3
    assert info["audio_seconds"] == pytest.approx(3 / s.fps, abs=0.05)
    assert res["views"] == list(heads["face"][0].spec.view_names)
