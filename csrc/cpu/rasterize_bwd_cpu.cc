// CPU backward of rasterize_to_pixels: the tiles in parallel, then a fixed-order reduction.
//
// Each tile's kernel (tile_kernels.h, tile_backward.inc) writes every list entry's gradient
// sums over the tile to its own per-intersection slot: mean x, mean y, conic a, b, c,
// opacity, colour[C]. The slots are then reduced into per-Gaussian gradients in intersection
// order. No atomics: results are bitwise identical for any number of threads.
#include <algorithm>
#include <vector>

#include "cpu/parallel.h"
#include "cpu/rasterize_cpu.h"
#include "cpu/tile_kernels.h"

namespace ua3d::cpu {
namespace {

constexpr int kSlotFixed = 6;

template <typename T>
void backward_all(const RasterInputs<T>& in, const BackwardInputs<T>& gin,
                  const std::vector<TileBins>& bins, const BackwardOutputs<T>& out) {
  const TileKernels<T>& kernels = tile_kernels<T>();
  const int C = in.channels;
  const int Q = kSlotFixed + C;
  const int tiles_x = bins[0].tiles_x;
  const int64_t tiles = int64_t(tiles_x) * bins[0].tiles_y;
  std::vector<int64_t> slot_base(in.batch + 1, 0);  // [B + 1] first slot of each view
  for (int64_t b = 0; b < in.batch; ++b)
    slot_base[b + 1] = slot_base[b] + int64_t(bins[b].ids.size());
  std::vector<T> slots(size_t(slot_base[in.batch]) * Q, T(0));  // [n_isects, 6 + C]
  const size_t scratch_size = tile_scratch_size(C);
  parallel_for(in.batch * tiles, [&](int64_t item) {
    thread_local std::vector<T> scratch;
    if (scratch.size() < scratch_size) scratch.resize(scratch_size);
    const int64_t b = item / tiles, t = item % tiles;
    const TileBins& bin = bins[b];
    const int64_t start = bin.offsets[t];
    kernels.backward(in, gin, b, int(t % tiles_x), int(t / tiles_x), bin.ids.data() + start,
                     bin.offsets[t + 1] - start, slots.data() + (slot_base[b] + start) * Q,
                     scratch.data());
  });
  // Fixed-order reduction of the slots, one view per work item.
  parallel_for(in.batch, [&](int64_t b) {
    const int64_t n = in.n;
    T* v_means2d = out.v_means2d + b * n * 2;  // [N, 2]
    T* v_conics = out.v_conics + b * n * 3;    // [N, 3]
    T* v_colors = out.v_colors + b * n * C;    // [N, C]
    T* v_opac = out.v_opacities + b * n;       // [N]
    std::fill(v_means2d, v_means2d + n * 2, T(0));
    std::fill(v_conics, v_conics + n * 3, T(0));
    std::fill(v_colors, v_colors + n * C, T(0));
    std::fill(v_opac, v_opac + n, T(0));
    const std::vector<int32_t>& ids = bins[b].ids;
    const T* view_slots = slots.data() + slot_base[b] * Q;
    for (size_t s = 0; s < ids.size(); ++s) {
      const int64_t g = ids[s];
      const T* slot = view_slots + int64_t(s) * Q;
      v_means2d[2 * g] += slot[0];
      v_means2d[2 * g + 1] += slot[1];
      v_conics[3 * g] += slot[2];
      v_conics[3 * g + 1] += slot[3];
      v_conics[3 * g + 2] += slot[4];
      v_opac[g] += slot[5];
      for (int ch = 0; ch < C; ++ch) v_colors[g * C + ch] += slot[kSlotFixed + ch];
    }
  });
}

}  // namespace

template <typename T>
void rasterize_to_pixels_bwd(const RasterInputs<T>& in, const BackwardInputs<T>& gin,
                             const BackwardOutputs<T>& out, uint64_t bins_token) {
  if (in.batch == 0) return;
  const std::vector<TileBins> bins = take_or_bin(in, bins_token);
  backward_all(in, gin, bins, out);
}

template void rasterize_to_pixels_bwd<float>(const RasterInputs<float>&,
                                             const BackwardInputs<float>&,
                                             const BackwardOutputs<float>&, uint64_t);
template void rasterize_to_pixels_bwd<double>(const RasterInputs<double>&,
                                              const BackwardInputs<double>&,
                                              const BackwardOutputs<double>&, uint64_t);

}  // namespace ua3d::cpu
