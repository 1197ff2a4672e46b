"""The authors' green-background clean-up on a handcrafted buffer: which Gaussians it hits (their
colour seen from the training camera), what the face's prune and the mouth's fade do to them, and
its schedule."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ua3dtalk_jax.configs import get_config
from ua3dtalk_jax.gaussians import densify_config, empty_gaussians, init_grad_stats
from ua3dtalk_jax.gaussians.densify import DensifyConfig, background_cleanup, should_clean
from ua3dtalk_jax.gaussians.params import INACTIVE_LOGIT
from ua3dtalk_jax.gaussians.sh import C1, rgb_to_sh

CAP = 8
FROM_A = jnp.asarray([0.0, 0.0, -1.0])  # camera on −z: it sees the Gaussians along +z
FROM_B = jnp.asarray([0.0, 0.0, 1.0])  # camera on +z: along −z
FLOAT_TOL = 1e-5  # float32 softplus / inverse-softplus round trip

PAPER = get_config("paper")
FACE = densify_config(PAPER.model.gaussians.face, PAPER.train.face)
MOUTH = densify_config(PAPER.model.gaussians.mouth, PAPER.train.mouth)


def buffer(sh_degree: int = 1):
    """Slots: 0 pure green; 1 green with R = 40/255 (neither threshold); 2 (25, 230, 25)/255
    (the face's threshold only); 3 red; 4 green but free; 5 grey whose degree-1 band makes it
    green seen from A and magenta from B; 6-7 free."""
    g = empty_gaussians(CAP, sh_degree=1)
    rgb = jnp.asarray(
        [
            [0, 1, 0],
            [40 / 255, 1, 0],
            [25 / 255, 230 / 255, 25 / 255],
            [1, 0, 0],
            [0, 1, 0],
            [0.5, 0.5, 0.5],
        ],
        jnp.float32,
    )
    sh = g.sh.at[:6, 0].set(rgb_to_sh(rgb))
    # basis 2 is C1·d_z: ±0.5 per channel along ±z
    sh = sh.at[5, 2].set(jnp.asarray([-0.5, 0.5, -0.5]) / C1)
    active = jnp.asarray([True, True, True, True, False, True, False, False])
    rng = np.random.default_rng(0)
    return g.replace(
        means=g.means.at[:6].set(jnp.asarray(rng.uniform(-0.01, 0.01, (6, 3)), jnp.float32)),
        scales_raw=g.scales_raw.at[:6].set(jnp.log(jnp.linspace(0.01, 0.06, 6))[:, None]),
        opacity_logits=jnp.where(active, 1.5, INACTIVE_LOGIT),
        sh=sh,
        active=active,
        sh_degree=jnp.asarray(sh_degree, jnp.int32),
    )


def stats():
    s = init_grad_stats(CAP)
    return s.replace(
        grad_accum=jnp.arange(1.0, CAP + 1),
        count=jnp.full((CAP,), 3.0),
        max_radii=jnp.full((CAP,), 7.0),
    )


def _same_except(a, b, hit):
    for name in ("means", "scales_raw", "quats", "opacity_logits", "sh", "active"):
        x, y = np.asarray(getattr(a, name)), np.asarray(getattr(b, name))
        np.testing.assert_array_equal(x[~hit], y[~hit], err_msg=name)


def test_face_prunes_the_green_seen_from_the_training_camera():
    g = buffer()
    for campos, want in ((FROM_A, [0, 2, 5]), (FROM_B, [0, 2])):
        new, st, hit = background_cleanup(FACE, g, stats(), campos)
        hit = np.asarray(hit)
        assert list(np.flatnonzero(hit)) == want
        assert not np.asarray(new.active)[hit].any()
        np.testing.assert_array_equal(np.asarray(new.opacity_logits)[hit], INACTIVE_LOGIT)
        _same_except(new, g, hit)
        np.testing.assert_array_equal(np.asarray(st.grad_accum)[hit], 0.0)
        np.testing.assert_array_equal(np.asarray(st.count)[~hit], 3.0)
    # the view-dependent colour uses the active degree only: at degree 0 slot 5 is grey
    _, _, hit = background_cleanup(FACE, buffer(sh_degree=0), stats(), FROM_A)
    assert list(np.flatnonzero(np.asarray(hit))) == [0, 2]


def test_mouth_fades_halves_and_shrinks_with_its_stricter_thresholds():
    g, s0 = buffer(), stats()
    new, st, hit = background_cleanup(MOUTH, g, s0, FROM_A)
    hit = np.asarray(hit)
    assert list(np.flatnonzero(hit)) == [0, 5]  # (25, 230, 25) is not green enough for the mouth
    np.testing.assert_array_equal(np.asarray(new.active), np.asarray(g.active))
    opacity = np.asarray(jax.nn.sigmoid(new.opacity_logits))
    np.testing.assert_allclose(opacity[hit], 0.1, rtol=FLOAT_TOL)
    scale, scale0 = (np.asarray(jax.nn.softplus(x.scales_raw)) for x in (new, g))
    np.testing.assert_allclose(scale[hit], scale0[hit] / 10, rtol=FLOAT_TOL)
    np.testing.assert_array_equal(np.asarray(new.sh), np.asarray(g.sh))
    np.testing.assert_array_equal(np.asarray(new.means), np.asarray(g.means))
    acc, acc0 = np.asarray(st.grad_accum), np.asarray(s0.grad_accum)
    np.testing.assert_array_equal(acc[hit], acc0[hit] / 2)
    np.testing.assert_array_equal(acc[~hit], acc0[~hit])
    np.testing.assert_array_equal(np.asarray(st.count), np.asarray(s0.count))
    for name in ("scales_raw", "opacity_logits"):
        np.testing.assert_array_equal(
            np.asarray(getattr(new, name))[~hit], np.asarray(getattr(g, name))[~hit]
        )


def test_mouth_fade_on_the_raw_value_as_the_authors_write_it():
    literal = DensifyConfig(**{**MOUTH.__dict__, "bg_fade_raw": True})
    g = buffer()
    new, _, hit = background_cleanup(literal, g, stats(), FROM_A)
    hit = np.asarray(hit)
    np.testing.assert_allclose(np.asarray(new.scales_raw)[hit], np.asarray(g.scales_raw)[hit] / 10)
    # raw ≈ log d < 0: a tenth of it is a *larger* Gaussian under softplus
    assert (
        np.asarray(jax.nn.softplus(new.scales_raw))[hit]
        > np.asarray(jax.nn.softplus(g.scales_raw))[hit]
    ).all()


def test_off_leaves_everything_and_bad_modes_are_named():
    off = DensifyConfig(**{**FACE.__dict__, "bg_cleanup": "off"})
    g = buffer()
    new, _, hit = background_cleanup(off, g, stats(), FROM_A)
    assert not np.asarray(hit).any()
    _same_except(new, g, np.zeros(CAP, bool))
    assert not should_clean(off, 600)
    with pytest.raises(ValueError, match="bg_cleanup"):
        DensifyConfig(bg_cleanup="green")


def test_schedule_face_to_the_end_mouth_until_densify_until():
    assert (FACE.densify_from, FACE.densify_every, FACE.densify_until) == (500, 100, 49_000)
    assert (FACE.bg_red_max, FACE.bg_green_min, FACE.bg_blue_max) == (30 / 255, 225 / 255, 30 / 255)
    assert (MOUTH.bg_red_max, MOUTH.bg_green_min) == (20 / 255, 235 / 255)
    assert [should_clean(FACE, it) for it in (500, 600, 650, 48_900, 49_000, 50_000)] == [
        False,
        True,
        False,
        True,
        True,
        True,
    ]
    assert [should_clean(MOUTH, it) for it in (600, 44_900, 45_000, 49_000)] == [
        True,
        True,
        False,
        False,
    ]
