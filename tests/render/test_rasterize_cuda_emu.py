"""The CUDA rasterizer (csrc/cuda) executed on this CPU by the emulation harness, vs the CPU kernel.

`tests/render/cuda_emu.py` compiles the unchanged CUDA kernels with g++ (each CUDA thread a
fiber; see csrc/emu/cuda_emu.h). Every case goes through both kernels called directly, as the
FFI calls them with views batched: the forward outputs (render, transmittance, last) and the
four backward gradients. Outputs start as NaN, so an unwritten pixel or gradient shows.
Between synchronisation points the threads run in forward, reverse or random order (the
cases rotate through them); the forward has no atomics, so it must not depend on the order.
"""

from __future__ import annotations

import functools
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.render import cuda_emu, screen_scenes
from ua3dtalk_jax.render import available_backends, ffi

pytestmark = [
    pytest.mark.skipif(cuda_emu.gxx() is None, reason="the CUDA emulation needs g++"),
    pytest.mark.skipif(not available_backends()["cpu"], reason="CPU kernel not built"),
]
# The forward is compared bit for bit: both kernels compute each pixel with the same float32
# operations in the same order (no contraction on either side; one exp polynomial).
# The CUDA backward sums each Gaussian's gradient over a warp by shuffles, then over warps
# and tiles by atomics; the CPU in per-column lanes, then in intersection order. Float32
# rounding of sums of a few hundred terms: ~3e-7 relative L2 seen.
GRAD_RTOL = 1e-5
# ... and no single element off by more than this fraction of the array's largest.
GRAD_MAX_FRACTION = 1e-4
INPUTS = ("means2d", "conics", "colors", "opacities", "depths", "radii", "background")
GRADS = cuda_emu.GRAD_NAMES
ORDERS = ("forward", "reverse", "random")


@pytest.fixture(scope="module")
def emu():
    return cuda_emu.emulator()


@functools.cache
def _cpu_fn(width: int, height: int):
    def run(args, v_render, v_alpha):
        render, trans, last, _ = ffi.kernel_forward(*args, width=width, height=height)
        grads = ffi.kernel_backward(
            *args, trans, last, v_render, v_alpha, width=width, height=height
        )
        return (render, trans, last), grads

    return jax.jit(run)


def cpu_kernel(scene: dict, v_render, v_alpha):
    """The CPU kernel through its FFI targets: ((render, T, last), grads) as numpy."""
    args = tuple(jnp.asarray(scene[k]) for k in INPUTS)
    fwd, grads = _cpu_fn(scene["width"], scene["height"])(args, v_render, v_alpha)
    return tuple(map(np.asarray, fwd)), tuple(map(np.asarray, grads))


def emulated(emu, scene: dict, v_render, v_alpha, order: str, seed: int = 0):
    emu.schedule(order, seed)
    render, trans, last = emu.forward(scene)
    return (render, trans, last), emu.backward(scene, trans, last, v_render, v_alpha)


def assert_grads_close(got, want, what: str, rtol=GRAD_RTOL, max_fraction=GRAD_MAX_FRACTION):
    """Each gradient finite, within `rtol` in relative L2 and no entry off by more than
    `max_fraction` of the largest."""
    for name, a, b in zip(GRADS, got, want):
        assert np.all(np.isfinite(a)), f"{what}: {name} has non-finite entries"
        scale = max(float(np.abs(b).max(initial=0.0)), 1e-6)
        rel = np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-6)
        worst = float(np.abs(a - b).max(initial=0.0))
        assert rel <= rtol, f"{what}: {name} relative L2 error {rel:.3g}"
        assert worst <= max_fraction * scale, f"{what}: {name} max error {worst:.3g}"


def assert_matches_cpu(emu, scene: dict, order: str, seed: int = 0) -> None:
    v_render, v_alpha = screen_scenes.cotangents(scene, seed)
    (render, trans, last), grads = emulated(emu, scene, v_render, v_alpha, order, seed)
    (render_c, trans_c, last_c), grads_c = cpu_kernel(scene, v_render, v_alpha)
    assert not np.isnan(render).any() and not np.isnan(trans).any(), "unwritten pixels"
    np.testing.assert_array_equal(last, last_c)
    np.testing.assert_array_equal(trans, trans_c)
    np.testing.assert_array_equal(render, render_c)
    assert_grads_close(grads, grads_c, order)


@pytest.mark.parametrize("index, name", list(enumerate(screen_scenes.EDGE_SCENES)))
def test_emulated_cuda_matches_cpu_kernel(emu, index, name):
    assert_matches_cpu(emu, screen_scenes.edge_scene(name), ORDERS[index % 3], seed=index)


@pytest.mark.parametrize("channels", [1, 2, 3, 4, 5])
def test_every_channel_count(emu, channels):
    """C = 1, 3, 4 have kernels with the channels in registers; 2 and 5 take the general path
    (colour and the colour behind in global memory)."""
    scene = screen_scenes.random_scene(10 + channels, 2, 90, 37, 23, channels)
    assert_matches_cpu(emu, scene, ORDERS[channels % 3], seed=channels)


