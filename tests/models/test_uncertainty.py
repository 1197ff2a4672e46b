"""Eq. 7–12: ensemble moments and Gaussian fusion against float64 NumPy transcriptions."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ua3dtalk_jax.models.uncertainty import (
    UncertaintyBlock,
    UncertaintyMember,
    ensemble_fused_mean,
    ensemble_fusion_chunked,
    ensemble_fusion_lowrank,
    ensemble_moments,
    gaussian_fusion,
    gaussian_fusion_diag,
    gaussian_fusion_weighted,
)

# float32 arithmetic against a float64 transcription of the same formula.
F32_RTOL = 1e-4
F32_ATOL = 1e-5
# Fusion carries the Cholesky jitter (JITTER_REL = 1e-5 of the mean diagonal) twice.
FUSION_RTOL = 5e-4
T, N, D, V = 5, 7, 6, 3


def _np_moments(mu, logvar):
    """Eq. 10 transcribed literally: (1/T) Σ (diag σ² + μμᵀ) − μ̂μ̂ᵀ, with the Eq. 8 split."""
    mu, var = mu.astype(np.float64), np.exp(logvar.astype(np.float64))
    t = mu.shape[0]
    mean = mu.sum(0) / t
    second = sum(np.einsum("ni,nj->nij", mu[k], mu[k]) for k in range(t)) / t
    epi = second - np.einsum("ni,nj->nij", mean, mean)
    alea = np.stack([np.diag(v) for v in var.sum(0) / t])
    return mean, epi + alea, epi, alea


def _np_fusion(means, covs):
    """Eq. 12 with explicit float64 inverses."""
    prec = [np.linalg.inv(c) for c in covs.astype(np.float64)]
    cov = np.linalg.inv(sum(prec))
    mean = np.einsum(
        "...ij,...j->...i", cov, sum(p @ m[..., None] for p, m in zip(prec, means))[..., 0]
    )
    return mean, cov


def _random_spd(key, shape, d):
    a = jax.random.normal(key, shape + (d, d))
    return a @ jnp.swapaxes(a, -1, -2) / d + 0.1 * jnp.eye(d)


def test_ensemble_moments_match_eq10():
    k1, k2 = jax.random.split(jax.random.PRNGKey(0))
    mu = jax.random.normal(k1, (T, N, D))
    logvar = 0.5 * jax.random.normal(k2, (T, N, D))
    got = jax.jit(ensemble_moments)(mu, logvar)
    want = _np_moments(np.asarray(mu), np.asarray(logvar))
    for g, w in zip(got, want):
        assert g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=F32_RTOL, atol=F32_ATOL)
    # Eq. 9's literal aleatoric *sum* would be T times ours; the code's epistemic, T/(T−1) times.
    np.testing.assert_allclose(
        np.asarray(got[3]) * T, np.stack([np.diag(v) for v in np.exp(logvar).sum(0)]), rtol=F32_RTOL
    )


def test_single_member_has_no_epistemic_part():
    mu = jax.random.normal(jax.random.PRNGKey(1), (1, N, D))
    mean, cov, epi, _ = ensemble_moments(mu, jnp.zeros_like(mu))
    np.testing.assert_array_equal(epi, 0.0)
    np.testing.assert_allclose(cov, np.broadcast_to(np.eye(D), (N, D, D)))
    np.testing.assert_array_equal(mean, mu[0])


def test_fusion_matches_explicit_inverses():
    keys = jax.random.split(jax.random.PRNGKey(2), 2)
    means = jax.random.normal(keys[0], (V, N, D))
    covs = _random_spd(keys[1], (V, N), D)
    mean, cov = jax.jit(gaussian_fusion)(means, covs)
    want_mean, want_cov = _np_fusion(np.asarray(means), np.asarray(covs))
    np.testing.assert_allclose(mean, want_mean, rtol=FUSION_RTOL, atol=F32_ATOL)
    np.testing.assert_allclose(cov, want_cov, rtol=FUSION_RTOL, atol=F32_ATOL)


def test_fusion_equal_covariances_is_plain_average():
    means = jax.random.normal(jax.random.PRNGKey(3), (V, N, D))
    covs = jnp.broadcast_to(_random_spd(jax.random.PRNGKey(4), (N,), D), (V, N, D, D))
    mean, cov, weights = gaussian_fusion_weighted(means, covs)
    np.testing.assert_allclose(mean, means.mean(0), rtol=FUSION_RTOL, atol=F32_ATOL)
    np.testing.assert_allclose(cov, covs[0] / V, rtol=FUSION_RTOL, atol=F32_ATOL)
    np.testing.assert_allclose(weights, 1.0 / V, rtol=F32_RTOL)


@pytest.mark.parametrize("huge", [1e2, 1e4, 1e6])
def test_fusion_huge_variance_view_loses_its_weight(huge):
    means = jax.random.normal(jax.random.PRNGKey(5), (V, N, D))
    covs = jnp.broadcast_to(jnp.eye(D), (V, N, D, D)).at[0].multiply(huge)
    mean, _, weights = gaussian_fusion_weighted(means, covs)
    expected_weight = 1.0 / (1.0 + (V - 1) * huge)
    np.testing.assert_allclose(weights[0], expected_weight, rtol=FUSION_RTOL)
    # The fused mean tends to the average of the remaining views (offset O(1/huge)).
    np.testing.assert_allclose(mean, means[1:].mean(0), atol=10.0 / huge + FUSION_RTOL)


def test_fusion_is_permutation_invariant():
    keys = jax.random.split(jax.random.PRNGKey(6), 2)
    means = jax.random.normal(keys[0], (V, N, D))
    covs = _random_spd(keys[1], (V, N), D)
    ref = gaussian_fusion(means, covs)
    for perm in itertools.permutations(range(V)):
        idx = jnp.asarray(perm)
        got = gaussian_fusion(means[idx], covs[idx])
        for g, r in zip(got, ref):
            np.testing.assert_allclose(g, r, rtol=FUSION_RTOL, atol=F32_ATOL)


def test_fusion_finite_for_near_singular_inputs():
    # Pure epistemic covariances of rank 1 and an all-zero one: singular without the jitter.
    u = jax.random.normal(jax.random.PRNGKey(7), (V, N, D))
    covs = jnp.einsum("vni,vnj->vnij", u, u).at[1].set(0.0)
    mean, cov, weights = gaussian_fusion_weighted(u, covs)
    grads = jax.grad(lambda c: gaussian_fusion(u, c)[0].sum())(covs)
    for x in (mean, cov, weights, grads):
        assert np.all(np.isfinite(x))


def test_diagonal_fusion_equals_full_fusion_of_diagonal_covariances():
    keys = jax.random.split(jax.random.PRNGKey(8), 2)
    means = jax.random.normal(keys[0], (V, N, D))
    var = jnp.exp(jax.random.normal(keys[1], (V, N, D)))
    mean_d, var_d, w_d = gaussian_fusion_diag(means, var)
    mean_f, cov_f, w_f = gaussian_fusion_weighted(means, var[..., None] * jnp.eye(D))
    np.testing.assert_allclose(mean_d, mean_f, rtol=FUSION_RTOL, atol=F32_ATOL)
    np.testing.assert_allclose(var_d, jnp.diagonal(cov_f, axis1=-2, axis2=-1), rtol=FUSION_RTOL)
    np.testing.assert_allclose(w_d, w_f, rtol=FUSION_RTOL)


def test_vmapped_ensemble_equals_separate_members():
    x = jax.random.normal(jax.random.PRNGKey(9), (N, 11))
    block = UncertaintyBlock(hidden=8, latent=D, members=T)
    params = block.init(jax.random.PRNGKey(10), x)
    stacked = params["params"]["members"]
    assert stacked["fc"]["kernel"].shape == (T, 11, 8)
    # Members have separate parameters.
    assert not np.allclose(stacked["fc"]["kernel"][0], stacked["fc"]["kernel"][1])
    mu, logvar = block.apply(params, x)
    member = UncertaintyMember(hidden=8, latent=D)
    for t in range(T):
        p_t = jax.tree.map(lambda p, t=t: p[t], stacked)
        m_t, l_t = member.apply({"params": p_t}, x)
        np.testing.assert_allclose(mu[t], m_t, rtol=F32_RTOL, atol=F32_ATOL)
        np.testing.assert_allclose(logvar[t], l_t, rtol=F32_RTOL, atol=F32_ATOL)
        # Training mode: only member t's parameters are gathered and evaluated.
        m_one, l_one = jax.jit(lambda p, i: block.apply(p, x, i))(params, jnp.int32(t))
        np.testing.assert_allclose(m_one[0], m_t, rtol=F32_RTOL, atol=F32_ATOL)
        np.testing.assert_allclose(l_one[0], l_t, rtol=F32_RTOL, atol=F32_ATOL)


# The low-rank (Woodbury) fusion against the dense one: the same matrices, other roundings. In
# float64 the two agree to round-off; in float32 both are compared with the float64 result, and the
# low-rank form may be at most LOWRANK_F32_FACTOR times as far from it as the dense form (with
# ill-conditioned views both are ~1e-3 off: condition numbers up to 1/JITTER_REL = 1e5).
LOWRANK_F64_RTOL = 1e-9
LOWRANK_F32_FACTOR = 2.0
LOWRANK_F32_FLOOR = 1e-5  # relative error below which float32 agreement is not questioned


def _dense_fusion(mu, logvar):
    """What motion._fuse computes in "dense" eval mode, from (V, T, ..., D) member outputs."""
    d = mu.shape[-1]
    means, covs, alea, epi = [], [], [], []
    for m, lv in zip(mu, logvar):
        mean, cov, e, a = ensemble_moments(m, lv)
        means.append(mean)
        covs.append(cov)
        alea.append(jnp.trace(a, axis1=-2, axis2=-1) / d)
        epi.append(jnp.trace(e, axis1=-2, axis2=-1) / d)
    fused, cov, weights = gaussian_fusion_weighted(jnp.stack(means), jnp.stack(covs))
    return {
        "view_mu": jnp.stack(means),
        "aleatoric": jnp.stack(alea),
        "epistemic": jnp.stack(epi),
        "fused_mu": fused,
        "view_weights": weights,
        "fused_var": jnp.trace(cov, axis1=-2, axis2=-1) / d,
    }


def _members(seed, dtype, t=T, d=16, spread=0.5, log_var=-1.0):
    k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
    mu = jax.random.normal(k1, (V, t, N, d), dtype) * spread
    logvar = log_var + 0.5 * jax.random.normal(k2, (V, t, N, d), dtype)
    return mu, logvar


# (member spread, mean log-variance): well conditioned; epistemic ≫ aleatoric (near-singular)
CONDITIONS = ((0.5, -1.0), (3.0, -8.0), (3.0, -12.0))


@pytest.mark.parametrize("spread,log_var", CONDITIONS)
def test_lowrank_fusion_equals_dense_fusion(spread, log_var):
    with jax.enable_x64(True):
        # T − 1 < D: rank-deficient epistemic parts, as in the paper (T = 10, D = 48)
        mu, logvar = _members(11, "float64", spread=spread, log_var=log_var)
        ref = jax.jit(_dense_fusion)(mu, logvar)
        got = jax.jit(ensemble_fusion_lowrank)(mu, logvar)
        assert set(got) == set(ref)
        for k in ref:
            np.testing.assert_allclose(got[k], ref[k], rtol=LOWRANK_F64_RTOL, atol=1e-12, err_msg=k)
        m32, l32 = mu.astype(jnp.float32), logvar.astype(jnp.float32)
        dense, low = jax.jit(_dense_fusion)(m32, l32), jax.jit(ensemble_fusion_lowrank)(m32, l32)
        for k in ref:
            scale = float(jnp.max(jnp.abs(ref[k])))
            err_low = float(jnp.max(jnp.abs(low[k] - ref[k]))) / scale
            err_dense = float(jnp.max(jnp.abs(dense[k] - ref[k]))) / scale
            assert err_low <= max(LOWRANK_F32_FACTOR * err_dense, LOWRANK_F32_FLOOR), (
                k,
                err_low,
                err_dense,
            )


def test_lowrank_fusion_gradients_equal_dense_gradients():
    with jax.enable_x64(True):
        mu, logvar = _members(12, "float64")
        w = jax.random.normal(jax.random.PRNGKey(13), (N, 16), jnp.float64)

        def loss(fn):
            return lambda m, lv: (
                jnp.sum(w * fn(m, lv)["fused_mu"]) + jnp.sum(fn(m, lv)["view_weights"][0])
            )

        g_dense = jax.grad(loss(_dense_fusion), argnums=(0, 1))(mu, logvar)
        g_low = jax.grad(loss(ensemble_fusion_lowrank), argnums=(0, 1))(mu, logvar)
        for a, b in zip(g_low, g_dense):
            np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-10)


def test_lowrank_fusion_finite_for_degenerate_members():
    # identical members (no epistemic part) and a vanishing aleatoric part in one view
    mu, logvar = _members(14, "float32")
    mu = mu.at[0].set(mu[0, :1]).at[1].set(0.0)
    logvar = logvar.at[1].set(-60.0)
    out = ensemble_fusion_lowrank(mu, logvar)
    grads = jax.grad(lambda m: ensemble_fusion_lowrank(m, logvar)["fused_mu"].sum())(mu)
    for x in list(out.values()) + [grads]:
        assert np.all(np.isfinite(x))
    np.testing.assert_allclose(out["epistemic"][0], 0.0, atol=1e-12)  # mean of equal values: ulps
    assert np.all(out["view_weights"][1] > 0.99)  # the (near) certain view takes the weight


def test_chunked_ensemble_fusion_equals_one_chunk():
    # 7 Gaussians in chunks of 3 (the last one padded): values and gradients as in one piece
    block = UncertaintyBlock(hidden=8, latent=6, members=T)
    xs = [jax.random.normal(jax.random.PRNGKey(20 + v), (N, 5 + v)) for v in range(V)]
    params = [block.init(jax.random.PRNGKey(30 + v), x)["params"] for v, x in enumerate(xs)]
    whole = ensemble_fusion_chunked(block, params, xs, chunk=0)
    mu, logvar = (
        jnp.stack(z) for z in zip(*[block.apply({"params": p}, x) for p, x in zip(params, xs)])
    )
    direct = ensemble_fusion_lowrank(mu, logvar)
    parts = ensemble_fusion_chunked(block, params, xs, chunk=3)
    for k in whole:
        assert parts[k].shape == whole[k].shape == direct[k].shape, k
        np.testing.assert_allclose(parts[k], whole[k], rtol=F32_RTOL, atol=F32_ATOL, err_msg=k)
        np.testing.assert_allclose(direct[k], whole[k], rtol=F32_RTOL, atol=F32_ATOL, err_msg=k)

    def loss(chunk):
        return lambda p: jnp.sum(jnp.sin(ensemble_fusion_chunked(block, p, xs, chunk)["fused_mu"]))

    for a, b in zip(
        jax.tree.leaves(jax.grad(loss(3))(params)), jax.tree.leaves(jax.grad(loss(0))(params))
    ):
        np.testing.assert_allclose(a, b, rtol=F32_RTOL, atol=F32_ATOL)


@pytest.mark.parametrize("spread,log_var", CONDITIONS)
def test_mean_only_fusion_equals_lowrank_fused_mean(spread, log_var):
    with jax.enable_x64(True):
        mu, logvar = _members(15, "float64", spread=spread, log_var=log_var)
        ref = jax.jit(_dense_fusion)(mu, logvar)["fused_mu"]
        np.testing.assert_allclose(
            jax.jit(ensemble_fused_mean)(mu, logvar), ref, rtol=LOWRANK_F64_RTOL, atol=1e-12
        )
        m32, l32 = mu.astype(jnp.float32), logvar.astype(jnp.float32)
        scale = float(jnp.max(jnp.abs(ref)))
        err_mean = float(jnp.max(jnp.abs(jax.jit(ensemble_fused_mean)(m32, l32) - ref))) / scale
        dense = jax.jit(_dense_fusion)(m32, l32)["fused_mu"]
        err_dense = float(jnp.max(jnp.abs(dense - ref))) / scale
        assert err_mean <= max(LOWRANK_F32_FACTOR * err_dense, LOWRANK_F32_FLOOR), (
            err_mean,
            err_dense,
        )


def test_mean_only_fusion_refuses_other_shapes():
    mu = jnp.zeros((V, T, N, 6))
    with pytest.raises(ValueError, match="V, T, N, D"):
        ensemble_fused_mean(mu[0], mu[0])


def test_chunked_mean_only_fusion_equals_the_lowrank_mean():
    block = UncertaintyBlock(hidden=8, latent=6, members=T)
    xs = [jax.random.normal(jax.random.PRNGKey(40 + v), (N, 5 + v)) for v in range(V)]
    params = [block.init(jax.random.PRNGKey(50 + v), x)["params"] for v, x in enumerate(xs)]
    whole = ensemble_fusion_chunked(block, params, xs, chunk=0)["fused_mu"]
    parts = ensemble_fusion_chunked(block, params, xs, chunk=3, mean_only=True)
    assert set(parts) == {"fused_mu"} and parts["fused_mu"].shape == whole.shape
    np.testing.assert_allclose(parts["fused_mu"], whole, rtol=F32_RTOL, atol=F32_ATOL)
