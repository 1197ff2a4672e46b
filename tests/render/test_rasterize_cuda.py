"""CUDA kernel tests (marker `gpu`): run where JAX sees a GPU, skipped otherwise, and failed, not
skipped, when a GPU is visible but the CUDA extension did not build.

Through `rasterize`: against the reference on every edge case, against the CPU kernel, vmap over
views. The kernels called directly with views batched, against the CPU kernel: C = 1..5 (2 and 5
take the general path, colour in global memory), every screen-space edge scene (> 256 Gaussians
per tile, cut-off piles, depth ties, -0 and negative depths, inactive Gaussians, 1x1 images),
N = 0 in three views, and the backward taking the forward's kept tile lists. Which pairs blend
(transmittance, last) must be the CPU's bit for bit (one exp, sigma without FMA); colours and
gradients match to rounding (nvcc contracts the accumulations into FMAs; the backward sums with
atomics). The same comparisons run on every CPU through the emulation
(test_rasterize_cuda_emu.py), which the first GPU run confirms or refutes.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.render import scenes, screen_scenes
from tests.render.test_rasterize_cuda_emu import INPUTS, assert_grads_close
from tests.render.test_rasterize_kernel import (
    FWD_ATOL,
    GRAD_RTOL,
    assert_matches_reference,
    render_and_grads,
)
from ua3dtalk_jax.render import available_backends, ffi

# nvcc fuses `acc += w * c` into an FMA: colours differ from the CPU's by float32 rounding.
CUDA_RENDER_ATOL = 1e-5
# Gradients: atomics in another order and FMAs in the gradient algebra.
CUDA_GRAD_RTOL = 1e-4
CUDA_GRAD_MAX_FRACTION = 1e-3


def _gpus():
    try:
        return jax.devices("gpu")
    except RuntimeError:
        return []


pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not _gpus(), reason="no CUDA GPU visible to JAX"),
]


@pytest.fixture(autouse=True)
def _cuda_extension_built():
    if not available_backends()["cuda"]:
        pytest.fail(
            "a GPU is visible to JAX but the CUDA kernels are not built (nvcc missing or "
            "failed at install: see the 'ua3dtalk_jax:' lines of pip install -v)"
        )


@pytest.mark.parametrize("case", scenes.EDGE_CASES)
def test_cuda_kernel_matches_reference(case):
    g, cam = scenes.edge_case(case)
    with jax.default_device(_gpus()[0]):
        assert_matches_reference(g, cam)


@pytest.mark.parametrize("case", ["random_37x23", "pile_one_pixel"])
def test_cuda_kernel_matches_cpu_kernel(case):
    g, cam = scenes.edge_case(case)
    on = {}
    for name, device in (("cpu", jax.devices("cpu")[0]), ("cuda", _gpus()[0])):
        put = functools.partial(jax.device_put, device=device)
        g_d, cam_d = (
            jax.tree.map(put, g),
            {k: put(v) if hasattr(v, "shape") else v for k, v in cam.items()},
        )
        with jax.default_device(device):
            on[name] = render_and_grads("ffi", g_d, cam_d)
    (outs_c, grads_c), (outs_g, grads_g) = on["cpu"], on["cuda"]
    for a, b in zip(outs_g, outs_c):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=FWD_ATOL * 10)
    for a, b in zip(grads_g, grads_c):
        a, b = np.asarray(a), np.asarray(b)
        assert np.linalg.norm(a - b) <= GRAD_RTOL * max(np.linalg.norm(b), 1e-3)


def test_cuda_vmap_over_views():
    from tests.render.test_rasterize_transforms import test_vmap_over_views_equals_loop

    with jax.default_device(_gpus()[0]):
        test_vmap_over_views_equals_loop("ffi")


def kernels_on(device, scene: dict, keep_bins: bool = False):
    """Forward and backward kernels called directly on `device`: ((render, T, last), grads)."""
    put = functools.partial(jax.device_put, device=device)
    args = [put(jnp.asarray(scene[k])) for k in INPUTS]
    v_render, v_alpha = (put(jnp.asarray(x)) for x in screen_scenes.cotangents(scene, 0))
    w, h = scene["width"], scene["height"]
    with jax.default_device(device):
        render, trans, last, token = ffi.kernel_forward(
            *args, width=w, height=h, keep_bins=keep_bins
        )
        grads = ffi.kernel_backward(
            *args,
            trans,
            last,
            v_render,
            v_alpha,
            width=w,
            height=h,
            bins_token=token if keep_bins else None,
        )
    return tuple(np.asarray(x) for x in (render, trans, last)), tuple(map(np.asarray, grads))


def assert_cuda_matches_cpu(scene: dict) -> None:
    (render_c, trans_c, last_c), grads_c = kernels_on(jax.devices("cpu")[0], scene)
    (render, trans, last), grads = kernels_on(_gpus()[0], scene, keep_bins=True)
    np.testing.assert_array_equal(last, last_c, err_msg="blend decisions differ from the CPU's")
    np.testing.assert_array_equal(trans, trans_c, err_msg="transmittance differs from the CPU's")
    np.testing.assert_allclose(render, render_c, rtol=0, atol=CUDA_RENDER_ATOL)
    assert_grads_close(grads, grads_c, "cuda", CUDA_GRAD_RTOL, CUDA_GRAD_MAX_FRACTION)


@pytest.mark.parametrize("channels", [1, 2, 3, 4, 5])
def test_direct_kernels_match_cpu_for_every_channel_count(channels):
    assert_cuda_matches_cpu(screen_scenes.random_scene(10 + channels, 2, 90, 37, 23, channels))


@pytest.mark.parametrize("name", screen_scenes.EDGE_SCENES)
def test_direct_kernels_match_cpu_on_edge_scenes(name):
    assert_cuda_matches_cpu(screen_scenes.edge_scene(name))


def test_no_gaussians_in_several_views():
    scene = screen_scenes.random_scene(20, 3, 0, 19, 13, 4)
    (render, trans, last), grads = kernels_on(_gpus()[0], scene, keep_bins=True)
    np.testing.assert_array_equal(
        render, np.broadcast_to(scene["background"][:, None, None], render.shape)
    )
    np.testing.assert_array_equal(trans, 1.0)
    np.testing.assert_array_equal(last, -1)
    assert all(g.size == 0 for g in grads)


def test_backward_takes_the_forwards_tile_lists():
    scene = screen_scenes.edge_scene("odd_37x23_b3")
    before = ffi.kept_bins("cuda")
    _, kept = kernels_on(_gpus()[0], scene, keep_bins=True)
    assert ffi.kept_bins("cuda") == before  # kept by the forward, taken by the backward
    _, rebinned = kernels_on(_gpus()[0], scene)
    assert_grads_close(
        kept, rebinned, "kept vs binned again", CUDA_GRAD_RTOL, CUDA_GRAD_MAX_FRACTION
    )
