// CUDA rasterizer (gsplat-style): host launchers of the binning, forward and
// backward kernels. All work is queued on `stream`; the only host sync is the
// read-back of the intersection count, needed to size the sort buffers.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

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
// reference's stable argsort).
cudaError_t BinTiles(const RasterInputs<float>& in, DeviceScratch& scratch, cudaStream_t stream,
                     DeviceBins* bins);

cudaError_t RasterizeToPixelsFwd(const RasterInputs<float>& in, const ForwardOutputs<float>& out,
                                 DeviceScratch& scratch, cudaStream_t stream);

cudaError_t RasterizeToPixelsBwd(const RasterInputs<float>& in, const BackwardInputs<float>& gin,
                                 const BackwardOutputs<float>& out, DeviceScratch& scratch,
                                 cudaStream_t stream);

}  // namespace ua3d::cuda
