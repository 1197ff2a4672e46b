"""Binning once a step: the backward takes the forward's tile lists (ua3d/bins_cache.h).

On the CPU kernel (through its FFI targets and through jax.grad) and the emulated CUDA
kernels: a backward given the forward's bins token takes the kept lists (the store empties, the
emulated backward launches no binning kernel), its gradients are bitwise those of a backward
that bins again; a token that is unknown, already taken or made for other shapes falls back
to binning; forwards whose backward never comes are dropped past the store's limit.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.render import cuda_emu, scenes, screen_scenes
from ua3dtalk_jax.render import available_backends, ffi, rasterize

needs_cpu_kernel = pytest.mark.skipif(
    not available_backends()["cpu"], reason="CPU kernel not built"
)
needs_gxx = pytest.mark.skipif(cuda_emu.gxx() is None, reason="the CUDA emulation needs g++")
INPUTS = ("means2d", "conics", "colors", "opacities", "depths", "radii", "background")
KEPT_LIMIT = 16  # kKeptEntries in csrc/cpu/tile_bins.cc and csrc/cuda/tile_bins.cu


def _cpu_args(scene):
    return [jnp.asarray(scene[k]) for k in INPUTS]


def _cpu_backward(scene, fwd, token=None):
    _, trans, last, _ = fwd
    v_render, v_alpha = (jnp.asarray(x) for x in screen_scenes.cotangents(scene, 1))
    grads = ffi.kernel_backward(
        *_cpu_args(scene),
        trans,
        last,
        v_render,
        v_alpha,
        width=scene["width"],
        height=scene["height"],
        bins_token=token,
    )
    return [np.asarray(g) for g in grads]


@needs_cpu_kernel
def test_cpu_backward_takes_the_forwards_bins_and_matches_rebinning():
    scene = screen_scenes.random_scene(40, 2, 200, 50, 37, 4)
    before = ffi.kept_bins()
    fwd = [
        x.block_until_ready()
        for x in ffi.kernel_forward(*_cpu_args(scene), width=50, height=37, keep_bins=True)
    ]
    token = np.asarray(fwd[3])
    assert token.shape == (2, 2) and np.any(token != 0) and np.all(token == token[0])
    assert ffi.kept_bins() == before + 1
    kept = _cpu_backward(scene, fwd, fwd[3])
    assert ffi.kept_bins() == before
    rebinned = _cpu_backward(scene, fwd)
    again = _cpu_backward(scene, fwd, fwd[3])  # already taken: bins again
    unknown = _cpu_backward(scene, fwd, jnp.full((2, 2), 12345, jnp.int32))
    for a, b, c, d in zip(kept, rebinned, again, unknown):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(a, d)


@needs_cpu_kernel
def test_cpu_token_of_other_shapes_is_not_used():
    small = screen_scenes.random_scene(41, 2, 50, 50, 37, 4)
    scene = screen_scenes.random_scene(42, 2, 80, 50, 37, 4)
    small_fwd = ffi.kernel_forward(*_cpu_args(small), width=50, height=37, keep_bins=True)
    fwd = ffi.kernel_forward(*_cpu_args(scene), width=50, height=37)
    before = ffi.kept_bins()
    wrong = _cpu_backward(scene, fwd, small_fwd[3])
    assert ffi.kept_bins() == before - 1  # taken, found to be for 50 Gaussians, dropped
    for a, b in zip(wrong, _cpu_backward(scene, fwd)):
        np.testing.assert_array_equal(a, b)


@needs_cpu_kernel
def test_grad_through_rasterize_leaves_no_kept_bins():
    g, cam = scenes.edge_case("random_37x23")

    @jax.jit
    def loss_and_grad(colors):
        def loss(c):
            out = rasterize(
                g["means"],
                g["quats"],
                g["scales"],
                g["opacities"],
                c,
                cam["viewmat"],
                cam["K"],
                width=37,
                height=23,
                backend="ffi",
            )
            return jnp.sum(out.rgb**2)

        return jax.value_and_grad(loss)(colors)

    before = ffi.kept_bins()
    jax.block_until_ready(loss_and_grad(g["colors"]))
    assert ffi.kept_bins() == before
    # A forward kept for a pullback that never runs stays until the limit drops it.
    for _ in range(KEPT_LIMIT + 3):
        jax.block_until_ready(
            ffi.kernel_forward(
                *_cpu_args(screen_scenes.random_scene(43, 1, 20, 16, 16, 1)),
                width=16,
                height=16,
                keep_bins=True,
            )
        )
    assert ffi.kept_bins() == KEPT_LIMIT


@needs_gxx
@needs_cpu_kernel
def test_emulated_cuda_backward_takes_the_forwards_bins():
    emu = cuda_emu.emulator()
    emu.schedule("forward")
    scene = screen_scenes.edge_scene("odd_37x23_b3")
    v_render, v_alpha = screen_scenes.cotangents(scene, 2)
    before = emu.kept_bins()
    emu.reset_stats()
    render, trans, last, token = emu.forward(scene, keep_bins=True)
    fwd_stats = emu.stats()
    assert np.any(token != 0) and np.all(token == token[0]) and emu.kept_bins() == before + 1
    emu.reset_stats()
    kept = emu.backward(scene, trans, last, v_render, v_alpha, bins_token=token)
    bwd_stats = emu.stats()
    assert emu.kept_bins() == before
    emu.reset_stats()
    rebinned = emu.backward(scene, trans, last, v_render, v_alpha)
    rebin_stats = emu.stats()
    for a, b in zip(kept, rebinned):
        np.testing.assert_array_equal(a, b)
    # Forward: binning (3 kernels) + forward + token; backward: the kernel alone, one wait
    # (the token) and the kept lists freed; binning again: 4 launches, one wait.
    assert fwd_stats["launches"] == 5 and fwd_stats["stream_syncs"] == 1
    assert bwd_stats["launches"] == 1 and bwd_stats["stream_syncs"] == 1
    assert bwd_stats["live_device_bytes"] == 0
    assert rebin_stats["launches"] == 4 and rebin_stats["stream_syncs"] == 1
    # The forward's outputs are those of a forward that keeps nothing.
    for a, b in zip((render, trans, last), emu.forward(scene)):
        np.testing.assert_array_equal(a, b)


@needs_gxx
def test_emulated_cuda_wrong_or_taken_token_bins_again():
    emu = cuda_emu.emulator()
    emu.schedule("forward")
    small = screen_scenes.random_scene(44, 3, 40, 37, 23, 4)
    scene = screen_scenes.edge_scene("odd_37x23_b3")
    v_render, v_alpha = screen_scenes.cotangents(scene, 3)
    *_, small_token = emu.forward(small, keep_bins=True)
    _, trans, last, token = emu.forward(scene, keep_bins=True)
    want = emu.backward(scene, trans, last, v_render, v_alpha)
    for t in (small_token, token, token):  # other shapes; then taken once, then gone
        got = emu.backward(scene, trans, last, v_render, v_alpha, bins_token=t)
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b)
    assert emu.stats()["live_device_bytes"] == 0
