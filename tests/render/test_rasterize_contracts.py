"""Contract edge cases of the rasterizer found by an independent check (issue 26).

* Clamps pass the full gradient at their ends: opacities of exactly 0 and 1 (jnp.clip gave
  half), a camera-space point exactly at the Jacobian's field-of-view limit, and a pair with
  o·exp(-σ) = 0.99 exactly at a pixel (the reference gave half, the kernels none).
* A Gaussian with a non-finite conic and a positive radius, given to the kernels directly, is
  culled: it renders nothing and gets zero gradients (the CPU backward returned NaN).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.render import scenes, screen_scenes
from ua3dtalk_jax.render import available_backends, ffi, project, rasterize, reference
from ua3dtalk_jax.render.projection import clamp

needs_cpu_kernel = pytest.mark.skipif(
    not available_backends()["cpu"], reason="CPU kernel not built"
)
BACKENDS = ["reference", pytest.param("ffi", marks=needs_cpu_kernel)]
# Gradients at the end of a clamp vs just inside it (one float32 step away): the function is
# smooth from the inside, so they agree to float32 rounding; half a gradient is far outside.
INSIDE_RTOL = 1e-3


def test_clamp_passes_the_full_gradient_at_both_ends():
    x = jnp.array([-0.5, 0.0, 0.3, 1.0, 1.5])
    grad = jax.grad(lambda v: jnp.sum(clamp(v, 0.0, 1.0)))(x)
    np.testing.assert_array_equal(grad, [0.0, 1.0, 1.0, 1.0, 0.0])
    np.testing.assert_array_equal(clamp(x, 0.0, 1.0), np.float32([0.0, 0.0, 0.3, 1.0, 1.0]))


def _visible_gaussians(opacities):
    n = len(opacities)
    g = scenes.random_gaussians(n, seed=4, spread=0.1, scale=(0.1, 0.2))
    return dict(g, opacities=jnp.asarray(opacities, jnp.float32))


def test_projected_opacity_gradient_is_one_on_the_closed_interval():
    """d(projected opacity)/d(opacity) = 1 for o in [1/255, 1] (ends included); 0 where the
    Gaussian is culled (o < 1/255, so also o = 0) or the opacity clamped (o > 1, o < 0)."""
    ops = np.array([-0.1, 0.0, 0.003, 0.004, 0.5, 0.99, 1.0, 1.2], np.float32)
    g, cam = _visible_gaussians(ops), scenes.camera(32, 32)

    def total(o):
        p = project(
            g["means"], g["quats"], g["scales"], o, cam["viewmat"], cam["K"], width=32, height=32
        )
        return jnp.sum(p.opacities)

    grad = jax.grad(total)(g["opacities"])
    np.testing.assert_array_equal(grad, [0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0])


@pytest.mark.parametrize("backend", BACKENDS)
def test_opacity_exactly_one_gets_its_full_gradient(backend):
    """Through rasterize: the gradient at o = 1.0 equals the one just below 1 (before the fix
    every opacity-1 Gaussian got half)."""
    cam = scenes.camera(24, 20, seed=5)
    base = scenes.random_gaussians(12, seed=5, spread=0.15)
    w = jnp.asarray(np.random.default_rng(5).normal(size=(20, 24, 3)), jnp.float32)

    @jax.jit
    @jax.grad
    def grad(o):
        out = rasterize(
            base["means"],
            base["quats"],
            base["scales"],
            o,
            base["colors"],
            cam["viewmat"],
            cam["K"],
            width=24,
            height=20,
            backend=backend,
        )
        return jnp.sum(out.rgb * w)

    def grad_at(value):
        return np.asarray(grad(jnp.full((12,), value, jnp.float32)))

    at_one, inside = grad_at(1.0), grad_at(np.nextafter(np.float32(1), np.float32(0)))
    assert np.abs(inside).max() > 1e-3
    np.testing.assert_allclose(at_one, inside, rtol=INSIDE_RTOL, atol=1e-6)


def test_point_at_the_field_of_view_limit_gets_the_inside_gradient():
    """x/z exactly at the Jacobian's limit (1.25 here, exact in float32): the conics' gradient
    with respect to the mean is the one just inside the limit, not the average of inside and
    outside that jnp.clip gave."""
    width, height = 80, 60
    K = jnp.array([[48.0, 0.0, 32.0], [0.0, 48.0, 30.0], [0.0, 0.0, 1.0]])  # lim_x = 1 + 0.25
    quats = jnp.array([[0.9, 0.2, -0.3, 0.1]])
    scales = jnp.array([[2.0, 1.5, 1.0]])
    w = jnp.array([[0.7, -1.3, 0.4]])

    @jax.jit
    @jax.grad
    def grad(means):
        p = project(
            means, quats, scales, jnp.array([0.8]), jnp.eye(4), K, width=width, height=height
        )
        return jnp.sum(p.conics * w)

    def grad_at(x):
        return np.asarray(grad(jnp.array([[x, 0.3, 2.0]], jnp.float32)))

    at_limit = grad_at(2.5)  # x / z = 1.25
    inside = grad_at(np.nextafter(np.float32(2.5), np.float32(0)))
    outside = grad_at(np.nextafter(np.float32(2.5), np.float32(5)))
    assert np.abs(inside - outside).max() > 0.05 * np.abs(inside).max()  # the limit matters
    np.testing.assert_allclose(at_limit, inside, rtol=INSIDE_RTOL)


def _centre_pixel_scene(opacity: float):
    """One Gaussian on the centre of pixel (1, 1) of a 4x4 image: σ = 0 there."""
    args = {
        "means2d": jnp.array([[1.5, 1.5]]),
        "conics": jnp.array([[0.5, 0.1, 0.4]]),
        "colors": jnp.array([[0.9, 0.2, 0.4]]),
        "opacities": jnp.array([opacity], jnp.float32),
        "depths": jnp.array([1.0]),
        "radii": jnp.array([[3, 3]], jnp.int32),
        "background": jnp.array([0.1, 0.5, 0.3]),
    }
    v = np.zeros((4, 4, 3), np.float32)
    v[1, 1] = [1.0, -2.0, 0.5]  # the loss looks at the centre pixel only
    return args, jnp.asarray(v)


@pytest.mark.parametrize("backend", BACKENDS)
def test_alpha_exactly_at_the_clamp_gets_the_full_gradient(backend):
    """o·exp(-σ) = 0.99 exactly (o = 0.99, σ = 0): alpha = 0.99 and dalpha/do = 1, so
    dL/do = v·(c - bg). The reference gave half (jnp.minimum at a tie), the kernels none."""
    impl = reference if backend == "reference" else ffi
    args, v = _centre_pixel_scene(0.99)

    def loss(o):
        render, _ = impl.rasterize_to_pixels(**dict(args, opacities=o), width=4, height=4)
        return jnp.sum(render * v)

    grad = float(jax.grad(loss)(args["opacities"])[0])
    want = float(jnp.sum(v[1, 1] * (args["colors"][0] - args["background"])))
    np.testing.assert_allclose(grad, want, rtol=1e-5)
    # Above the clamp (o = 1): alpha stays 0.99 at that pixel and passes no gradient.
    args_1, _ = _centre_pixel_scene(1.0)
    grad_1 = float(jax.grad(loss)(args_1["opacities"])[0])
    assert abs(grad_1) < 1e-7


@needs_cpu_kernel
def test_non_finite_conic_with_positive_radius_is_culled_by_the_kernel():
    scene = screen_scenes.random_scene(8, 2, 40, 33, 27, 4)
    bad = [(0, 3, 0, np.nan), (0, 5, 1, np.inf), (1, 7, 2, -np.inf), (1, 9, 0, np.nan)]
    for b, i, k, value in bad:
        scene["conics"][b, i, k] = value
    culled = dict(scene, opacities=scene["opacities"].copy())
    for b, i, _, _ in bad:
        culled["opacities"][b, i] = 0.0
    names = ("means2d", "conics", "colors", "opacities", "depths", "radii", "background")
    v_render, v_alpha = (jnp.asarray(x) for x in screen_scenes.cotangents(scene, 8))

    def run(s):
        args = [jnp.asarray(s[k]) for k in names]
        render, trans, last, _ = ffi.kernel_forward(*args, width=33, height=27)
        grads = ffi.kernel_backward(*args, trans, last, v_render, v_alpha, width=33, height=27)
        return (render, trans, last), grads

    (render, trans, last), grads = run(scene)
    (render_k, trans_k, last_k), grads_k = run(culled)
    np.testing.assert_array_equal(render, render_k)
    np.testing.assert_array_equal(trans, trans_k)
    np.testing.assert_array_equal(last, last_k)
    for g, g_k in zip(grads, grads_k):
        assert np.all(np.isfinite(g))
        np.testing.assert_array_equal(g, g_k)
    for b, i, _, _ in bad:
        assert all(float(jnp.max(jnp.abs(g[b, i]))) == 0.0 for g in grads)
