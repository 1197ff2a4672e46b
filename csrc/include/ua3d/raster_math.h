// Blending math shared by the CPU (csrc/cpu) and CUDA (csrc/cuda) rasterizers.
//
// The rules are those of render/reference.py (the executable spec), per pixel
// centre p = (x + 0.5, y + 0.5) and Gaussian (mean m, conic (a, b, c), opacity o):
//   d = m - p,  sigma = 0.5 (a dx^2 + c dy^2) + b dx dy,
//   alpha = min(0.99, o exp(-sigma)), skipped when sigma < 0 or alpha < 1/255,
//   front to back by (depth, index); blended while T (1 - alpha) > 1e-4.
// Tiles are 16x16 pixels; a Gaussian with radii (rx, ry) touches the tiles that
// overlap its box [mx - rx, mx + rx] x [my - ry, my + ry].
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define UA3D_HD __host__ __device__ __forceinline__
#else
#define UA3D_HD inline
#endif

namespace ua3d {

#if !defined(__CUDA_ARCH__)
using std::ceil;
using std::exp;
using std::floor;
using std::isfinite;
#endif

constexpr int kTileSize = 16;
constexpr int kTilePixels = kTileSize * kTileSize;
constexpr float kAlphaMax = 0.99f;
constexpr float kAlphaMin = 1.0f / 255.0f;
constexpr float kTransmittanceMin = 1e-4f;

// Tiles [x0, x1) x [y0, y1) touched by a Gaussian, or an empty rect when it is
// inactive. Inactive: a zero radius, opacity not > 0, or a non-finite mean,
// conic or depth (so NaN inputs are culled, never binned: a NaN conic would give
// NaN gradients through 0 * NaN on the CPU and NaN in the exp's integer part).
struct TileRect {
  int x0, y0, x1, y1;
  UA3D_HD int64_t count() const {
    return (x1 > x0 && y1 > y0) ? int64_t(x1 - x0) * int64_t(y1 - y0) : 0;
  }
};

template <typename T>
UA3D_HD T clamp_val(T v, T lo, T hi) {
  return v < lo ? lo : (v > hi ? hi : v);
}

template <typename T>
UA3D_HD bool is_active(T mx, T my, T a, T b, T c, T opacity, T depth, int32_t rx, int32_t ry) {
  return rx > 0 && ry > 0 && opacity > T(0) && isfinite(mx) && isfinite(my) && isfinite(a) &&
         isfinite(b) && isfinite(c) && isfinite(depth);
}

template <typename T>
UA3D_HD TileRect tile_rect(T mx, T my, int32_t rx, int32_t ry, int tiles_x, int tiles_y) {
  const T ts = T(kTileSize);
  // Clamped in floating point first: the box may extend far off-screen.
  const T fx0 = clamp_val(floor((mx - T(rx)) / ts), T(0), T(tiles_x));
  const T fx1 = clamp_val(ceil((mx + T(rx)) / ts), T(0), T(tiles_x));
  const T fy0 = clamp_val(floor((my - T(ry)) / ts), T(0), T(tiles_y));
  const T fy1 = clamp_val(ceil((my + T(ry)) / ts), T(0), T(tiles_y));
  return TileRect{int(fx0), int(fy0), int(fx1), int(fy1)};
}

// Pixel range [lo, hi] (inclusive) whose centres lie inside [m - r, m + r],
// clipped to [clip_lo, clip_hi]; empty when lo > hi.
template <typename T>
UA3D_HD void pixel_span(T m, int32_t r, int clip_lo, int clip_hi, int* lo, int* hi) {
  const T l = clamp_val(ceil(m - T(r) - T(0.5)), T(clip_lo), T(clip_hi + 1));
  const T h = clamp_val(floor(m + T(r) - T(0.5)), T(clip_lo - 1), T(clip_hi));
  *lo = int(l);
  *hi = int(h);
}

// Round-to-nearest float operations that are never fused into an FMA: on the
// device __fmul_rn / __fadd_rn / __fsub_rn (nvcc contracts plain a * b + c by
// default, -fmad=true), on the host plain operators (the CPU build turns
// contraction off, -ffp-contract=off). Expressions written with them round the
// same way on both platforms, so the CPU and CUDA kernels, forward and backward,
// agree bit for bit on which pairs blend (sigma >= 0, alpha >= 1/255, T > 1e-4).
UA3D_HD float mul_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
UA3D_HD float add_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
UA3D_HD float sub_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}
// float64 (CPU only, finite-difference tests): plain operators.
UA3D_HD double mul_rn(double a, double b) { return a * b; }
UA3D_HD double add_rn(double a, double b) { return a + b; }

