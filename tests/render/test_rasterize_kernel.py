"""FFI kernel (C++ on CPU) vs the pure-JAX reference through the public `rasterize`.

Forward (rgb, alpha, depth) and every gradient (means, quats, scales, opacities, colors,
background) on random scenes and edge cases, plus N = 0, NaN inputs and argument errors.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.render import scenes
from ua3dtalk_jax.render import available_backends, ffi, rasterize, reference

# Kernel and reference evaluate the same pairs in float32 and differ only by rounding
# (tiled product of (1 - alpha) vs the reference's exp(cumsum(log1p))): ~1e-6 seen.
FWD_ATOL = 1e-4
# Depth is Σ wᵢ zᵢ with z up to ~6, so the same relative rounding is larger in absolute terms.
DEPTH_ATOL = 1e-3
# Gradient sums over many pixels in a different order (and T recovered by division in the
# backward pass): relative L2 error ~1e-5 seen.
GRAD_RTOL = 1e-3
ARG_NAMES = ("means", "quats", "scales", "opacities", "colors", "background")

needs_cpu_kernel = pytest.mark.skipif(
    not available_backends()["cpu"], reason="CPU kernel not built (pip install -e .)"
)


@functools.cache
def _render_fn(backend: str, width: int, height: int):
    def loss(params, viewmat, K, cot_rgb, cot_alpha, cot_depth):
        means, quats, scales, opacities, colors, background = params
        out = rasterize(
            means,
            quats,
            scales,
            opacities,
            colors,
            viewmat,
            K,
            width=width,
            height=height,
            background=background,
            backend=backend,
        )
        value = jnp.sum(out.rgb * cot_rgb) + jnp.sum(out.alpha * cot_alpha)
        value = value + jnp.sum(out.depth * cot_depth)
        return value, (out.rgb, out.alpha, out.depth)

    return jax.jit(jax.value_and_grad(loss, has_aux=True))


def render_and_grads(backend: str, g: dict, cam: dict, seed: int = 0):
    """Returns ((rgb, alpha, depth), grads tuple in ARG_NAMES order)."""
    w, h = cam["width"], cam["height"]
    rng = np.random.default_rng(seed)
    cots = (rng.normal(size=(h, w, 3)), rng.normal(size=(h, w)), rng.normal(size=(h, w)) * 0.1)
    cots = [jnp.asarray(c, g["means"].dtype) for c in cots]
    params = tuple(g[k] for k in ARG_NAMES[:-1]) + (cam["background"],)
    (_, outs), grads = _render_fn(backend, w, h)(params, cam["viewmat"], cam["K"], *cots)
    return outs, grads


def assert_matches_reference(g: dict, cam: dict) -> None:
    (rgb_r, alpha_r, depth_r), grads_r = render_and_grads("reference", g, cam)
    (rgb_k, alpha_k, depth_k), grads_k = render_and_grads("ffi", g, cam)
    np.testing.assert_allclose(rgb_k, rgb_r, rtol=0, atol=FWD_ATOL)
    np.testing.assert_allclose(alpha_k, alpha_r, rtol=0, atol=FWD_ATOL)
    np.testing.assert_allclose(depth_k, depth_r, rtol=0, atol=DEPTH_ATOL)
    for name, gk, gr in zip(ARG_NAMES, grads_k, grads_r):
        assert np.all(np.isfinite(gk)), name
        norm = float(jnp.linalg.norm(gr))
        err = float(jnp.linalg.norm(gk - gr))
        assert err <= GRAD_RTOL * max(norm, 1e-3), f"{name}: |Δ|={err:.3g}, |ref|={norm:.3g}"


@needs_cpu_kernel
@pytest.mark.parametrize("case", scenes.EDGE_CASES)
def test_kernel_matches_reference(case):
    g, cam = scenes.edge_case(case)
    assert_matches_reference(g, cam)


@needs_cpu_kernel
def test_behind_camera_is_background_with_zero_gradients():
    g, cam = scenes.edge_case("behind_camera")
    (rgb, alpha, depth), grads = render_and_grads("ffi", g, cam)
    np.testing.assert_array_equal(rgb, jnp.broadcast_to(cam["background"], rgb.shape))
    assert float(jnp.max(alpha)) == 0.0 and float(jnp.max(jnp.abs(depth))) == 0.0
    for name, grad in zip(ARG_NAMES[:-1], grads[:-1]):
        assert float(jnp.max(jnp.abs(grad))) == 0.0, name


@needs_cpu_kernel
def test_pile_reaches_transmittance_cutoff():
    g, cam = scenes.edge_case("pile_one_pixel")
    (_, alpha, _), _ = render_and_grads("ffi", g, cam)
    # Stopped pixels keep T in (1e-4, 1e-4 / 0.3]: alpha just below 1 - 1e-4.
    assert 1.0 - float(jnp.max(alpha)) > 1e-4
    assert 1.0 - float(jnp.max(alpha)) < 1e-4 / 0.3 + 1e-6


@pytest.mark.parametrize("backend", ["reference", pytest.param("ffi", marks=needs_cpu_kernel)])
def test_no_gaussians_gives_background(backend):
    cam = scenes.camera(19, 13)
    empty = scenes.random_gaussians(0, seed=0)
    (rgb, alpha, depth), grads = render_and_grads(backend, empty, cam)
    np.testing.assert_array_equal(rgb, jnp.broadcast_to(cam["background"], rgb.shape))
    assert float(jnp.max(alpha)) == 0.0 and float(jnp.max(jnp.abs(depth))) == 0.0
    # d(Σ rgb·cot)/d(background) = Σ_pixels cot, since T_final = 1 everywhere.
    rng = np.random.default_rng(0)
    np.testing.assert_allclose(grads[-1], rng.normal(size=(13, 19, 3)).sum((0, 1)), rtol=1e-5)


@pytest.mark.parametrize("backend", ["reference", pytest.param("ffi", marks=needs_cpu_kernel)])
def test_nan_gaussians_are_culled(backend):
    """Documented NaN policy: a Gaussian with a non-finite parameter contributes nothing."""
    g, cam = scenes.edge_case("random_37x23")
    bad = np.zeros(scenes.N_EDGE, bool)
    bad[[3, 17, 40, 41, 99]] = True
    g_nan = dict(g)
    g_nan["means"] = g["means"].at[3, 0].set(jnp.nan)
    g_nan["scales"] = g["scales"].at[17, 1].set(jnp.inf)
    g_nan["quats"] = g["quats"].at[40].set(jnp.nan)
    g_nan["opacities"] = g["opacities"].at[41].set(jnp.nan)
    g_nan["colors"] = g["colors"]
    g_nan["means"] = g_nan["means"].at[99].set(jnp.nan)
    # The same scene with those Gaussians made inert (opacity 0): same shapes, no recompile.
    g_kept = dict(g, opacities=jnp.where(jnp.asarray(bad), 0.0, g["opacities"]))
    (rgb, alpha, depth), grads = render_and_grads(backend, g_nan, cam)
    (rgb_k, alpha_k, depth_k), _ = render_and_grads(backend, g_kept, cam)
    np.testing.assert_allclose(rgb, rgb_k, atol=1e-6)
    np.testing.assert_allclose(alpha, alpha_k, atol=1e-6)
    np.testing.assert_allclose(depth, depth_k, atol=1e-5)
    for name, grad in zip(ARG_NAMES, grads):
        assert np.all(np.isfinite(grad)), name
    for name, grad in zip(ARG_NAMES[:4], grads[:4]):
        assert float(jnp.max(jnp.abs(grad[bad]))) == 0.0, name


def _args(n=5):
    g = scenes.random_gaussians(n, seed=0)
    cam = scenes.camera(16, 16)
    return [
        g["means"],
        g["quats"],
        g["scales"],
        g["opacities"],
        g["colors"],
        cam["viewmat"],
        cam["K"],
    ]


@pytest.mark.parametrize(
    "index, value, name",
    [
        (0, jnp.zeros((5, 2)), "means"),
        (1, jnp.zeros((5, 4), jnp.int32), "quats"),
        (2, jnp.zeros((4, 3)), "scales"),
        (3, jnp.zeros((5, 1)), "opacities"),
        (4, jnp.zeros((6, 3)), "colors"),
        (5, jnp.eye(3), "viewmat"),
        (6, jnp.eye(4), "K"),
    ],
)
def test_wrong_shape_or_dtype_names_the_argument(index, value, name):
    args = _args()
    args[index] = value
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        rasterize(*args, width=16, height=16, backend="reference")


def test_wrong_background_names_the_argument():
    with pytest.raises(ValueError, match=r"\bbackground\b"):
        rasterize(*_args(), width=16, height=16, background=jnp.zeros(4), backend="reference")


@needs_cpu_kernel
def test_kernel_validates_shapes_and_names_the_argument():
    n = 4
    ok = {
        "means2d": jnp.zeros((n, 2)),
        "conics": jnp.ones((n, 3)),
        "colors": jnp.ones((n, 3)),
        "opacities": jnp.full((n,), 0.5),
        "depths": jnp.ones(n),
        "radii": jnp.full((n, 2), 2, jnp.int32),
        "background": jnp.zeros(3),
    }
    bad = dict(ok, conics=jnp.ones((n, 2)))
    with pytest.raises(Exception, match="conics"):
        jax.block_until_ready(ffi.rasterize_to_pixels(**bad, width=8, height=8))


@needs_cpu_kernel
def test_depth_order_ties_and_signs_match_reference():
    """The bucket order is (depth, index): equal depths (including -0 and +0) blend in index
    order, negative depths sort before positive ones, exactly as the reference's stable sort."""
    rng = np.random.default_rng(3)
    n, size = 64, 40
    means2d = rng.uniform(4.0, size - 4.0, (n, 2)).astype(np.float32)
    depths = rng.choice(np.array([-0.5, -0.0, 0.0, 0.7, 0.7, 2.0], np.float32), n)
    conics = np.tile(np.array([[0.08, 0.01, 0.06]], np.float32), (n, 1))
    colors = rng.uniform(0.0, 1.0, (n, 4)).astype(np.float32)
    opacities = rng.uniform(0.5, 0.95, n).astype(np.float32)
    radii = np.full((n, 2), 16, np.int32)  # covers alpha >= 1/255 for these conics
    background = np.array([0.1, 0.2, 0.3, 0.0], np.float32)
    args = tuple(jnp.asarray(x) for x in (means2d, conics, colors, opacities, depths, radii))
    args = (*args, jnp.asarray(background))
    rgb_k, alpha_k = ffi.rasterize_to_pixels(*args, width=size, height=size)
    rgb_r, alpha_r = reference.rasterize_to_pixels(*args, width=size, height=size)
    np.testing.assert_allclose(rgb_k, rgb_r, rtol=0, atol=FWD_ATOL)
    np.testing.assert_allclose(alpha_k, alpha_r, rtol=0, atol=FWD_ATOL)


@needs_cpu_kernel
@pytest.mark.parametrize("depth_pair", [(1.0, 1.0), (-0.0, 0.0), (0.0, -0.0)])
def test_equal_depths_blend_in_index_order(depth_pair):
    """Two coincident Gaussians at equal depth: the lower index is in front (red over blue)."""
    size = 16
    means2d = jnp.full((2, 2), 8.0)
    conics = jnp.tile(jnp.array([[0.1, 0.0, 0.1]]), (2, 1))
    colors = jnp.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    opacities = jnp.array([0.9, 0.9])
    radii = jnp.full((2, 2), 8, jnp.int32)
    args = (means2d, conics, colors, opacities, jnp.array(depth_pair), radii, jnp.zeros(3))
    rgb = ffi.rasterize_to_pixels(*args, width=size, height=size)[0]
    centre = np.asarray(rgb[7, 7])
    assert centre[0] > 0.8 and centre[2] < 0.15, centre
    swapped = (means2d, conics, colors[::-1], *args[3:])
    centre = np.asarray(ffi.rasterize_to_pixels(*swapped, width=size, height=size)[0][7, 7])
    assert centre[2] > 0.8 and centre[0] < 0.15, centre
