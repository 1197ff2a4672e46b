"""The plain-XLA Cholesky and triangular inverse against NumPy (float64) and their gradients."""

import jax
import jax.numpy as jnp
import numpy as np

from ua3dtalk_jax.models import small_linalg as S

TOL = 1e-9  # float64 round-off on well-conditioned 12×12 matrices


def _spd(seed, shape, d):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=shape + (d, d))
    return x @ np.swapaxes(x, -1, -2) + 0.5 * np.eye(d)


def test_cholesky_and_inverse_match_numpy():
    with jax.enable_x64(True):
        a = _spd(0, (3, 4), 12)
        low = np.asarray(S.cholesky(jnp.asarray(a)))
        np.testing.assert_allclose(low, np.linalg.cholesky(a), atol=TOL)
        assert np.all(np.triu(low, 1) == 0)
        inv = np.asarray(S.lower_inverse(jnp.asarray(low)))
        np.testing.assert_allclose(inv, np.linalg.inv(low), atol=1e-8)


def test_not_positive_definite_stays_finite_and_gradients_are_finite():
    a = jnp.asarray(-np.eye(4, dtype=np.float32))[None]
    assert np.all(np.isfinite(np.asarray(S.cholesky(a))))
    spd = jnp.asarray(_spd(1, (2,), 6), jnp.float32)
    g = jax.grad(lambda m: jnp.sum(S.lower_inverse(S.cholesky(m))))(spd)
    assert np.all(np.isfinite(np.asarray(g)))


def test_spd_inverse_value_and_closed_form_gradient_match_autodiff_of_numpy_inverse():
    with jax.enable_x64(True):
        a = jnp.asarray(_spd(2, (3,), 5))
        np.testing.assert_allclose(
            np.asarray(S.spd_inverse(a)), np.linalg.inv(np.asarray(a)), atol=1e-9
        )
        w = jnp.asarray(np.random.default_rng(4).normal(size=(3, 5, 5)))
        g = jax.grad(lambda m: jnp.sum(w * S.spd_inverse(m)))(a)
        g_ref = jax.grad(lambda m: jnp.sum(w * jnp.linalg.inv(m)))(a)
        np.testing.assert_allclose(np.asarray(g), np.asarray(g_ref), atol=1e-8)


def test_blocked_spd_inverse_matches_numpy_and_the_plain_inverse():
    # D = 48 (the paper's latent width: splits 24/12/6) and 13 (uneven split, a short last leaf)
    with jax.enable_x64(True):
        for d in (48, 13):
            a = jnp.asarray(_spd(5, (3,), d))
            got = np.asarray(S.spd_inverse_blocked(a))
            np.testing.assert_allclose(got, np.linalg.inv(np.asarray(a)), atol=TOL)
            np.testing.assert_allclose(got, np.asarray(S.spd_inverse(a)), atol=TOL)
            w = jnp.asarray(np.random.default_rng(6).normal(size=(3, d, d)))
            g = jax.grad(lambda m, w=w: jnp.sum(w * S.spd_inverse_blocked(m)))(a)
            g_ref = jax.grad(lambda m, w=w: jnp.sum(w * jnp.linalg.inv(m)))(a)
            np.testing.assert_allclose(np.asarray(g), np.asarray(g_ref), atol=1e-8)


def test_blocked_lower_inverse_is_the_inverse_cholesky_factor():
    with jax.enable_x64(True):
        a = _spd(7, (2,), 20)
        x = np.asarray(S.lower_inverse_of_factor(jnp.asarray(a), leaf=4))
        np.testing.assert_allclose(x, np.linalg.inv(np.linalg.cholesky(a)), atol=TOL)
        assert np.all(np.triu(x, 1) == 0)


def test_batch_last_factor_and_solves_match_numpy():
    with jax.enable_x64(True):
        a = _spd(4, (5,), 12)  # (N, D, D)
        b = np.random.default_rng(5).normal(size=(5, 12, 3))
        a_bl, b_bl = (jnp.asarray(np.moveaxis(x, 0, -1)) for x in (a, b))  # batch last
        low = S.cholesky_batch_last(a_bl)
        np.testing.assert_allclose(
            np.moveaxis(np.asarray(low), -1, 0), np.linalg.cholesky(a), atol=TOL
        )
        y = S.solve_lower_batch_last(low, b_bl)
        x = np.moveaxis(np.asarray(S.solve_upper_t_batch_last(low, y)), -1, 0)
        np.testing.assert_allclose(x, np.linalg.solve(a, b), atol=1e-8)


def test_batch_last_factor_of_a_non_positive_matrix_stays_finite():
    a = jnp.asarray(-np.eye(4, dtype=np.float32))[..., None]
    low = S.cholesky_batch_last(a)
    x = S.solve_upper_t_batch_last(low, S.solve_lower_batch_last(low, jnp.ones((4, 1, 1))))
    assert np.all(np.isfinite(np.asarray(low))) and np.all(np.isfinite(np.asarray(x)))
