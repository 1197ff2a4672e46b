// CPU forward of rasterize_to_pixels: per 16x16 tile, Gaussians front to back.
//
// Gaussian-outer, pixel-inner: for each Gaussian of the tile's sorted bucket,
// the pixels of its box inside the tile are visited row by row; the loop over
// x is branch-free (masks), so it vectorises (`omp simd`, vectorisable exp).
// Per-pixel state: T (transmittance), live (not yet stopped), acc[C], last.
// A tile is left as soon as every pixel has stopped (T cut-off).
#include <algorithm>

#include "cpu/parallel.h"
#include "cpu/rasterize_cpu.h"
#include "ua3d/raster_math.h"

namespace ua3d::cpu {
namespace {

template <typename T, int kC>
UA3D_TILE_KERNEL void forward_tile(const RasterInputs<T>& in, int64_t b, int tx, int ty,
                  const int32_t* ids,  // [count] sorted bucket
                  int64_t count, const ForwardOutputs<T>& out) {
  const int C = kC > 0 ? kC : in.channels;
  const int64_t n = in.n;
  const T* means2d = in.means2d + b * n * 2;  // [N, 2]
  const T* conics = in.conics + b * n * 3;    // [N, 3]
  const T* colors = in.colors + b * n * C;    // [N, C]
  const T* opac = in.opacities + b * n;       // [N]
  const int32_t* radii = in.radii + b * n * 2;  // [N, 2]
  const T* bg = in.background + b * C;          // [C]

  const int x0 = tx * kTileSize, y0 = ty * kTileSize;
  const int x1 = std::min(x0 + kTileSize, in.width) - 1;
  const int y1 = std::min(y0 + kTileSize, in.height) - 1;
  thread_local std::vector<T> buf;
  buf.assign(size_t(C + 2) * kTilePixels, T(0));
  T* trans = buf.data();               // [256]
  T* live = trans + kTilePixels;       // [256] 1 while the pixel blends
  T* acc = live + kTilePixels;         // [C, 256]
  int32_t last[kTilePixels];
  std::fill(trans, trans + kTilePixels, T(1));
  std::fill(live, live + kTilePixels, T(1));
  std::fill(last, last + kTilePixels, -1);
  int64_t live_count = int64_t(x1 - x0 + 1) * (y1 - y0 + 1);

  for (int64_t k = 0; k < count && live_count > 0; ++k) {
    const int32_t g = ids[k];
    const T mx = means2d[2 * g], my = means2d[2 * g + 1];
    int px_lo, px_hi, py_lo, py_hi;
    pixel_span(mx, radii[2 * g], x0, x1, &px_lo, &px_hi);
    pixel_span(my, radii[2 * g + 1], y0, y1, &py_lo, &py_hi);
    if (px_lo > px_hi || py_lo > py_hi) continue;
    const T a = conics[3 * g], bb = conics[3 * g + 1], c = conics[3 * g + 2];
    const T o = opac[g];
    T col[kC > 0 ? kC : 64];
    const bool small_c = C <= 64;
    if (small_c)
      for (int ch = 0; ch < C; ++ch) col[ch] = colors[int64_t(g) * C + ch];
    const T* colp = small_c ? col : colors + int64_t(g) * C;
    const int32_t kk = static_cast<int32_t>(k);
    // Whole tile rows masked to the box: no scalar remainder loop, which would
    // dominate for the few-pixel Gaussians of a head.
    const int l_lo = px_lo - x0, l_hi = px_hi - x0;
    // The row length hidden from value-range analysis: GCC would otherwise
    // fully unroll a loop it knows runs <= 16 times, and not vectorise it.
    int tw = x1 - x0 + 1;
    asm("" : "+r"(tw));
    const T dx0 = mx - (T(x0) + T(0.5));
    for (int y = py_lo; y <= py_hi; ++y) {
      const T dy = my - (T(y) + T(0.5));
      const T hc = T(0.5) * c * dy * dy, bdy = bb * dy;
      const int row = (y - y0) * kTileSize;
      T* tr = trans + row;
      T* lv = live + row;
      int32_t* ls = last + row;
      T* ac = acc + row;
      // Masks are written so GCC 12 if-converts the loop: `&` not `&&`, no bool
      // reused across float and int selects, the stop count as a float sum.
      T stopped = T(0);
#pragma omp simd reduction(+ : stopped)
      for (int l = 0; l < tw; ++l) {
        const T dx = dx0 - T(l);
        T e;
        bool valid;
        const T al = eval_alpha(row_sigma(a, dx, bdy, hc), o, &e, &valid);
        const T lvl = lv[l], trl = tr[l];
        valid = valid & (l >= l_lo) & (l <= l_hi) & (lvl > T(0));
        const T next_t = trl * (T(1) - al);
        const bool blend = valid & (next_t > T(kTransmittanceMin));
        const T stop = (valid & (next_t <= T(kTransmittanceMin))) ? T(1) : T(0);
        const T w = blend ? al * trl : T(0);
        for (int ch = 0; ch < C; ++ch) ac[ch * kTilePixels + l] += w * colp[ch];
        tr[l] = blend ? next_t : trl;
        ls[l] = blend ? kk : ls[l];
        lv[l] = lvl - stop;
        stopped += stop;
      }
      live_count -= static_cast<int64_t>(stopped);
    }
  }

  const int64_t hw = int64_t(in.width) * in.height;
  for (int y = y0; y <= y1; ++y) {
    for (int x = x0; x <= x1; ++x) {
      const int i = (y - y0) * kTileSize + (x - x0);
      const int64_t p = b * hw + int64_t(y) * in.width + x;
      for (int ch = 0; ch < C; ++ch)
        out.render[p * C + ch] = acc[ch * kTilePixels + i] + trans[i] * bg[ch];
      out.transmittance[p] = trans[i];
      out.last[p] = last[i];
    }
  }
}

template <typename T, int kC>
void forward_all(const RasterInputs<T>& in, const std::vector<TileBins>& bins,
                 const ForwardOutputs<T>& out) {
  const int tiles_x = bins[0].tiles_x;
  const int64_t tiles = int64_t(tiles_x) * bins[0].tiles_y;
  parallel_for(in.batch * tiles, [&](int64_t item) {
    const int64_t b = item / tiles, t = item % tiles;
    const TileBins& bin = bins[b];
    const int64_t start = bin.offsets[t];
    forward_tile<T, kC>(in, b, int(t % tiles_x), int(t / tiles_x), bin.ids.data() + start,
                        bin.offsets[t + 1] - start, out);
  });
}

}  // namespace

template <typename T>
void rasterize_to_pixels_fwd(const RasterInputs<T>& in, const ForwardOutputs<T>& out,
                             uint64_t* keep_token) {
  if (keep_token != nullptr) *keep_token = 0;
  if (in.batch == 0) return;
  std::vector<TileBins> bins = bin_and_sort(in);
  // The channel count is a template constant for the common cases (RGB + depth
  // = 4, RGB = 3, 1) so the per-channel loops unroll inside the pixel loop.
  switch (in.channels) {
    case 1: forward_all<T, 1>(in, bins, out); break;
    case 3: forward_all<T, 3>(in, bins, out); break;
    case 4: forward_all<T, 4>(in, bins, out); break;
    default: forward_all<T, 0>(in, bins, out); break;
  }
  if (keep_token != nullptr) *keep_token = keep_bins(in, std::move(bins));
}

template void rasterize_to_pixels_fwd<float>(const RasterInputs<float>&,
                                             const ForwardOutputs<float>&, uint64_t*);
template void rasterize_to_pixels_fwd<double>(const RasterInputs<double>&,
                                              const ForwardOutputs<double>&, uint64_t*);

}  // namespace ua3d::cpu
