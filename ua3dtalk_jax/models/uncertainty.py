"""Uncertainty blocks and uncertainty-aware Gaussian fusion (paper Eq. 7–12).

Naming: T ensemble members, V views, D latent width (48), "..." any batch (here N Gaussians).

  Eq. 7   one member F_θ: x → Linear(64) → ReLU → (μ = Linear(D), log σ² = Linear(D)).
  Eq. 8   Var[y] = Var_θ[E(y|θ)] (epistemic) + E_θ[Var(y|θ)] (aleatoric), law of total variance.
  Eq. 10  μ̂ = (1/T) Σₜ μₜ;   Σ̂ = (1/T) Σₜ (diag σₜ² + μₜμₜᵀ) − μ̂μ̂ᵀ
          = epistemic (1/T) Σₜ (μₜ − μ̂)(μₜ − μ̂)ᵀ  (full D×D, rank ≤ T−1)
          + aleatoric diag((1/T) Σₜ σₜ²).
          Eq. 9 writes the aleatoric part as a *sum* over t, and the authors' code divides the
          epistemic part by T − 1 (unbiased sample covariance); we follow Eq. 10, the consistent
          1/T form of Eq. 8 (the plug-in estimate under a uniform distribution over members).
  Eq. 12  product of the V view Gaussians: Σ = (Σᵢ Σ̂ᵢ⁻¹)⁻¹, μ = Σ Σᵢ Σ̂ᵢ⁻¹ μ̂ᵢ, computed with
          batched Cholesky factors and triangular solves plus a small relative jitter, never with
          explicit inverses of ill-conditioned matrices. A view's effective weight is its share
          of the total precision trace, tr(Σ̂ᵢ⁻¹) / Σⱼ tr(Σ̂ⱼ⁻¹).

Low-rank form (`ensemble_fusion_lowrank`, the paper preset's `model.uncertainty.fusion`): a view's
Σ̂ = A + W Wᵀ, with A = diag(aleatoric + jitter) and W = (μₜ − μ̂)/√T (D × T), so by Woodbury
Σ̂⁻¹ = A⁻¹ − A⁻¹W M⁻¹ WᵀA⁻¹ with M = I_T + WᵀA⁻¹W (T × T, eigenvalues ≥ 1: always well
conditioned). Only M (10 × 10) is inverted per view, and only the fused precision (one D × D per
Gaussian) by the blocked inverse; the (V, N, D, D) view covariances are never formed. It is the
same Eq. 10–12 with the same jitter, equal to the dense form to float32 rounding (tested), not
bitwise: the cpu and tiny presets keep the dense form ("dense").

Mean-only form (`ensemble_fused_mean`, inference): the same Woodbury algebra when only the fused
μ is wanted, as in rendering. M and the fused precision are factorised and solved against, never
inverted, with the Gaussians on the last axis (`small_linalg.*_batch_last`), a few hundred at a
time so that each step stays in cache: 2.2× faster than the low-rank form for the cpu face.

The T members are one `UncertaintyMember` lifted with `nn.vmap` (separate parameters, stacked on
a leading T axis). Training mode ("stage 1" of the authors): one member per view drawn at random
each step, diagonal variance, and the cheap diagonal fusion; evaluation mode ("stage 2", also
used in training after 15k iterations): all T members, full covariances.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from ua3dtalk_jax.models import small_linalg

# Cholesky jitter, relative to the mean diagonal: keeps float32 factorisations of near-singular
# covariances (epistemic parts have rank ≤ T − 1 < D) well defined (condition number ≲ 1e5).
JITTER_REL = 1e-5
# Absolute floor on the jitter so an all-zero covariance still factorises (finite, huge weight).
JITTER_ABS = 1e-12


class UncertaintyMember(nn.Module):
    """One uncertainty network (Eq. 7): (..., in) → μ (..., D), log σ² (..., D)."""

    hidden: int = 64
    latent: int = 48

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        h = nn.relu(nn.Dense(self.hidden, name="fc")(x))
        return nn.Dense(self.latent, name="mu")(h), nn.Dense(self.latent, name="logvar")(h)


class UncertaintyBlock(nn.Module):
    """T members (`nn.vmap`, params stacked on axis 0) of one view.

    Attributes:
      hidden, latent: member sizes (64, 48).
      members: T (10).
    """

    hidden: int = 64
    latent: int = 48
    members: int = 10

    @nn.compact
    def __call__(
        self, x: jax.Array, member: jax.Array | None = None
    ) -> tuple[jax.Array, jax.Array]:
        """Runs all members, or only `member`.

        Args:
          x: (N, in) view features.
          member: None for the whole ensemble, else a scalar int32 member index (may be traced);
            only that member's parameters are gathered and evaluated (1/T of the cost).
        Returns:
          μ and log σ², each (T, N, D), or (1, N, D) when `member` is given.
        """
        ensemble = nn.vmap(
            UncertaintyMember,
            variable_axes={"params": 0},
            split_rngs={"params": True},
            in_axes=None,
            out_axes=0,
            axis_size=self.members,
        )(self.hidden, self.latent, name="members")
        if member is None or self.is_initializing():
            mu, logvar = ensemble(x)
            if member is None:
                return mu, logvar
            return mu[member][None], logvar[member][None]
        one = jax.tree.map(lambda p: p[member], self.variables["params"]["members"])
        mu, logvar = UncertaintyMember(self.hidden, self.latent, parent=None).apply(
            {"params": one}, x
        )
        return mu[None], logvar[None]


def ensemble_moments(
    mu: jax.Array, logvar: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Eq. 10: the block's mean and total covariance, split into epistemic and aleatoric parts.

    Args:
      mu: (T, ..., D) member means.
      logvar: (T, ..., D) member log-variances.
    Returns:
      mean (..., D), cov (..., D, D) = epistemic + aleatoric, epistemic (..., D, D) (1/T form,
      written centred so it is positive semi-definite in floating point), aleatoric (..., D, D)
      (diagonal).
    """
    if mu.shape != logvar.shape:
        raise ValueError(f"mu {mu.shape} and logvar {logvar.shape} must match")
    mean = jnp.mean(mu, axis=0)
    centred = mu - mean
    epistemic = jnp.einsum("t...i,t...j->...ij", centred, centred) / mu.shape[0]
    var = jnp.mean(jnp.exp(logvar), axis=0)
    aleatoric = var[..., :, None] * jnp.eye(mu.shape[-1], dtype=mu.dtype)
    return mean, epistemic + aleatoric, epistemic, aleatoric


