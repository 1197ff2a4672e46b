"""Schedules and parameter groups."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ua3dtalk_jax.train import optim


def test_exponential_lr_end_points_and_log_linear_midpoint():
    s = optim.exponential_lr(1.6e-4, 1.6e-6, 45000)
    assert float(s(0)) == pytest.approx(1.6e-4, rel=1e-6)
    assert float(s(45000)) == pytest.approx(1.6e-6, rel=1e-5)
    assert float(s(90000)) == pytest.approx(1.6e-6, rel=1e-5)
    assert float(s(22500)) == pytest.approx(1.6e-5, rel=1e-5)


def test_motion_factor_matches_authors_formula():
    f = optim.motion_factor(40000, 50000)
    for it in (0, 1000, 39999, 40000, 49999):
        want = 0.5 ** (it / 40000) if it < 40000 else 0.1 ** (it / 50000)
        assert float(f(it)) == pytest.approx(want, rel=1e-5)


def test_grouped_applies_each_groups_rate_and_rejects_unknown_groups():
    params = {"grid": {"plane": jnp.ones(3)}, "mlp": {"w": jnp.ones(3)}}
    label_of = lambda p: "grid" if p.startswith("grid") else "net"
    tx = optim.grouped({"grid": optax.sgd(1.0), "net": optax.sgd(0.1)}, params, label_of)
    state = tx.init(params)
    grads = {"grid": {"plane": jnp.ones(3)}, "mlp": {"w": jnp.ones(3)}}
    updates, _ = tx.update(grads, state, params)
    np.testing.assert_allclose(updates["grid"]["plane"], -1.0)
    np.testing.assert_allclose(updates["mlp"]["w"], -0.1)
    with pytest.raises(ValueError, match="no optimiser for parameter groups"):
        optim.grouped({"grid": optax.sgd(1.0)}, params, label_of)
