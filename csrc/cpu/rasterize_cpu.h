// CPU rasterizer: tile binning, per-tile front-to-back blending and its backward.
//
// Names follow render/reference.py: `rasterize_to_pixels` composites projected
// Gaussians; B views per call, arguments as in ua3d/raster_args.h.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "ua3d/raster_args.h"

namespace ua3d::cpu {

using ua3d::BackwardInputs;
using ua3d::BackwardOutputs;
using ua3d::ForwardOutputs;
using ua3d::RasterInputs;

// Gaussians of one view bucketed by 16x16 tile, each bucket in (depth, index)
// order (one radix sort by depth per view, then a counting sort into tiles).
// Counts and offsets are int64: a 2048^2 image with 10^6 Gaussians can exceed
// 2^31 intersections.
struct TileBins {
  int tiles_x = 0;
  int tiles_y = 0;
  std::vector<int64_t> offsets;  // [tiles + 1] bucket starts in `ids`
  std::vector<int32_t> ids;      // [n_isects] Gaussian indices, bucketed by tile
};

template <typename T>
void bin_view(const T* means2d,      // [N, 2]
              const T* conics,       // [N, 3]
              const T* opacities,    // [N]
              const T* depths,       // [N]
              const int32_t* radii,  // [N, 2]
              int64_t n, int width, int height, TileBins* bins);

// Bins every view (views in parallel).
template <typename T>
std::vector<TileBins> bin_and_sort(const RasterInputs<T>& in);

// Keeps the bins of `in` for its backward (ua3d/bins_cache.h); returns their token.
template <typename T>
uint64_t keep_bins(const RasterInputs<T>& in, std::vector<TileBins> bins);

// The bins kept under `token` for inputs shaped like `in`, else `in` binned again.
template <typename T>
std::vector<TileBins> take_or_bin(const RasterInputs<T>& in, uint64_t token);

// Number of kept bins not yet taken (tests).
size_t kept_bins_count();

// keep_token: when not null, the bins are kept and *keep_token receives their token (0 when
// there was nothing to bin).
template <typename T>
void rasterize_to_pixels_fwd(const RasterInputs<T>& in, const ForwardOutputs<T>& out,
                             uint64_t* keep_token = nullptr);

// bins_token: the forward's token (0: bin again).
template <typename T>
void rasterize_to_pixels_bwd(const RasterInputs<T>& in, const BackwardInputs<T>& grads_in,
                             const BackwardOutputs<T>& out, uint64_t bins_token = 0);

}  // namespace ua3d::cpu
