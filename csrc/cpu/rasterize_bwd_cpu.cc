// CPU backward of rasterize_to_pixels: per tile, Gaussians back to front.
//
// Per pixel, with T_i the transmittance before Gaussian i, S the colour
// accumulated behind it and T_L = T_final:
//   dC/dalpha_i = c_i T_i - (S + T_L bg) / (1 - alpha_i),  dA/dalpha_i = T_L / (1 - alpha_i),
//   T_i = T_{i+1} / (1 - alpha_i) walking back from T_L.
// Each Gaussian's gradient is summed over the tile's pixels in per-column lanes
// (no reduction clause, so the pixel loop vectorises), then written to its own
// per-intersection slot; slots are reduced into per-Gaussian gradients in
// intersection order. No atomics: results are bitwise identical for any
// number of threads.
#include <algorithm>

#include "cpu/parallel.h"
#include "cpu/rasterize_cpu.h"
#include "ua3d/raster_math.h"

namespace ua3d::cpu {
namespace {

// Slot layout per intersection: mean x, mean y, conic a, b, c, opacity, colour[C].
constexpr int kSlotFixed = 6;

template <typename T, int kC>
UA3D_TILE_KERNEL void backward_tile(const RasterInputs<T>& in, const BackwardInputs<T>& gin, int64_t b, int tx,
                   int ty,
                   const int32_t* ids,  // [count] sorted bucket
                   int64_t count,
                   T* slots) {  // [count, 6 + C]
  const int C = kC > 0 ? kC : in.channels;
  const int Q = kSlotFixed + C;
  const int64_t n = in.n;
  const T* means2d = in.means2d + b * n * 2;    // [N, 2]
  const T* conics = in.conics + b * n * 3;      // [N, 3]
  const T* colors = in.colors + b * n * C;      // [N, C]
  const T* opac = in.opacities + b * n;         // [N]
  const int32_t* radii = in.radii + b * n * 2;  // [N, 2]
  const T* bg = in.background + b * C;          // [C]

  const int x0 = tx * kTileSize, y0 = ty * kTileSize;
  const int x1 = std::min(x0 + kTileSize, in.width) - 1;
  const int y1 = std::min(y0 + kTileSize, in.height) - 1;
  thread_local std::vector<T> buf;
  buf.assign(size_t(2 + 2 * C) * kTilePixels + size_t(Q) * kTileSize, T(0));
  T* tcur = buf.data();              // [256] transmittance after the current Gaussian
  T* tl = tcur + kTilePixels;        // [256] T_L (v_alpha - bg . v_render)
  T* vr = tl + kTilePixels;          // [C, 256] v_render
  T* acc = vr + C * kTilePixels;     // [C, 256] S, colour accumulated behind
  T* lanes = acc + C * kTilePixels;  // [Q, 16] per-column gradient sums
  int32_t last[kTilePixels];
  std::fill(last, last + kTilePixels, -1);
  int32_t max_last = -1;
  const int64_t hw = int64_t(in.width) * in.height;
  for (int y = y0; y <= y1; ++y) {
    for (int x = x0; x <= x1; ++x) {
      const int i = (y - y0) * kTileSize + (x - x0);
      const int64_t p = b * hw + int64_t(y) * in.width + x;
      tcur[i] = gin.transmittance[p];
      last[i] = gin.last[p];
      max_last = std::max(max_last, last[i]);
      T bg_dot = T(0);
      for (int ch = 0; ch < C; ++ch) {
        vr[ch * kTilePixels + i] = gin.v_render[p * C + ch];
        bg_dot += bg[ch] * gin.v_render[p * C + ch];
      }
      tl[i] = tcur[i] * (gin.v_alpha[p] - bg_dot);
    }
  }
  max_last = std::min<int32_t>(max_last, static_cast<int32_t>(count - 1));

  for (int32_t k = max_last; k >= 0; --k) {
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
    std::fill(lanes, lanes + Q * kTileSize, T(0));
    T* l_mx = lanes;
    T* l_my = l_mx + kTileSize;
    T* l_a = l_my + kTileSize;
    T* l_b = l_a + kTileSize;
    T* l_c = l_b + kTileSize;
    T* l_o = l_c + kTileSize;
    T* l_col = l_o + kTileSize;  // [C, 16]
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
      T* tc = tcur + row;
      const T* tlr = tl + row;
      const T* vrr = vr + row;
      T* ac = acc + row;
      const int32_t* ls = last + row;
#pragma omp simd
      for (int l = 0; l < tw; ++l) {
        const T dx = dx0 - T(l);
        T e;
        bool valid;
        const T al = eval_alpha(row_sigma(a, dx, bdy, hc), o, &e, &valid);
        valid = valid & (l >= l_lo) & (l <= l_hi) & (k <= ls[l]);  // `&`: see the forward
        const T inv = T(1) / (T(1) - al);
        const T tcl = tc[l];
        const T t_before = tcl * inv;
        const T w = al * t_before;
        T v_alpha = tlr[l] * inv;
        for (int ch = 0; ch < C; ++ch) {
          const T v = vrr[ch * kTilePixels + l];
          v_alpha += v * (colp[ch] * t_before - ac[ch * kTilePixels + l] * inv);
          l_col[ch * kTileSize + l] += valid ? w * v : T(0);
          ac[ch * kTilePixels + l] += valid ? w * colp[ch] : T(0);
        }
        // alpha = min(0.99, o e): no gradient through the clamp, all of it at o e = 0.99
        // (the identity side includes the tie, as in reference.py).
        const bool grad_ok = valid & (o * e <= T(kAlphaMax));
        const T v_sigma = grad_ok ? -o * e * v_alpha : T(0);
        l_o[l] += grad_ok ? e * v_alpha : T(0);
        l_a[l] += T(0.5) * v_sigma * dx * dx;
        l_b[l] += v_sigma * dx * dy;
        l_c[l] += T(0.5) * v_sigma * dy * dy;
        l_mx[l] += v_sigma * (a * dx + bb * dy);
        l_my[l] += v_sigma * (bb * dx + c * dy);
        tc[l] = valid ? t_before : tcl;
      }
    }
    T* slot = slots + int64_t(k) * Q;
    for (int q = 0; q < Q; ++q) {
      T s = T(0);
      for (int l = l_lo; l <= l_hi; ++l) s += lanes[q * kTileSize + l];
      slot[q] = s;
    }
  }
}

template <typename T, int kC>
void backward_all(const RasterInputs<T>& in, const BackwardInputs<T>& gin,
                  const std::vector<TileBins>& bins, const BackwardOutputs<T>& out) {
  const int C = in.channels;
  const int Q = kSlotFixed + C;
  const int tiles_x = bins[0].tiles_x;
  const int64_t tiles = int64_t(tiles_x) * bins[0].tiles_y;
  std::vector<int64_t> slot_base(in.batch + 1, 0);  // [B + 1] first slot of each view
  for (int64_t b = 0; b < in.batch; ++b) slot_base[b + 1] = slot_base[b] + int64_t(bins[b].ids.size());
  std::vector<T> slots(size_t(slot_base[in.batch]) * Q, T(0));  // [n_isects, 6 + C]
  parallel_for(in.batch * tiles, [&](int64_t item) {
    const int64_t b = item / tiles, t = item % tiles;
    const TileBins& bin = bins[b];
    const int64_t start = bin.offsets[t];
    backward_tile<T, kC>(in, gin, b, int(t % tiles_x), int(t / tiles_x), bin.ids.data() + start,
                         bin.offsets[t + 1] - start, slots.data() + (slot_base[b] + start) * Q);
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
  switch (in.channels) {
    case 1: return backward_all<T, 1>(in, gin, bins, out);
    case 3: return backward_all<T, 3>(in, gin, bins, out);
    case 4: return backward_all<T, 4>(in, gin, bins, out);
    default: return backward_all<T, 0>(in, gin, bins, out);
  }
}

template void rasterize_to_pixels_bwd<float>(const RasterInputs<float>&,
                                             const BackwardInputs<float>&,
                                             const BackwardOutputs<float>&, uint64_t);
template void rasterize_to_pixels_bwd<double>(const RasterInputs<double>&,
                                              const BackwardInputs<double>&,
                                              const BackwardOutputs<double>&, uint64_t);

}  // namespace ua3d::cpu
