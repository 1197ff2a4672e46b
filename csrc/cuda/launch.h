// Kernel launches and the two CUB primitives, spelled once for nvcc and for the CPU
// emulation of the kernels (csrc/emu, built by the tests with g++ and UA3D_CUDA_EMU).
//
//   UA3D_LAUNCH(kernel, grid, block, smem, stream)(args...)
//     ==  kernel<<<grid, block, smem, stream>>>(args...)
//
// InclusiveSum and SortPairs are CUB's DeviceScan::InclusiveSum and DeviceRadixSort::SortPairs
// (device_primitives.cu); the emulation replaces them with std::inclusive_scan and a stable sort
// over the same key bits (csrc/emu/device_primitives_host.cc).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#if defined(UA3D_CUDA_EMU)
#define UA3D_LAUNCH(kernel, grid, block, smem, stream) \
  ::ua3d::emu::MakeLaunch(#kernel, kernel, grid, block, smem, stream)
#else
#define UA3D_LAUNCH(kernel, grid, block, smem, stream) kernel<<<grid, block, smem, stream>>>
#endif

namespace ua3d::cuda {

class DeviceScratch;

// out[i] = in[0] + ... + in[i], i < n (n >= 1); temporary storage from `scratch`.
cudaError_t InclusiveSum(const int64_t* in, int64_t* out, int64_t n, DeviceScratch& scratch,
                         cudaStream_t stream);

// (keys, values) stably sorted by the key bits [0, end_bit), n >= 1 pairs.
cudaError_t SortPairs(const uint64_t* keys_in, uint64_t* keys_out, const int32_t* values_in,
                      int32_t* values_out, int64_t n, int end_bit, DeviceScratch& scratch,
                      cudaStream_t stream);

}  // namespace ua3d::cuda
