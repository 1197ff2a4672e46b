// CUDA rasterizer (gsplat-style): host launchers of the binning, forward and
// backward kernels. All work is queued on `stream`. The host waits once per call:
// the forward (and a backward that bins) to read back the intersection count,
// which sizes the sort buffers; a backward given the forward's bins token to read
// the token, and then it does not bin (ua3d/bins_cache.h).
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "ua3d/raster_args.h"

namespace ua3d::cuda {

// Device scratch memory that lives until the handler returns (XLA's
// ScratchAllocator in the FFI handler). Returns nullptr on failure.
class DeviceScratch {
 public:
  virtual ~DeviceScratch() = default;
  virtual void* Allocate(size_t bytes) = 0;
};

// Depth-sorted (Gaussian, tile) intersections of B views.
struct DeviceBins {
  int tiles_x = 0;
  int tiles_y = 0;
  int64_t n_isects = 0;
  const int64_t* tile_offsets = nullptr;  // [B * tiles + 1] list start per (view, tile)
  const int32_t* ids = nullptr;           // [n_isects] Gaussian index within its view
};

// count -> inclusive scan -> keys (list = view * tiles + tile | depth bits) -> CUB radix sort
// over only the bits in use -> per-tile offsets. The sort is stable and keys
// are emitted in Gaussian order, so ties in depth keep index order (as the
// reference's stable argsort). The lists (offsets and ids) come from `lists`,
// everything else from `scratch`.
cudaError_t BinTiles(const RasterInputs<float>& in, DeviceScratch& scratch, DeviceScratch& lists,
                     cudaStream_t stream, DeviceBins* bins);

// Tile lists kept by a forward, in device memory of their own (cudaMallocAsync).
struct KeptBins {
  DeviceBins bins;
  std::vector<void*> blocks;  // what to cudaFreeAsync when taken or dropped
  cudaStream_t stream = nullptr;
};

// Stores the forward's lists; returns their token.
uint64_t KeepBins(const RasterInputs<float>& in, KeptBins kept);
// The lists kept under `token` for inputs shaped like `in` on this device, if any.
std::optional<KeptBins> TakeBins(const RasterInputs<float>& in, uint64_t token,
                                 cudaStream_t stream);
// Frees kept lists in stream order (after the work queued on `stream` that reads them).
void ReleaseBins(KeptBins& kept, cudaStream_t stream);
// Kept lists not yet taken, on every device (tests).
size_t KeptBinsCount();

// bins_token: null, or a device [B, 2] int32 output; then the lists are kept and their token
// written to every view's pair.
cudaError_t RasterizeToPixelsFwd(const RasterInputs<float>& in, const ForwardOutputs<float>& out,
                                 DeviceScratch& scratch, cudaStream_t stream,
                                 int32_t* bins_token = nullptr);

// bins_token: null (bin again), or the device [B, 2] token the forward wrote.
cudaError_t RasterizeToPixelsBwd(const RasterInputs<float>& in, const BackwardInputs<float>& gin,
                                 const BackwardOutputs<float>& out, DeviceScratch& scratch,
                                 cudaStream_t stream, const int32_t* bins_token = nullptr);

}  // namespace ua3d::cuda
