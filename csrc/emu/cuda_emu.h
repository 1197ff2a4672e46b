// CUDA-on-CPU emulation: the shim that lets g++ compile the unchanged csrc/cuda kernels as
// host C++ (built by tests/render/cuda_emu.py with -DUA3D_CUDA_EMU; never part of the wheel).
//
// Execution model (csrc/emu/emu_runtime.cc):
//   * blocks run one after another; every CUDA thread of a block is a fiber, and the fibers
//     of a block never run at the same time: they switch only at __syncthreads*, __syncwarp
//     and the warp intrinsics (__shfl_*_sync, __any/__all/__ballot_sync). atomicAdd and
//     atomicMax are therefore plain read-modify-writes, and exact;
//   * between two such points the threads run one after another, in forward, reverse or
//     seeded random order (SetSchedule): a result that changes with the order is a race;
//   * the scheduler throws KernelError for a barrier reached by part of a block (divergent, or
//     after some threads exited), a warp operation whose mask names a lane that is elsewhere
//     or has exited, and any other state in which no thread can proceed (deadlock);
//   * __shared__ variables are function statics: blocks run one at a time, so one copy per
//     kernel is one per block. They keep the previous block's values (GCC ignores section
//     attributes on statics of templates, so they cannot be gathered and poisoned);
//   * __CUDA_ARCH__ is defined, so the kernels' device branches are the code emulated, and
//     the __fmul_rn-style intrinsics are plain IEEE operations (the build uses
//     -ffp-contract=off: nothing is fused, as those intrinsics promise).
// Not emulated: the device's own expf/libdevice, nvcc's FMA contraction elsewhere, the memory
// model (there is no concurrency), real CUB, and XLA's streams (BUILD_NOTES.md).
#pragma once

#include <math.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

// ---- language -------------------------------------------------------------------------
#define __CUDA_ARCH__ 900
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __launch_bounds__(...)
#define __shared__ static

struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct uint3 {
  unsigned x, y, z;
};
struct float3 {
  float x, y, z;
};
inline float3 make_float3(float x, float y, float z) { return float3{x, y, z}; }

// Set by the scheduler for the fiber that runs.
extern uint3 threadIdx;
extern uint3 blockIdx;
extern dim3 blockDim;
extern dim3 gridDim;
constexpr int warpSize = 32;

// ---- runtime API (host memory stands for device memory) --------------------------------
enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorLaunchFailure = 719,
};
using cudaError = cudaError_t;
using cudaStream_t = struct CUstream_st*;
enum cudaMemcpyKind {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4,
};

cudaError_t cudaMemsetAsync(void* ptr, int value, size_t bytes, cudaStream_t stream = nullptr);
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t stream = nullptr);
cudaError_t cudaMallocAsync(void** ptr, size_t bytes, cudaStream_t stream);
cudaError_t cudaFreeAsync(void* ptr, cudaStream_t stream);
cudaError_t cudaStreamSynchronize(cudaStream_t stream);
cudaError_t cudaGetDevice(int* device);
cudaError_t cudaGetLastError();
cudaError_t cudaPeekAtLastError();
const char* cudaGetErrorString(cudaError_t err);

// ---- device functions ------------------------------------------------------------------
template <typename T>
inline T min(T a, T b) {
  return b < a ? b : a;
}
template <typename T>
inline T max(T a, T b) {
  return a < b ? b : a;
}
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline int __float2int_rz(float x) { return static_cast<int>(x); }
inline int __float_as_int(float x) {
  int i;
  std::memcpy(&i, &x, sizeof(i));
  return i;
}
inline float __int_as_float(int i) {
  float x;
  std::memcpy(&x, &i, sizeof(x));
  return x;
}

// Fibers never run concurrently, so an atomic is an ordinary read-modify-write.
template <typename T>
inline T atomicAdd(T* address, T value) {
  const T old = *address;
  *address = old + value;
  return old;
}
inline int atomicMax(int* address, int value) {
  const int old = *address;
  *address = old < value ? value : old;
  return old;
}
inline int atomicMin(int* address, int value) {
  const int old = *address;
  *address = value < old ? value : old;
  return old;
}

namespace ua3d::emu {

// Where a barrier or warp operation was called (file and line of the kernel source).
struct Site {
  const char* file;
  int line;
};

enum class Op : int {
  kSync,
  kSyncCount,
  kSyncAnd,
  kSyncOr,  // block barriers
  kSyncWarp,
  kShflIdx,
  kShflUp,
  kShflDown,
  kShflXor,  // warp operations
  kAny,
  kAll,
  kBallot,
};  // fmt: skip

// A kernel broke a rule of the execution model (see the file comment); the message names the
// kernel, the block and the source lines involved.
class KernelError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

enum class Order : int { kForward = 0, kReverse = 1, kRandom = 2 };

// Order of the threads between two synchronisation points, for every later launch.
void SetSchedule(Order order, uint64_t seed);

// Counters since the last ResetStats().
struct Stats {
  int64_t launches = 0;
  int64_t blocks = 0;
  int64_t barriers = 0;       // block barriers released
  int64_t warp_ops = 0;       // warp operations completed (one per warp)
  int64_t switches = 0;       // fiber switches
  int64_t stream_syncs = 0;   // cudaStreamSynchronize calls (host waits)
  int64_t device_allocs = 0;  // cudaMallocAsync calls
};
Stats GetStats();
void ResetStats();
// Bytes allocated by cudaMallocAsync and not yet freed.
int64_t LiveDeviceBytes();

int Barrier(Site site, Op op, int predicate);
uint32_t WarpOp(Site site, Op op, uint32_t mask, uint32_t value, int arg, int width);

// Runs `body` once per thread of every block of the grid (threadIdx etc. set); a launch
// configuration CUDA would refuse sets the sticky error cudaGetLastError returns instead.
void RunGrid(const char* kernel, int64_t grid_x, dim3 grid, dim3 block, size_t shared_bytes,
             const std::function<void()>& body);

template <Op op, typename T>
inline T ShflOp(Site site, uint32_t mask, T value, int arg, int width = 32) {
  static_assert(sizeof(T) == 4 && std::is_trivially_copyable_v<T>, "32-bit shuffles only");
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof(bits));
  bits = WarpOp(site, op, mask, bits, arg, width);
  std::memcpy(&value, &bits, sizeof(bits));
  return value;
}

