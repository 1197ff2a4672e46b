// Shape validation shared by the CPU and CUDA XLA FFI handlers of
// rasterize_to_pixels (fwd and bwd). Every array carries any number of leading
// batch (view) dimensions, flattened to B: means2d [..., N, 2], conics
// [..., N, 3], colors [..., N, C], opacities [..., N], depths [..., N], radii
// [..., N, 2] int32, background [..., C]; images [..., H, W(, C)].
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>

#include "xla/ffi/api/ffi.h"

namespace ua3d::ffi_shapes {

namespace ffi = xla::ffi;

struct RasterDims {
  int64_t batch = 0;
  int64_t n = 0;
  int64_t channels = 0;
  int64_t width = 0;
  int64_t height = 0;
};

inline std::string DimsString(ffi::Span<const int64_t> dims) {
  std::string s = "[";
  for (size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
  return s + "]";
}

// Checks dims == [leading..., tail...] with prod(leading) == batch; a tail
// entry < 0 matches any size.
inline ffi::Error CheckBuffer(const char* name, ffi::Span<const int64_t> dims, int64_t batch,
                              std::initializer_list<int64_t> tail) {
  const size_t rank = dims.size(), tail_rank = tail.size();
  bool ok = rank >= tail_rank;
  int64_t lead = 1;
  for (size_t i = 0; ok && i + tail_rank < rank; ++i) lead *= dims[i];
  ok = ok && lead == batch;
  size_t j = rank - tail_rank;
  for (int64_t want : tail) {
    if (!ok) break;
    ok = want < 0 || dims[j] == want;
    ++j;
  }
  if (ok) return ffi::Error::Success();
  std::string want = "[B...";
  for (int64_t t : tail) want += ", " + (t < 0 ? std::string("*") : std::to_string(t));
  return ffi::Error::InvalidArgument(std::string("rasterize_to_pixels: ") + name + " has shape " +
                                     DimsString(dims) + ", expected " + want +
                                     "] with B = " + std::to_string(batch));
}

#define UA3D_RETURN_IF_ERROR(expr)   \
  do {                               \
    ffi::Error _err = (expr);        \
    if (_err.failure()) return _err; \
  } while (0)

template <typename Buf, typename IBuf>
ffi::Error ValidateInputs(int64_t width, int64_t height, const Buf& means2d, const Buf& conics,
                          const Buf& colors, const Buf& opacities, const Buf& depths,
                          const IBuf& radii, const Buf& background, RasterDims* d) {
  if (width < 1 || height < 1 || width > (1 << 24) || height > (1 << 24))
    return ffi::Error::InvalidArgument(
        "rasterize_to_pixels: width and height must be in [1, 2^24]");
  const auto md = means2d.dimensions();
  if (md.size() < 2 || md[md.size() - 1] != 2)
    return ffi::Error::InvalidArgument("rasterize_to_pixels: means2d must be [..., N, 2], got " +
                                       DimsString(md));
  d->n = md[md.size() - 2];
  if (d->n > INT32_MAX)
    return ffi::Error::InvalidArgument("rasterize_to_pixels: at most 2^31 - 1 Gaussians");
  d->batch = 1;
  for (size_t i = 0; i + 2 < md.size(); ++i) d->batch *= md[i];
  const auto cd = colors.dimensions();
  d->channels = cd.size() ? cd[cd.size() - 1] : 0;
  if (d->channels < 1)
    return ffi::Error::InvalidArgument("rasterize_to_pixels: colors must have >= 1 channel");
  d->width = width;
  d->height = height;
  UA3D_RETURN_IF_ERROR(CheckBuffer("conics", conics.dimensions(), d->batch, {d->n, 3}));
  UA3D_RETURN_IF_ERROR(CheckBuffer("colors", cd, d->batch, {d->n, d->channels}));
  UA3D_RETURN_IF_ERROR(CheckBuffer("opacities", opacities.dimensions(), d->batch, {d->n}));
  UA3D_RETURN_IF_ERROR(CheckBuffer("depths", depths.dimensions(), d->batch, {d->n}));
  UA3D_RETURN_IF_ERROR(CheckBuffer("radii", radii.dimensions(), d->batch, {d->n, 2}));
  UA3D_RETURN_IF_ERROR(CheckBuffer("background", background.dimensions(), d->batch, {d->channels}));
  return ffi::Error::Success();
}

// Forward outputs (render, transmittance, last) or the image-shaped backward
// inputs (v_render, transmittance, last, v_alpha).
inline ffi::Error CheckImages(const RasterDims& d, ffi::Span<const int64_t> render,
                              ffi::Span<const int64_t> transmittance,
                              ffi::Span<const int64_t> last) {
  UA3D_RETURN_IF_ERROR(CheckBuffer("render", render, d.batch, {d.height, d.width, d.channels}));
  UA3D_RETURN_IF_ERROR(CheckBuffer("transmittance", transmittance, d.batch, {d.height, d.width}));
  return CheckBuffer("last", last, d.batch, {d.height, d.width});
}

}  // namespace ua3d::ffi_shapes
