// CUB behind the project's InclusiveSum and SortPairs (launch.h). Compiled by nvcc only: the
// CPU emulation of the kernels links csrc/emu/device_primitives_host.cc instead.
#include <cub/cub.cuh>

#include "cuda/launch.h"
#include "cuda/rasterize_cuda.h"

namespace ua3d::cuda {

cudaError_t InclusiveSum(const int64_t* in, int64_t* out, int64_t n, DeviceScratch& scratch,
                         cudaStream_t stream) {
  size_t bytes = 0;
  if (cudaError_t err = cub::DeviceScan::InclusiveSum(nullptr, bytes, in, out, n, stream);
      err != cudaSuccess)
    return err;
  void* tmp = scratch.Allocate(bytes);
  if (tmp == nullptr) return cudaErrorMemoryAllocation;
  return cub::DeviceScan::InclusiveSum(tmp, bytes, in, out, n, stream);
}

cudaError_t SortPairs(const uint64_t* keys_in, uint64_t* keys_out, const int32_t* values_in,
                      int32_t* values_out, int64_t n, int end_bit, DeviceScratch& scratch,
                      cudaStream_t stream) {
  size_t bytes = 0;
  if (cudaError_t err = cub::DeviceRadixSort::SortPairs(
          nullptr, bytes, keys_in, keys_out, values_in, values_out, n, 0, end_bit, stream);
      err != cudaSuccess)
    return err;
  void* tmp = scratch.Allocate(bytes);
  if (tmp == nullptr) return cudaErrorMemoryAllocation;
  return cub::DeviceRadixSort::SortPairs(tmp, bytes, keys_in, keys_out, values_in, values_out, n, 0,
                                         end_bit, stream);
}

}  // namespace ua3d::cuda
