"""The reference compositor against closed forms and finite differences (float64).

The analytic case checks the conventions (pixel centres at i+0.5, EWA variance
σ²f²/z² + 0.3, peak opacity·colour) on both backends; central differences check
the reference's autodiff gradients and the F64 CPU kernel's hand-written backward.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ua3dtalk_jax.render import available_backends, ffi, rasterize, reference
from ua3dtalk_jax.render.projection import project

BACKENDS = ["reference"] + (["ffi"] if available_backends()["cpu"] else [])
# float32 evaluation of exp and the EWA product: ~1e-7 relative.
ANALYTIC_RTOL = 1e-5
# Central differences in float64 with step 1e-6: truncation ~1e-12, rounding ~1e-10
# relative to the loss; the tolerance leaves room for summing over many pixels.
FD_RTOL = 1e-6
FD_EPS = 1e-6


@pytest.mark.parametrize("backend", BACKENDS)
def test_isotropic_gaussian_facing_camera(backend):
    width, height, f, z, sigma, opacity = 41, 31, 50.0, 2.0, 0.05, 0.8
    K = jnp.array([[f, 0.0, 20.5], [0.0, f, 15.5], [0.0, 0.0, 1.0]])  # mean on pixel (20, 15)
    color = jnp.array([[0.2, 0.5, 0.9]])
    render = jax.jit(functools.partial(rasterize, width=width, height=height, backend=backend))
    out = render(
        jnp.array([[0.0, 0.0, z]]),
        jnp.array([[1.0, 0.0, 0.0, 0.0]]),
        jnp.full((1, 3), sigma),
        jnp.array([opacity]),
        color,
        jnp.eye(4),
        K,
    )
    np.testing.assert_allclose(out.rgb[15, 20], opacity * color[0], rtol=ANALYTIC_RTOL)
    var = sigma**2 * f**2 / z**2 + 0.3  # EWA variance in px² + dilation
    d2 = (np.arange(width) + 0.5 - 20.5)[None, :] ** 2 + (np.arange(height) + 0.5 - 15.5)[
        :, None
    ] ** 2
    expected = opacity * np.exp(-0.5 * d2 / var)
    expected = np.where(expected >= 1.0 / 255.0, expected, 0.0)
    np.testing.assert_allclose(out.alpha, expected, rtol=ANALYTIC_RTOL, atol=1e-7)
    np.testing.assert_allclose(out.depth, expected * z, rtol=ANALYTIC_RTOL, atol=1e-6)


def _fd_scene():
    rng = np.random.default_rng(0)
    n, w, h = 5, 14, 11
    z = rng.uniform(2.0, 3.0, n)
    means = np.stack([rng.uniform(-0.3, 0.3, n) * z, rng.uniform(-0.3, 0.3, n) * z, z], -1)
    params = {
        "means": means,
        "quats": rng.normal(size=(n, 4)),
        "scales": rng.uniform(0.1, 0.3, (n, 3)),
        "opacities": rng.uniform(0.2, 0.8, n),
        "colors": rng.uniform(0, 1, (n, 3)),
        "background": rng.uniform(0, 1, 3),
    }
    K = np.array([[12.0, 0, 7.2], [0, 12.0, 5.4], [0, 0, 1]])
    cots = (rng.normal(size=(h, w, 3)), rng.normal(size=(h, w)), rng.normal(size=(h, w)))
    return params, K, cots, w, h


def _loss_fn(backend, K, cots, w, h):
    def loss(p):
        out = rasterize(
            p["means"],
            p["quats"],
            p["scales"],
            p["opacities"],
            p["colors"],
            jnp.eye(4, dtype=jnp.float64),
            jnp.asarray(K),
            width=w,
            height=h,
            background=p["background"],
            backend=backend,
        )
        return (
            jnp.sum(out.rgb * cots[0]) + jnp.sum(out.alpha * cots[1]) + jnp.sum(out.depth * cots[2])
        )

    return loss


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradients_match_central_differences_float64(backend):
    with jax.enable_x64(True):
        params, K, cots, w, h = _fd_scene()
        params = {k: jnp.asarray(v, jnp.float64) for k, v in params.items()}
        loss = jax.jit(_loss_fn(backend, K, [jnp.asarray(c) for c in cots], w, h))
        grads = jax.jit(jax.grad(_loss_fn(backend, K, [jnp.asarray(c) for c in cots], w, h)))(
            params
        )
        rng = np.random.default_rng(1)
        for name, value in params.items():
            direction = jnp.asarray(rng.normal(size=value.shape))
            plus = dict(params, **{name: value + FD_EPS * direction})
            minus = dict(params, **{name: value - FD_EPS * direction})
            numeric = (loss(plus) - loss(minus)) / (2 * FD_EPS)
            analytic = jnp.sum(grads[name] * direction)
            assert grads[name].dtype == jnp.float64
            np.testing.assert_allclose(analytic, numeric, rtol=FD_RTOL, atol=1e-9, err_msg=name)


@pytest.mark.skipif(not available_backends()["cpu"], reason="CPU kernel not built")
def test_float64_kernel_matches_reference_compositor():
    """Same name, same contract: ffi.rasterize_to_pixels == reference.rasterize_to_pixels."""
    with jax.enable_x64(True):
        params, K, _, w, h = _fd_scene()
        p = {k: jnp.asarray(v, jnp.float64) for k, v in params.items()}
        proj = project(
            p["means"],
            p["quats"],
            p["scales"],
            p["opacities"],
            jnp.eye(4, dtype=jnp.float64),
            jnp.asarray(K),
            width=w,
            height=h,
        )
        args = (
            proj.means2d,
            proj.conics,
            p["colors"],
            proj.opacities,
            proj.depths,
            proj.radii,
            p["background"],
        )
        out_k = jax.jit(functools.partial(ffi.rasterize_to_pixels, width=w, height=h))(*args)
        out_r = jax.jit(functools.partial(reference.rasterize_to_pixels, width=w, height=h))(*args)
        for k, r in zip(out_k, out_r):
            assert k.dtype == jnp.float64
            np.testing.assert_allclose(k, r, rtol=0, atol=1e-12)


def test_float64_on_a_gpu_resolves_to_the_reference(monkeypatch):
    """The CUDA kernel is float32 only: "auto" must not pick it for float64 inputs, and an
    explicit "ffi" says why (the CPU kernel takes both)."""
    import ua3dtalk_jax.render as R

    built = {"reference": True, "cpu": True, "cuda": True}
    monkeypatch.setattr(R, "available_backends", lambda: built)
    monkeypatch.setattr(R.jax, "default_backend", lambda: "gpu")
    assert R.resolve_backend("auto", jnp.float32) == "ffi"
    assert R.resolve_backend("auto", jnp.float64) == "reference"
    assert R.resolve_backend("reference", jnp.float64) == "reference"
    with pytest.raises(ValueError, match="backend='ffi' on gpu takes float32"):
        R.resolve_backend("ffi", jnp.float64)
    monkeypatch.setattr(R.jax, "default_backend", lambda: "cpu")
    assert R.resolve_backend("ffi", jnp.float64) == R.resolve_backend("auto", jnp.float64) == "ffi"
