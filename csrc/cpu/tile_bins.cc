// Tile binning for the CPU rasterizer: a counting sort of (Gaussian, tile)
// intersections into per-tile buckets, then a per-bucket sort by (depth, index).
// Inactive Gaussians (zero radius, zero opacity, non-finite mean or depth) are
// never binned, so a fixed-capacity scene with many empty slots costs one
// branch per slot.
#include <algorithm>

#include "cpu/parallel.h"
#include "cpu/rasterize_cpu.h"
#include "ua3d/raster_math.h"

namespace ua3d::cpu {

template <typename T>
void bin_view(const T* means2d, const T* opacities, const T* depths, const int32_t* radii,
              int64_t n, int width, int height, TileBins* bins) {
  bins->tiles_x = (width + kTileSize - 1) / kTileSize;
  bins->tiles_y = (height + kTileSize - 1) / kTileSize;
  const int64_t tiles = int64_t(bins->tiles_x) * bins->tiles_y;
  std::vector<int64_t>& offsets = bins->offsets;
  offsets.assign(tiles + 1, 0);
  auto rect_of = [&](int64_t g, TileRect* r) {
    const T mx = means2d[2 * g], my = means2d[2 * g + 1];
    const int32_t rx = radii[2 * g], ry = radii[2 * g + 1];
    if (!is_active(mx, my, opacities[g], depths[g], rx, ry)) return false;
    *r = tile_rect(mx, my, rx, ry, bins->tiles_x, bins->tiles_y);
    return r->count() > 0;
  };
  TileRect r;
  for (int64_t g = 0; g < n; ++g) {
    if (!rect_of(g, &r)) continue;
    for (int ty = r.y0; ty < r.y1; ++ty)
      for (int tx = r.x0; tx < r.x1; ++tx) ++offsets[int64_t(ty) * bins->tiles_x + tx + 1];
  }
  for (int64_t t = 0; t < tiles; ++t) offsets[t + 1] += offsets[t];
  bins->ids.resize(offsets[tiles]);
  std::vector<int64_t> cursor(offsets.begin(), offsets.end() - 1);
  for (int64_t g = 0; g < n; ++g) {
    if (!rect_of(g, &r)) continue;
    for (int ty = r.y0; ty < r.y1; ++ty)
      for (int tx = r.x0; tx < r.x1; ++tx)
        bins->ids[cursor[int64_t(ty) * bins->tiles_x + tx]++] = static_cast<int32_t>(g);
  }
}

template <typename T>
void sort_bucket(int32_t* ids, int64_t count, const T* depths) {
  // Buckets are filled in index order, so a stable sort by depth gives (depth, index).
  std::stable_sort(ids, ids + count, [depths](int32_t i, int32_t j) { return depths[i] < depths[j]; });
}

template <typename T>
std::vector<TileBins> bin_and_sort(const RasterInputs<T>& in) {
  std::vector<TileBins> bins(in.batch);
  parallel_for(in.batch, [&](int64_t b) {
    bin_view(in.means2d + b * in.n * 2, in.opacities + b * in.n, in.depths + b * in.n,
             in.radii + b * in.n * 2, in.n, in.width, in.height, &bins[b]);
  });
  const int64_t tiles = in.batch > 0 ? int64_t(bins[0].tiles_x) * bins[0].tiles_y : 0;
  parallel_for(in.batch * tiles, [&](int64_t item) {
    const int64_t b = item / tiles, t = item % tiles;
    const int64_t start = bins[b].offsets[t];
    sort_bucket(bins[b].ids.data() + start, bins[b].offsets[t + 1] - start, in.depths + b * in.n);
  });
  return bins;
}

template void bin_view<float>(const float*, const float*, const float*, const int32_t*, int64_t,
                              int, int, TileBins*);
template void bin_view<double>(const double*, const double*, const double*, const int32_t*,
                               int64_t, int, int, TileBins*);
template std::vector<TileBins> bin_and_sort<float>(const RasterInputs<float>&);
template std::vector<TileBins> bin_and_sort<double>(const RasterInputs<double>&);

}  // namespace ua3d::cpu