def test_cutoff_pile_stops_pixels(emu):
    scene = screen_scenes.edge_scene("cutoff_pile")
    emu.schedule("forward")
    _, trans, _ = emu.forward(scene)
    assert 1e-4 < trans.min() < 1e-4 / (1 - 0.6)  # stopped: T kept just above the cut-off


def test_lists_longer_than_one_shared_memory_batch(emu):
    scene = screen_scenes.edge_scene("over_256_per_tile")
    emu.schedule("forward")
    _, _, last = emu.forward(scene)
    assert last.min() > 256  # every pixel blended Gaussians of the second batch of 256


def test_no_gaussians_in_several_views(emu):
    scene = screen_scenes.random_scene(20, 3, 0, 19, 13, 4)
    v_render, v_alpha = screen_scenes.cotangents(scene, 0)
    (render, trans, last), grads = emulated(emu, scene, v_render, v_alpha, "forward")
    np.testing.assert_array_equal(
        render, np.broadcast_to(scene["background"][:, None, None], render.shape)
    )
    np.testing.assert_array_equal(trans, 1.0)
    np.testing.assert_array_equal(last, -1)
    assert all(g.size == 0 for g in grads)
    (render_c, _, last_c), _ = cpu_kernel(scene, v_render, v_alpha)
    np.testing.assert_array_equal(render, render_c)
    np.testing.assert_array_equal(last, last_c)


def test_alpha_exactly_at_the_clamp_gets_the_full_gradient(emu):
    """o·exp(-σ) = 0.99 at a pixel centre (σ = 0): dL/do = v·(c - bg), as on the CPU."""
    scene = screen_scenes.random_scene(30, 1, 1, 4, 4, 3)
    scene.update(
        means2d=np.float32([[[1.5, 1.5]]]),
        opacities=np.float32([[0.99]]),
        radii=np.int32([[[3, 3]]]),
    )
    v_render = np.zeros((1, 4, 4, 3), np.float32)
    v_render[0, 1, 1] = [1.0, -2.0, 0.5]
    v_alpha = np.zeros((1, 4, 4), np.float32)
    (_, _, last), grads = emulated(emu, scene, v_render, v_alpha, "forward")
    assert last[0, 1, 1] == 0
    want = float(np.sum(v_render[0, 1, 1] * (scene["colors"][0, 0] - scene["background"][0])))
    np.testing.assert_allclose(grads[3][0, 0], want, rtol=1e-5)


def test_forward_does_not_depend_on_thread_order(emu):
    scene = screen_scenes.edge_scene("odd_37x23_b3")
    v_render, v_alpha = screen_scenes.cotangents(scene, 0)
    runs = [
        emulated(emu, scene, v_render, v_alpha, order, seed)
        for order, seed in (("forward", 0), ("reverse", 0), ("random", 1), ("random", 2))
    ]
    (fwd0, grads0) = runs[0]
    for fwd, grads in runs[1:]:
        for a, b in zip(fwd, fwd0):
            np.testing.assert_array_equal(a, b)
        assert_grads_close(grads, grads0, "order")


SANITIZED_RUN = """
import sys
import numpy as np
from tests.render import cuda_emu, screen_scenes
emu = cuda_emu.Emulator(sys.argv[1])
out = {}
for i, name in enumerate(screen_scenes.EDGE_SCENES):
    scene = screen_scenes.edge_scene(name)
    v_render, v_alpha = screen_scenes.cotangents(scene, i)
    emu.schedule("random", i)
    render, trans, last = emu.forward(scene)
    grads = emu.backward(scene, trans, last, v_render, v_alpha)
    for key, value in zip(("render", "trans", "last") + cuda_emu.GRAD_NAMES,
                          (render, trans, last) + grads):
        out[f"{name}/{key}"] = value
np.savez(sys.argv[2], **out)
print("SANITIZED_RUN_OK")
"""


@pytest.mark.slow
def test_edge_scenes_under_address_and_undefined_behaviour_sanitizers(emu, tmp_path):
    """Every edge scene, forward and backward, in a build with ASan and UBSan (no recovery):
    no report, and bitwise the same results as the release build in the same thread order."""
    if cuda_emu.libasan() is None:
        pytest.skip("g++ has no libasan")
    lib = cuda_emu.build(variant="sanitize")
    out = tmp_path / "sanitized.npz"
    proc = subprocess.run(
        [sys.executable, "-c", SANITIZED_RUN, str(lib), str(out)],
        env=cuda_emu.sanitizer_env(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert "SANITIZED_RUN_OK" in proc.stdout, proc.stderr[-6000:]
    assert "runtime error" not in proc.stderr and "AddressSanitizer" not in proc.stderr
    sanitized = np.load(out)
    for i, name in enumerate(screen_scenes.EDGE_SCENES):
        scene = screen_scenes.edge_scene(name)
        v_render, v_alpha = screen_scenes.cotangents(scene, i)
        (render, trans, last), grads = emulated(emu, scene, v_render, v_alpha, "random", i)
        for key, value in zip(
            ("render", "trans", "last") + cuda_emu.GRAD_NAMES, (render, trans, last) + grads
        ):
            np.testing.assert_array_equal(sanitized[f"{name}/{key}"], value, err_msg=key)
