// Host stand-ins for CUB in the CPU emulation of the CUDA kernels (launch.h declares them):
// std::inclusive_scan for DeviceScan::InclusiveSum, and a stable sort over the key bits
// [0, end_bit) for DeviceRadixSort::SortPairs (higher bits are ignored, as CUB ignores them).
#include <algorithm>
#include <numeric>
#include <vector>

#include "cuda/launch.h"
#include "cuda/rasterize_cuda.h"

namespace ua3d::cuda {

cudaError_t InclusiveSum(const int64_t* in, int64_t* out, int64_t n, DeviceScratch&, cudaStream_t) {
  if (n < 1) return cudaErrorInvalidValue;
  std::inclusive_scan(in, in + n, out);
  return cudaSuccess;
}

cudaError_t SortPairs(const uint64_t* keys_in, uint64_t* keys_out, const int32_t* values_in,
                      int32_t* values_out, int64_t n, int end_bit, DeviceScratch&, cudaStream_t) {
  if (n < 1 || end_bit < 1 || end_bit > 64) return cudaErrorInvalidValue;
  const uint64_t mask = end_bit == 64 ? ~uint64_t(0) : (uint64_t(1) << end_bit) - 1;
  std::vector<int64_t> order(n);
  std::iota(order.begin(), order.end(), int64_t(0));
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return (keys_in[a] & mask) < (keys_in[b] & mask); });
  for (int64_t i = 0; i < n; ++i) {
    keys_out[i] = keys_in[order[i]];
    values_out[i] = values_in[order[i]];
  }
  return cudaSuccess;
}

}  // namespace ua3d::cuda
