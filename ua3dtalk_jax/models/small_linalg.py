"""Batched Cholesky factorisation and triangular inversion of many small D×D matrices, in plain XLA.

The Gaussian fusion (Eq. 12) factorises one D×D covariance per Gaussian and view (D = 48 in the
paper). `jnp.linalg.cholesky` and `lax.linalg.triangular_solve` lower on CPU to jaxlib's LAPACK
custom calls, which split a batch over XLA's intra-op thread pool and block until it is done; two
such calls that XLA schedules side by side (the face and mouth branches of the fuse step) can each
hold a pool thread while waiting for work queued behind the other — on a 2-core machine this
deadlocked the fuse step (seen with jaxlib 0.10.2: both threads in `ParallelBatchMap` under
`lapack_strsm_ffi`). These loops use only element-wise ops and small contractions, so they never
leave XLA, vectorise over the batch, are differentiable, and give the same factors to rounding.

Both run D iterations of a `lax.fori_loop` (O(D³) work per matrix, like LAPACK's unblocked forms).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

PIVOT_FLOOR = 1e-30  # a non-positive pivot (not positive definite) is clamped, never NaN


def cholesky(a: jax.Array) -> jax.Array:
    """Lower factor L with L Lᵀ = a for symmetric positive-definite (..., D, D) `a`.

    Column by column: with the columns ≥ j of L still zero, v = a[:, j] − L L[j, :]ᵀ, the pivot is
    v[j] (floored at PIVOT_FLOOR) and column j is v / sqrt(pivot) below the diagonal.
    """
    d = a.shape[-1]
    rows = jnp.arange(d)

    def body(j, low):
        v = a[..., :, j] - jnp.einsum("...ik,...k->...i", low, low[..., j, :])
        pivot = jnp.sqrt(jnp.maximum(v[..., j], PIVOT_FLOOR))
        col = jnp.where(rows >= j, v / pivot[..., None], 0.0)
        return low + col[..., :, None] * (rows == j).astype(a.dtype)

    return jax.lax.fori_loop(0, d, body, jnp.zeros_like(a))


def lower_inverse(low: jax.Array) -> jax.Array:
    """L⁻¹ of lower-triangular (..., D, D) `low` by forward substitution, row by row:
    X[i, :] = (e_i − L[i, :i] X[:i, :]) / L[i, i] (rows ≥ i of X are still zero)."""
    d = low.shape[-1]
    eye = jnp.eye(d, dtype=low.dtype)

    def body(i, x):
        row = (eye[i] - jnp.einsum("...k,...kj->...j", low[..., i, :], x)) / low[..., i, i, None]
        return x + row[..., None, :] * (jnp.arange(d) == i).astype(low.dtype)[:, None]

    return jax.lax.fori_loop(0, d, body, jnp.zeros_like(low))
