// Small kernels that check the emulation's scheduler itself
// (tests/render/test_cuda_emu_scheduler.py):
// one correct kernel whose result is known (barriers, __syncthreads_count, shuffles, votes),
// and one kernel per rule the scheduler must enforce, each breaking it once.
#include <cstdio>
#include <string>
#include <vector>

#include "cuda/launch.h"
#include "emu/cuda_emu.h"

#define UA3D_EMU_API extern "C" __attribute__((visibility("default")))

namespace {

constexpr int kThreads = 128;

// Block sum of thread indices by warp shuffles, then across warps through shared memory;
// out[block] = sum, out[grid + block] = number of threads with an odd index (syncthreads_count),
// out[2 grid + block] = ballot of even lanes in warp 0 (0x55555555).
__global__ void BlockSum(int* out) {
  __shared__ int s_warp[kThreads / 32];
  const int tid = threadIdx.x, lane = tid % 32;
  int v = tid;
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
  if (lane == 0) s_warp[tid / 32] = v;
  const int odd = __syncthreads_count(tid % 2 == 1);
  const unsigned ballot = __ballot_sync(0xffffffffu, lane % 2 == 0);
  if (tid == 0) {
    int sum = 0;
    for (int w = 0; w < kThreads / 32; ++w) sum += s_warp[w];
    out[blockIdx.x] = sum;
    out[gridDim.x + blockIdx.x] = odd;
    out[2 * gridDim.x + blockIdx.x] = static_cast<int>(ballot);
  }
}

// Threads in different branches wait at different __syncthreads.
__global__ void DivergentBarrier(int* out) {
  if (threadIdx.x < kThreads / 2) {
    __syncthreads();
  } else {
    __syncthreads();
  }
  out[threadIdx.x] = 1;
}

// Half of the block returns before the barrier the other half waits at.
__global__ void BarrierAfterExit(int* out) {
  if (threadIdx.x >= kThreads / 2) return;
  __syncthreads();
  out[threadIdx.x] = 1;
}

// A full-warp shuffle called by half of each warp.
__global__ void ShuffleMissingLanes(int* out) {
  if (threadIdx.x % 32 < 16) out[threadIdx.x] = __shfl_down_sync(0xffffffffu, 1, 1);
}

// A full-warp vote while half of the warp waits at a barrier.
__global__ void VoteBesideBarrier(int* out) {
  if (threadIdx.x % 32 < 16) {
    out[threadIdx.x] = __any_sync(0xffffffffu, true);
  }
  __syncthreads();
}

// Reads a neighbour's shared slot without a barrier: the result depends on the thread order.
__global__ void SharedRace(int* out) {
  __shared__ int s[kThreads];
  s[threadIdx.x] = static_cast<int>(threadIdx.x) + 1000 * static_cast<int>(blockIdx.x);
  out[threadIdx.x] = s[kThreads - 1 - threadIdx.x];
}

}  // namespace

// Runs the self-test kernel `name` on one block (BlockSum: three blocks) into `out`
// (at least 3 * kThreads ints); returns 0, or 2 with the scheduler's message in `err`.
UA3D_EMU_API int ua3d_emu_selftest(const char* name, int* out, char* err, int64_t err_len) {
  const std::string which(name);
  try {
    if (which == "block_sum") {
      UA3D_LAUNCH(BlockSum, 3, kThreads, 0, nullptr)(out);
    } else if (which == "divergent_barrier") {
      UA3D_LAUNCH(DivergentBarrier, 1, kThreads, 0, nullptr)(out);
    } else if (which == "barrier_after_exit") {
      UA3D_LAUNCH(BarrierAfterExit, 1, kThreads, 0, nullptr)(out);
    } else if (which == "shuffle_missing_lanes") {
      UA3D_LAUNCH(ShuffleMissingLanes, 1, kThreads, 0, nullptr)(out);
    } else if (which == "vote_beside_barrier") {
      UA3D_LAUNCH(VoteBesideBarrier, 1, kThreads, 0, nullptr)(out);
    } else if (which == "shared_race") {
      UA3D_LAUNCH(SharedRace, 1, kThreads, 0, nullptr)(out);
    } else if (which == "too_many_threads") {
      UA3D_LAUNCH(BlockSum, 1, 2048, 0, nullptr)(out);
    } else {
      std::snprintf(err, err_len, "unknown self-test %s", name);
      return 1;
    }
  } catch (const ua3d::emu::KernelError& e) {
    std::snprintf(err, err_len, "%s", e.what());
    return 2;
  }
  const cudaError_t status = cudaGetLastError();
  if (status != cudaSuccess) {
    std::snprintf(err, err_len, "%s", cudaGetErrorString(status));
    return 1;
  }
  return 0;
}
