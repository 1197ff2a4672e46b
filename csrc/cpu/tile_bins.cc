// Tile binning for the CPU rasterizer. The active Gaussians are first put in
// (depth, index) order once per view (a stable LSD radix sort of `depth_bits`,
// the depths' order-preserving bit patterns), then counting-sorted into per-tile buckets in
// that order, so every bucket comes out sorted without a per-bucket sort.
// Inactive Gaussians (zero radius, zero opacity, non-finite mean, conic or depth) are
// never binned, so a fixed-capacity scene with many empty slots costs one
// branch per slot.
#include <algorithm>

#include "cpu/parallel.h"
#include "cpu/rasterize_cpu.h"
#include "ua3d/bins_cache.h"
#include "ua3d/raster_math.h"

namespace ua3d::cpu {
namespace {

// Forward-to-backward bins: a training step has one forward and one backward in flight per
// device, so a few entries suffice; the bytes bound the leftovers of forwards without a backward.
constexpr size_t kKeptEntries = 16;
constexpr size_t kKeptBytes = size_t(1) << 30;

BinsCache<std::vector<TileBins>>& kept_bins() {
  static BinsCache<std::vector<TileBins>> cache(kKeptEntries, kKeptBytes);
  return cache;
}

template <typename T>
BinsKey key_of(const RasterInputs<T>& in) {
  return BinsKey{in.batch, in.n, in.width, in.height, static_cast<int>(sizeof(T)), 0};
}

// ids sorted stably by key (ids arrive in index order, so ties stay in index
// order): LSD radix sort, 8 bits a pass, passes whose byte is constant skipped.
template <typename U>
void radix_sort_by_key(std::vector<U>* keys, std::vector<int32_t>* ids) {
  const size_t m = keys->size();
  std::vector<U> keys_tmp(m);
  std::vector<int32_t> ids_tmp(m);
  for (int shift = 0; shift < int(8 * sizeof(U)); shift += 8) {
    size_t count[257] = {0};
    for (size_t i = 0; i < m; ++i) ++count[(((*keys)[i] >> shift) & 0xFF) + 1];
    if (m == 0 || count[(((*keys)[0] >> shift) & 0xFF) + 1] == m) continue;
    for (int d = 0; d < 256; ++d) count[d + 1] += count[d];
    for (size_t i = 0; i < m; ++i) {
      const size_t dst = count[((*keys)[i] >> shift) & 0xFF]++;
      keys_tmp[dst] = (*keys)[i];
      ids_tmp[dst] = (*ids)[i];
    }
    keys->swap(keys_tmp);
    ids->swap(ids_tmp);
  }
}

}  // namespace

template <typename T>
void bin_view(const T* means2d, const T* conics, const T* opacities, const T* depths,
              const int32_t* radii, int64_t n, int width, int height, TileBins* bins) {
  bins->tiles_x = (width + kTileSize - 1) / kTileSize;
  bins->tiles_y = (height + kTileSize - 1) / kTileSize;
  const int64_t tiles = int64_t(bins->tiles_x) * bins->tiles_y;
  std::vector<int64_t>& offsets = bins->offsets;
  offsets.assign(tiles + 1, 0);
  auto rect_of = [&](int64_t g, TileRect* r) {
    const T mx = means2d[2 * g], my = means2d[2 * g + 1];
    const T* conic = conics + 3 * g;
    const int32_t rx = radii[2 * g], ry = radii[2 * g + 1];
    if (!is_active(mx, my, conic[0], conic[1], conic[2], opacities[g], depths[g], rx, ry))
      return false;
    *r = tile_rect(mx, my, rx, ry, bins->tiles_x, bins->tiles_y);
    return r->count() > 0;
  };
  // Active Gaussians in (depth, index) order.
  std::vector<int32_t> order;
  std::vector<decltype(depth_bits(T(0)))> keys;
  order.reserve(n);
  keys.reserve(n);
  std::vector<TileRect> rects(n);
  for (int64_t g = 0; g < n; ++g) {
    if (!rect_of(g, &rects[g])) continue;
    order.push_back(static_cast<int32_t>(g));
    keys.push_back(depth_bits(depths[g]));
  }
  radix_sort_by_key(&keys, &order);
  for (const int32_t g : order) {
    const TileRect& r = rects[g];
    for (int ty = r.y0; ty < r.y1; ++ty)
      for (int tx = r.x0; tx < r.x1; ++tx) ++offsets[int64_t(ty) * bins->tiles_x + tx + 1];
  }
  for (int64_t t = 0; t < tiles; ++t) offsets[t + 1] += offsets[t];
  bins->ids.resize(offsets[tiles]);
  std::vector<int64_t> cursor(offsets.begin(), offsets.end() - 1);
  for (const int32_t g : order) {
    const TileRect& r = rects[g];
    for (int ty = r.y0; ty < r.y1; ++ty)
      for (int tx = r.x0; tx < r.x1; ++tx)
        bins->ids[cursor[int64_t(ty) * bins->tiles_x + tx]++] = g;
  }
}

template <typename T>
std::vector<TileBins> bin_and_sort(const RasterInputs<T>& in) {
  std::vector<TileBins> bins(in.batch);
  parallel_for(in.batch, [&](int64_t b) {
    bin_view(in.means2d + b * in.n * 2, in.conics + b * in.n * 3, in.opacities + b * in.n,
             in.depths + b * in.n, in.radii + b * in.n * 2, in.n, in.width, in.height, &bins[b]);
  });
  return bins;
}

size_t kept_bins_count() { return kept_bins().size(); }

template <typename T>
uint64_t keep_bins(const RasterInputs<T>& in, std::vector<TileBins> bins) {
  size_t bytes = 0;
  for (const TileBins& b : bins) bytes += b.offsets.size() * 8 + b.ids.size() * 4;
  std::vector<BinsCache<std::vector<TileBins>>::Entry> dropped;
  return kept_bins().Put(key_of(in), std::move(bins), bytes, &dropped);
}

template <typename T>
std::vector<TileBins> take_or_bin(const RasterInputs<T>& in, uint64_t token) {
  if (token != 0) {
    auto entry = kept_bins().Take(token);
    if (entry.has_value() && entry->key == key_of(in)) return std::move(entry->bins);
  }
  return bin_and_sort(in);
}

template void bin_view<float>(const float*, const float*, const float*, const float*,
                              const int32_t*, int64_t, int, int, TileBins*);
template void bin_view<double>(const double*, const double*, const double*, const double*,
                               const int32_t*, int64_t, int, int, TileBins*);
template std::vector<TileBins> bin_and_sort<float>(const RasterInputs<float>&);
template std::vector<TileBins> bin_and_sort<double>(const RasterInputs<double>&);
template uint64_t keep_bins<float>(const RasterInputs<float>&, std::vector<TileBins>);
template uint64_t keep_bins<double>(const RasterInputs<double>&, std::vector<TileBins>);
template std::vector<TileBins> take_or_bin<float>(const RasterInputs<float>&, uint64_t);
template std::vector<TileBins> take_or_bin<double>(const RasterInputs<double>&, uint64_t);

}  // namespace ua3d::cpu
