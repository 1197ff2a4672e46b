// CPU forward of rasterize_to_pixels: binning, then the tiles in parallel.
//
// Each 16x16 tile is blended by the tile kernel of the CPU's instruction-set level
// (tile_kernels.h, tile_forward.inc): its depth-sorted Gaussians front to back, 4 x 4
// pixel blocks as vectors. Tiles are independent, so the result does not depend on the thread
// count.
#include <vector>

#include "cpu/parallel.h"
#include "cpu/rasterize_cpu.h"
#include "cpu/tile_kernels.h"

namespace ua3d::cpu {
namespace {

template <typename T>
void forward_all(const RasterInputs<T>& in, const std::vector<TileBins>& bins,
                 const ForwardOutputs<T>& out) {
  const TileKernels<T>& kernels = tile_kernels<T>();
  const int tiles_x = bins[0].tiles_x;
  const int64_t tiles = int64_t(tiles_x) * bins[0].tiles_y;
  const size_t scratch_size = tile_scratch_size(in.channels);
  parallel_for(in.batch * tiles, [&](int64_t item) {
    thread_local std::vector<T> scratch;
    if (scratch.size() < scratch_size) scratch.resize(scratch_size);
    const int64_t b = item / tiles, t = item % tiles;
    const TileBins& bin = bins[b];
    const int64_t start = bin.offsets[t];
    kernels.forward(in, b, int(t % tiles_x), int(t / tiles_x), bin.ids.data() + start,
                    bin.offsets[t + 1] - start, out, scratch.data());
  });
}

}  // namespace

template <typename T>
void rasterize_to_pixels_fwd(const RasterInputs<T>& in, const ForwardOutputs<T>& out,
                             uint64_t* keep_token) {
  if (keep_token != nullptr) *keep_token = 0;
  if (in.batch == 0) return;
  std::vector<TileBins> bins = bin_and_sort(in);
  forward_all(in, bins, out);
  if (keep_token != nullptr) *keep_token = keep_bins(in, std::move(bins));
}

template void rasterize_to_pixels_fwd<float>(const RasterInputs<float>&,
                                             const ForwardOutputs<float>&, uint64_t*);
template void rasterize_to_pixels_fwd<double>(const RasterInputs<double>&,
                                              const ForwardOutputs<double>&, uint64_t*);

}  // namespace ua3d::cpu