template <typename... P>
class Launch {
 public:
  Launch(const char* name, void (*kernel)(P...), int64_t grid_x, dim3 grid, dim3 block,
         size_t shared_bytes)
      : name_(name),
        kernel_(kernel),
        grid_x_(grid_x),
        grid_(grid),
        block_(block),
        shared_(shared_bytes) {}

  // Each thread calls the kernel with its own copies of the arguments, as on the device.
  template <typename... A>
  void operator()(A&&... args) const {
    static_assert(sizeof...(A) == sizeof...(P), "wrong number of kernel arguments");
    const std::tuple<std::decay_t<P>...> copies(std::forward<A>(args)...);
    RunGrid(name_, grid_x_, grid_, block_, shared_, [&]() { std::apply(kernel_, copies); });
  }

 private:
  const char* name_;
  void (*kernel_)(P...);
  int64_t grid_x_;
  dim3 grid_, block_;
  size_t shared_;
};

inline dim3 AsDim3(dim3 d) { return d; }
template <typename I, typename = std::enable_if_t<std::is_integral_v<I>>>
inline dim3 AsDim3(I x) {
  return dim3(static_cast<unsigned>(x));
}
inline int64_t GridX(dim3 d) { return d.x; }
template <typename I, typename = std::enable_if_t<std::is_integral_v<I>>>
inline int64_t GridX(I x) {
  return static_cast<int64_t>(x);  // checked against CUDA's limit before the unsigned cast
}

template <typename G, typename B, typename... P>
Launch<P...> MakeLaunch(const char* name, void (*kernel)(P...), G grid, B block,
                        size_t shared_bytes, cudaStream_t /*stream*/) {
  return Launch<P...>(name, kernel, GridX(grid), AsDim3(grid), AsDim3(block), shared_bytes);
}

}  // namespace ua3d::emu

#define UA3D_EMU_SITE \
  ::ua3d::emu::Site { __FILE__, __LINE__ }
#define __syncthreads() ::ua3d::emu::Barrier(UA3D_EMU_SITE, ::ua3d::emu::Op::kSync, 0)
#define __syncthreads_count(p) \
  ::ua3d::emu::Barrier(UA3D_EMU_SITE, ::ua3d::emu::Op::kSyncCount, (p) ? 1 : 0)
#define __syncthreads_and(p) \
  ::ua3d::emu::Barrier(UA3D_EMU_SITE, ::ua3d::emu::Op::kSyncAnd, (p) ? 1 : 0)
#define __syncthreads_or(p) \
  ::ua3d::emu::Barrier(UA3D_EMU_SITE, ::ua3d::emu::Op::kSyncOr, (p) ? 1 : 0)
#define __syncwarp(m) \
  ((void)::ua3d::emu::WarpOp(UA3D_EMU_SITE, ::ua3d::emu::Op::kSyncWarp, (m), 0u, 0, 32))
#define __shfl_sync(...) ::ua3d::emu::ShflOp<::ua3d::emu::Op::kShflIdx>(UA3D_EMU_SITE, __VA_ARGS__)
#define __shfl_up_sync(...) \
  ::ua3d::emu::ShflOp<::ua3d::emu::Op::kShflUp>(UA3D_EMU_SITE, __VA_ARGS__)
#define __shfl_down_sync(...) \
  ::ua3d::emu::ShflOp<::ua3d::emu::Op::kShflDown>(UA3D_EMU_SITE, __VA_ARGS__)
#define __shfl_xor_sync(...) \
  ::ua3d::emu::ShflOp<::ua3d::emu::Op::kShflXor>(UA3D_EMU_SITE, __VA_ARGS__)
#define __any_sync(mask, p) \
  (::ua3d::emu::WarpOp(UA3D_EMU_SITE, ::ua3d::emu::Op::kAny, (mask), (p) ? 1u : 0u, 0, 32) != 0)
#define __all_sync(mask, p) \
  (::ua3d::emu::WarpOp(UA3D_EMU_SITE, ::ua3d::emu::Op::kAll, (mask), (p) ? 1u : 0u, 0, 32) != 0)
#define __ballot_sync(mask, p) \
  ::ua3d::emu::WarpOp(UA3D_EMU_SITE, ::ua3d::emu::Op::kBallot, (mask), (p) ? 1u : 0u, 0, 32)
