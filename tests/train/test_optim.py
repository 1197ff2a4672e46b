"""Schedules and parameter groups."""

import jax
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


def test_advance_schedules_moves_only_the_schedule_counts():
    """k warm-up steps advance the schedule; the first real step then uses rate(k), with Adam's
    moments and bias correction as fresh as if nothing had happened (PyTorch: LambdaLR.step()
    every iteration, Adam skipping parameters without gradients)."""
    k, base, wd = 5, 0.1, 0.01
    rate = optim.scaled(base, optim.motion_factor(8, 10))  # steep: rate(5) = 0.065 vs 0.1
    params = {"grid": {"plane": jnp.asarray([1.0, -2.0, 0.5])}, "mlp": {"w": jnp.ones(2)}}
    label_of = lambda p: "grid" if p.startswith("grid") else "net"
    tx = optim.grouped(
        {"grid": optim.adamw_network(rate, wd), "net": optim.adamw_network(rate, wd)},
        params,
        label_of,
    )
    state = tx.init(params)
    idle = state
    for _ in range(k):
        idle = optim.advance_schedules(idle)
    counts = lambda s, kind: [
        int(x.count)
        for x in jax.tree.leaves(s, is_leaf=lambda x: isinstance(x, kind))
        if isinstance(x, kind)
    ]
    assert counts(idle, optax.ScaleByScheduleState) == [k, k]
    assert counts(idle, optax.ScaleByAdamState) == [0, 0]
    moments = lambda s: [np.asarray(x) for x in jax.tree.leaves(s) if getattr(x, "ndim", 0) > 0]
    for a, b in zip(moments(idle), moments(state)):
        np.testing.assert_array_equal(a, b)
    grads = {
        "grid": {"plane": jnp.asarray([0.3, -0.2, 1e-3])},
        "mlp": {"w": jnp.asarray([1.0, 2.0])},
    }
    updates, _ = tx.update(grads, idle, params)
    # first Adam step: m̂ / (√v̂ + eps) = g / (|g| + eps); AdamW adds wd · p; times −rate(k)
    for g, p, u in zip(jax.tree.leaves(grads), jax.tree.leaves(params), jax.tree.leaves(updates)):
        want = -float(rate(k)) * (g / (jnp.abs(g) + 1e-8) + wd * p)
        np.testing.assert_allclose(u, want, rtol=1e-5)
    assert float(rate(k)) < 0.7 * base  # rate(0) would fail the comparison above
