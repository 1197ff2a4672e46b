"""The CPU tile kernels' instruction-set levels (csrc/cpu/tile_kernels.h) give the same bits.

Each level (avx512: 16 float lanes a vector, avx2: 8, baseline: 4) rounds lane by lane as the
scalar code of ua3d/raster_math.h. Checked here: the vector exp against the scalar one on a
dense sweep and on special values; the forward and backward, float32 and float64, of every
edge scene and of the general channel path, bitwise equal across the levels this CPU runs
(UA3D_CPU_ISA caps the level, read at every call); and a bad UA3D_CPU_ISA is refused.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.render import screen_scenes
from ua3dtalk_jax.render import available_backends, ffi

pytestmark = pytest.mark.skipif(not available_backends()["cpu"], reason="CPU kernel not built")
INPUTS = ("means2d", "conics", "colors", "opacities", "depths", "radii", "background")


def _levels() -> list[str]:
    from ua3dtalk_jax.render import _raster_cpu

    return list(_raster_cpu.tile_isas())


def _exp_inputs() -> np.ndarray:
    """A dense sweep over the polynomial's range and past the clamps, the values next to the
    clamps, and the special values."""
    sweep = np.linspace(-64.0, 2.0, 3_000_001, dtype=np.float32)
    edges = np.array([-60.0, 0.0, -87.0, -5.545, -1e-30, -1e-45], np.float32)
    near = np.concatenate(
        [np.nextafter(edges, np.float32(-np.inf)), np.nextafter(edges, np.float32(np.inf))]
    )
    special = np.array([np.nan, -np.inf, np.inf, -0.0, 0.0, -3.4e38, 3.4e38], np.float32)
    return np.concatenate([sweep, edges, near, special]).astype(np.float32)


def test_vector_exp_matches_scalar_bitwise():
    from ua3dtalk_jax.render import _raster_cpu

    x = _exp_inputs()
    want = _raster_cpu.exp_nonpos(x, "scalar").view(np.int32)
    for level in _levels():
        got = _raster_cpu.exp_nonpos(x, level).view(np.int32)
        bad = np.flatnonzero(got != want)
        assert bad.size == 0, f"{level}: {bad.size} values differ, first at x = {x[bad[0]]!r}"


def test_exp_of_an_unknown_level_names_it():
    from ua3dtalk_jax.render import _raster_cpu

    with pytest.raises(ValueError, match="'sse9'"):
        _raster_cpu.exp_nonpos(np.zeros(3, np.float32), "sse9")


@functools.cache
def _kernel_fn(width: int, height: int):
    def run(args, v_render, v_alpha):
        render, trans, last, token = ffi.kernel_forward(
            *args, width=width, height=height, keep_bins=True
        )
        grads = ffi.kernel_backward(
            *args, trans, last, v_render, v_alpha, width=width, height=height, bins_token=token
        )
        return (render, trans, last), grads

    return jax.jit(run)


def _run(scene: dict, dtype) -> list[np.ndarray]:
    args = tuple(jnp.asarray(scene[k], jnp.int32 if k == "radii" else dtype) for k in INPUTS)
    v_render, v_alpha = (jnp.asarray(c, dtype) for c in screen_scenes.cotangents(scene, 0))
    fwd, grads = _kernel_fn(scene["width"], scene["height"])(args, v_render, v_alpha)
    return [np.asarray(x) for x in (*fwd, *grads)]


def _scenes():
    for name in screen_scenes.EDGE_SCENES:
        yield name, screen_scenes.edge_scene(name)
    # C = 5 and 2 take the kernels' general channel path.
    yield "channels_5", screen_scenes.random_scene(11, 2, 200, 45, 30, 5)
    yield "channels_2", screen_scenes.random_scene(12, 1, 120, 33, 17, 2)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_level_gives_the_same_bits(monkeypatch, dtype):
    levels = _levels()
    assert levels[-1] == "baseline"
    with jax.enable_x64(dtype == np.float64):
        for name, scene in _scenes():
            results = {}
            for level in levels:
                monkeypatch.setenv("UA3D_CPU_ISA", level)
                results[level] = _run(scene, dtype)
            for level in levels[1:]:
                for i, (a, b) in enumerate(zip(results[levels[0]], results[level])):
                    np.testing.assert_array_equal(
                        a, b, err_msg=f"{name}: output {i} of {level} vs {levels[0]}"
                    )


def test_unknown_level_is_refused(monkeypatch):
    scene = screen_scenes.random_scene(13, 1, 20, 16, 16, 3)
    monkeypatch.setenv("UA3D_CPU_ISA", "avx1024")
    with pytest.raises(Exception, match="UA3D_CPU_ISA must be avx512, avx2 or baseline"):
        _run(scene, np.float32)