def _jittered(a: jax.Array) -> jax.Array:
    """The symmetrised (..., D, D) `a` plus a relative jitter on the diagonal (its scale is held
    constant under differentiation: it only keeps the factorisation finite)."""
    a = 0.5 * (a + jnp.swapaxes(a, -1, -2))
    d = a.shape[-1]
    scale = jax.lax.stop_gradient(jnp.trace(a, axis1=-2, axis2=-1)[..., None, None] / d)
    return a + (JITTER_REL * jnp.abs(scale) + JITTER_ABS) * jnp.eye(d, dtype=a.dtype)


def gaussian_fusion_weighted(
    means: jax.Array, covs: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Eq. 12 with full covariances, plus each view's effective weight.

    Args:
      means: (V, ..., D) view means μ̂ᵢ.
      covs: (V, ..., D, D) view covariances Σ̂ᵢ (symmetric PSD; near-singular is fine).
    Returns:
      mean (..., D), cov (..., D, D), weights (V, ...) = tr(Σ̂ᵢ⁻¹) / Σⱼ tr(Σ̂ⱼ⁻¹).
    """
    if covs.shape != means.shape + means.shape[-1:]:
        raise ValueError(f"covs {covs.shape} must be means {means.shape} + (D,)")
    precisions = small_linalg.spd_inverse(_jittered(covs))  # (V, ..., D, D)
    info = jnp.sum(jnp.einsum("v...ij,v...j->v...i", precisions, means), axis=0)
    cov = small_linalg.spd_inverse(_jittered(jnp.sum(precisions, axis=0)))
    mean = (cov @ info[..., None])[..., 0]
    traces = jnp.trace(precisions, axis1=-2, axis2=-1)
    return mean, 0.5 * (cov + jnp.swapaxes(cov, -1, -2)), traces / jnp.sum(traces, axis=0)


def gaussian_fusion(means: jax.Array, covs: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Eq. 12: product of V Gaussian views with full covariances.

    Args:
      means: (V, ..., D) view means.
      covs: (V, ..., D, D) view covariances.
    Returns:
      mean (..., D) and cov (..., D, D) of the fused Gaussian.
    """
    mean, cov, _ = gaussian_fusion_weighted(means, covs)
    return mean, cov


def gaussian_fusion_diag(
    means: jax.Array, variances: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Eq. 12 for diagonal covariances (training mode): elementwise precisions, no factorisation.

    Args:
      means: (V, ..., D) view means.
      variances: (V, ..., D) positive view variances.
    Returns:
      mean (..., D), variance (..., D), weights (V, ...) (precision-trace shares).
    """
    precisions = 1.0 / (variances + JITTER_ABS)
    total = jnp.sum(precisions, axis=0)
    mean = jnp.sum(precisions * means, axis=0) / total
    traces = jnp.sum(precisions, axis=-1)
    return mean, 1.0 / total, traces / jnp.sum(traces, axis=0)


FUSIONS = ("dense", "lowrank")
# Gaussians per chunk of `ensemble_fusion_chunked`: the chunks run one after another and each
# recomputes its members and fusion in the reverse pass (`jax.checkpoint`), so neither the
# (V, T, N, ·) member outputs nor the (N, D, D) fusion intermediates are stored for all N at once.
# Paper face step (N = 65,536): XLA buffers 11.0 GB unchunked, 7.6 GB with only the fusion
# chunked, 3.8 GB with members and fusion chunked (BUILD_NOTES, "The paper preset at paper
# sizes"). 0: no chunks. Read at call time.
FUSION_CHUNK = 8192
# Gaussians per chunk of the mean-only form: the (D, D, chunk) factorisation stays in the L2 cache
# (cpu face, 2,048 Gaussians: 8.7 ms at 256, 11.3 at 512, 15.8 unchunked; BUILD_NOTES).
MEAN_CHUNK = 256


def ensemble_fusion_lowrank(mu: jax.Array, logvar: jax.Array) -> dict:
    """Eq. 10–12 for V views of T members each, without forming view covariances (see the module
    docstring); the dense equivalent: `ensemble_moments` per view, `gaussian_fusion_weighted`.

    Args:
      mu: (V, T, ..., D) member means of every view.
      logvar: (V, T, ..., D) member log-variances.
    Returns:
      {"view_mu" (V, ..., D), "aleatoric" and "epistemic" (V, ...) (trace / D of each part),
       "fused_mu" (..., D), "fused_var" (...) (trace / D of the fused covariance),
       "view_weights" (V, ...) (precision-trace shares)}.
    """
    if mu.shape != logvar.shape or mu.ndim < 3:
        raise ValueError(f"mu {mu.shape} and logvar {logvar.shape} must match, (V, T, ..., D)")
    return _fusion_lowrank(mu, logvar)


def ensemble_fused_mean(mu: jax.Array, logvar: jax.Array) -> jax.Array:
    """The fused mean of Eq. 12 alone (`ensemble_fusion_lowrank`'s "fused_mu", to float32
    rounding), by factorisations and solves, for inference.

    Args:
      mu: (V, T, N, D) member means of every view.
      logvar: (V, T, N, D) member log-variances.
    Returns:
      (N, D) fused means.
    """
    if mu.shape != logvar.shape or mu.ndim != 4:
        raise ValueError(f"mu {mu.shape} and logvar {logvar.shape} must match, (V, T, N, D)")
    v, t, n, d = mu.shape
    mean = jnp.mean(mu, axis=1)  # (V, N, D)
    w = (mu - mean[:, None]) / jnp.sqrt(jnp.asarray(t, mu.dtype))  # (V, T, N, D)
    var = jnp.mean(jnp.exp(logvar), axis=1)
    jitter = JITTER_REL * jnp.abs(jnp.sum(w * w, axis=(1, 3)) + jnp.sum(var, -1)) / d + JITTER_ABS
    a_inv = jnp.moveaxis(1.0 / (var + jitter[..., None]), 1, -1)  # (V, D, N)
    w = jnp.transpose(w, (0, 3, 1, 2))  # (V, D, T, N)
    mean = jnp.moveaxis(mean, 1, -1)  # (V, D, N)
    g = a_inv[:, :, None] * w  # A⁻¹W
    m = jnp.eye(t, dtype=mu.dtype)[:, :, None] + jnp.einsum("vdsn,vdtn->vstn", w, g)
    # Z = L_M⁻¹ (A⁻¹W)ᵀ per view, so that A⁻¹W M⁻¹ WᵀA⁻¹ = Zᵀ Z
    z = jnp.stack(
        [
            small_linalg.solve_lower_batch_last(
                small_linalg.cholesky_batch_last(m[i]), jnp.swapaxes(g[i], 0, 1)
            )
            for i in range(v)
        ]
    )  # (V, T, D, N)
    info = jnp.sum(
        a_inv * mean - jnp.einsum("vtdn,vtn->vdn", z, jnp.einsum("vtdn,vdn->vtn", z, mean)), 0
    )
    zf = z.reshape(v * t, d, n)
    eye = jnp.eye(d, dtype=mu.dtype)[:, :, None]
    precision = jnp.sum(a_inv, 0)[:, None] * eye - jnp.einsum("kin,kjn->ijn", zf, zf)
    trace = jnp.sum(jnp.diagonal(precision, 0, 0, 1), -1)  # (N,): `_jittered`'s jitter
    low = small_linalg.cholesky_batch_last(
        precision + (JITTER_REL * jnp.abs(trace / d) + JITTER_ABS) * eye
    )
    y = small_linalg.solve_lower_batch_last(low, info[:, None])
    return small_linalg.solve_upper_t_batch_last(low, y)[:, 0].T


def ensemble_fusion_chunked(
    block: UncertaintyBlock,
    params: list,
    xs: list,
    chunk: int | None = None,
    mean_only: bool = False,
) -> dict:
    """Runs each view's ensemble on its features and fuses them (`ensemble_fusion_lowrank`),
    `chunk` Gaussians at a time (default `FUSION_CHUNK`, or `MEAN_CHUNK` with `mean_only`).

    Args:
      block: an unbound `UncertaintyBlock` of the views' sizes.
      params: per view, that block's parameters.
      xs: per view, its (N, in_v) features.
      mean_only: fuse with `ensemble_fused_mean` (inference): the dict holds only "fused_mu".
    Returns:
      `ensemble_fusion_lowrank`'s dict over the N Gaussians.
    """
    chunk = (MEAN_CHUNK if mean_only else FUSION_CHUNK) if chunk is None else chunk

    def run(xc):
        outs = [block.apply({"params": p}, x) for p, x in zip(params, xc)]
        mu, logvar = (jnp.stack(z) for z in zip(*outs))
        return (
            {"fused_mu": ensemble_fused_mean(mu, logvar)}
            if mean_only
            else _fusion_lowrank(mu, logvar)
        )

    n = xs[0].shape[0]
    if not chunk or n <= chunk:
        return run(xs)
    pad = (-n) % chunk  # padded rows fuse finite values and are cut off below
    xc = [jnp.pad(x, ((0, pad), (0, 0))).reshape(-1, chunk, x.shape[-1]) for x in xs]
    out = jax.lax.map(jax.checkpoint(run), xc)

    def join(k, x):  # (N / chunk, [V,] chunk, ...) → ([V,] N, ...)
        if k in ("view_mu", "aleatoric", "epistemic", "view_weights"):
            x = jnp.moveaxis(x, 0, 1)
            return x.reshape(x.shape[:1] + (-1,) + x.shape[3:])[:, :n]
        return x.reshape((-1,) + x.shape[2:])[:n]

    return {k: join(k, x) for k, x in out.items()}


def _fusion_lowrank(mu: jax.Array, logvar: jax.Array) -> dict:
    t, d = mu.shape[1], mu.shape[-1]
    mean = jnp.mean(mu, axis=1)  # (V, ..., D)
    w = jnp.moveaxis(mu - mean[:, None], 1, -1) / jnp.sqrt(jnp.asarray(t, mu.dtype))  # (V,..,D,T)
    var = jnp.mean(jnp.exp(logvar), axis=1)
    epi_tr = jnp.sum(w * w, axis=(-2, -1))
    ale_tr = jnp.sum(var, axis=-1)
    # `_jittered`'s diagonal term of the same matrix A + W Wᵀ (its trace is epi_tr + ale_tr)
    jitter = JITTER_REL * jnp.abs(jax.lax.stop_gradient(epi_tr + ale_tr) / d) + JITTER_ABS
    a_inv = 1.0 / (var + jitter[..., None])  # (V, ..., D)
    g = a_inv[..., None] * w  # A⁻¹W (V, ..., D, T)
    m = jnp.eye(t, dtype=mu.dtype) + jnp.swapaxes(w, -1, -2) @ g
    gm = g @ small_linalg.spd_inverse(0.5 * (m + jnp.swapaxes(m, -1, -2)))  # A⁻¹W M⁻¹
    # Σ̂⁻¹μ̂ and tr(Σ̂⁻¹) per view; the fused precision Σ diag(A⁻¹) − Σ (A⁻¹W M⁻¹)(A⁻¹W)ᵀ
    info = a_inv * mean - jnp.einsum(
        "v...dt,v...t->v...d", gm, jnp.einsum("v...dt,v...d->v...t", g, mean)
    )
    traces = jnp.sum(a_inv, axis=-1) - jnp.sum(gm * g, axis=(-2, -1))
    flat = lambda x: jnp.moveaxis(x, 0, -2).reshape(x.shape[1:-2] + (-1, x.shape[-1]))
    low_rank = jnp.swapaxes(flat(jnp.swapaxes(gm, -1, -2)), -1, -2) @ flat(jnp.swapaxes(g, -1, -2))
    precision = jnp.sum(a_inv, axis=0)[..., None] * jnp.eye(d, dtype=mu.dtype) - low_rank
    cov = small_linalg.spd_inverse_blocked(_jittered(precision))
    fused = (cov @ jnp.sum(info, axis=0)[..., None])[..., 0]
    return {
        "view_mu": mean,
        "aleatoric": ale_tr / d,
        "epistemic": epi_tr / d,
        "fused_mu": fused,
        "fused_var": jnp.trace(cov, axis1=-2, axis2=-1) / d,
        "view_weights": traces / jnp.sum(traces, axis=0),
    }
