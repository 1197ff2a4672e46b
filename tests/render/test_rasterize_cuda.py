"""CUDA kernel tests: run where a GPU and the CUDA extension are present, skipped otherwise.

The CUDA backward accumulates with atomics, so it matches the CPU kernel and the reference
to rounding (not bitwise); tolerances are those of the CPU kernel tests.
"""

from __future__ import annotations

import functools

import jax
import numpy as np
import pytest

from tests.render import scenes
from tests.render.test_rasterize_kernel import (
    FWD_ATOL,
    GRAD_RTOL,
    assert_matches_reference,
    render_and_grads,
)
from ua3dtalk_jax.render import available_backends


def _gpus():
    try:
        return jax.devices("gpu")
    except RuntimeError:
        return []


pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not _gpus(), reason="no CUDA GPU visible to JAX"),
    pytest.mark.skipif(
        not available_backends()["cuda"], reason="CUDA kernels not built (nvcc missing at install)"
    ),
]


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