// sigma along one pixel row: the row terms hc = c dy^2 / 2 and bdy = b dy are
// hoisted, so the inner loop over x is a few multiply-adds. Forward and
// backward (CPU and CUDA) all use this one expression (nvcc had fused it
// differently in the forward and the backward kernel, seen in the sm_90 PTX).
template <typename T>
UA3D_HD T row_sigma(T a, T dx, T bdy, T hc) {
  return add_rn(add_rn(mul_rn(mul_rn(mul_rn(T(0.5), a), dx), dx), mul_rn(bdy, dx)), hc);
}

// exp(x) for x <= 0, vectorisable (no libm call, no errno): Cephes expf
// polynomial after Cody-Waite reduction; relative error ~2e-7. The same
// operations on the device (not its expf), so both platforms compute the same
// alpha and skip the same pairs at alpha = 1/255 and at the T cut-off. Inputs
// below -60 (and NaN) are clamped to -60, above 0 to 0. e^-60 = 8.8e-27 is far
// below any alpha that blends (o e >= 1/255 needs o > 4e23 there), and it keeps
// the products of the pairs that do not blend (o e, alpha T, their colours) out
// of the subnormal range, whose operations cost the CPU forward 20 % of its time
// with the old clamp at -87. The double version (finite-difference tests) uses
// std::exp.
UA3D_HD float exp_nonpos(float x) {
  x = x > -60.0f ? x : -60.0f;  // written so that NaN takes -60: no int32_t(NaN) below
  x = x < 0.0f ? x : 0.0f;
  const float shift = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  const float n = sub_rn(add_rn(mul_rn(x, 1.44269504088896341f), shift), shift);
  const float r = add_rn(sub_rn(x, mul_rn(n, 0.693359375f)), mul_rn(n, 2.12194440e-4f));
  float p = 1.9875691500e-4f;
  p = add_rn(mul_rn(p, r), 1.3981999507e-3f);
  p = add_rn(mul_rn(p, r), 8.3334519073e-3f);
  p = add_rn(mul_rn(p, r), 4.1665795894e-2f);
  p = add_rn(mul_rn(p, r), 1.6666665459e-1f);
  p = add_rn(mul_rn(p, r), 5.0000001201e-1f);
  p = add_rn(add_rn(mul_rn(mul_rn(p, r), r), r), 1.0f);
  const int32_t bits = (int32_t(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return mul_rn(p, scale);
}

UA3D_HD double exp_nonpos(double x) { return exp(x > 0.0 ? 0.0 : x); }

// Alpha of one Gaussian at one pixel; `e` receives exp(-sigma) (the
// backward needs it), `valid` whether the pair passes the sigma/alpha tests.
template <typename T>
UA3D_HD T eval_alpha(T sigma, T opacity, T* e, bool* valid) {
  *e = exp_nonpos(-sigma);
  const T raw = opacity * *e;
  const T alpha = raw < T(kAlphaMax) ? raw : T(kAlphaMax);
  // Tested on `raw` (equal to testing alpha, as 0.99 > 1/255): GCC 12 does not
  // vectorise a select on a compare of the clamped value.
  *valid = (sigma >= T(0)) & (raw >= T(kAlphaMin));
  return alpha;
}

// Sort key of a finite depth: unsigned bits that order like the value (negative
// depths flipped, positive ones offset by the sign bit); -0 and +0 share a key,
// as they compare equal. Used by both the CUDA and the CPU binning.
UA3D_HD uint32_t depth_bits(float depth) {
  depth += 0.0f;  // -0 -> +0
  uint32_t u;
  std::memcpy(&u, &depth, sizeof(u));
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

UA3D_HD uint64_t depth_bits(double depth) {
  depth += 0.0;
  uint64_t u;
  std::memcpy(&u, &depth, sizeof(u));
  constexpr uint64_t kSign = uint64_t(1) << 63;
  return (u & kSign) ? ~u : (u | kSign);
}

}  // namespace ua3d
