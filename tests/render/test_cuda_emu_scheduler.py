"""The CUDA emulation's scheduler (csrc/emu) on small kernels of csrc/emu/selftest_kernels.cc.

A correct kernel gives the known result in every thread order; each kernel that breaks a rule
of the execution model (a barrier reached by part of a block, after threads exited, a warp
operation with missing lanes) is rejected with a message naming the kernel and the line; a
race on shared memory shows as a result that changes with the thread order.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.render import cuda_emu

pytestmark = pytest.mark.skipif(cuda_emu.gxx() is None, reason="the CUDA emulation needs g++")
THREADS = 128


@pytest.fixture(scope="module")
def emu():
    return cuda_emu.emulator()


@pytest.mark.parametrize("order", ["forward", "reverse", "random"])
def test_correct_kernel_gives_the_known_result_in_every_order(emu, order):
    emu.schedule(order, seed=3)
    out = emu.selftest("block_sum")
    np.testing.assert_array_equal(out[:3], THREADS * (THREADS - 1) // 2)  # Σ tid per block
    np.testing.assert_array_equal(out[3:6], THREADS // 2)  # odd thread indices
    np.testing.assert_array_equal(out[6:9].view(np.uint32), 0x55555555)  # even lanes' ballot


@pytest.mark.parametrize(
    "kernel, message",
    [
        (
            "divergent_barrier",
            (
                r"DivergentBarrier block \(0, 0, 0\).*divergent barrier: "
                r"64 at __syncthreads selftest_kernels.cc:\d+; 64 at __syncthreads"
            ),
        ),
        ("barrier_after_exit", r"__syncthreads reached by 64 of 128 threads after 64 exited"),
        (
            "shuffle_missing_lanes",
            (
                r"__shfl_down_sync at selftest_kernels.cc:\d+ \(warp 0, "
                r"mask 0xffffffff\) misses lanes: lane 16 exited"
            ),
        ),
        ("vote_beside_barrier", r"__any_sync .* misses lanes: lane 16 waits at __syncthreads"),
    ],
)
def test_broken_synchronisation_is_reported(emu, kernel, message):
    emu.schedule("forward")
    with pytest.raises(cuda_emu.KernelFault, match=message):
        emu.selftest(kernel)


def test_shared_memory_race_changes_with_thread_order(emu):
    results = []
    for order, seed in (("forward", 0), ("reverse", 0), ("random", 1)):
        emu.schedule(order, seed)
        results.append(emu.selftest("shared_race")[:THREADS].copy())
    assert not np.array_equal(results[0], results[1])


def test_launch_beyond_cuda_limits_fails_like_cuda(emu):
    with pytest.raises(RuntimeError, match="invalid configuration argument"):
        emu.selftest("too_many_threads")
