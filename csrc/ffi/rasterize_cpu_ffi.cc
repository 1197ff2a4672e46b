// XLA FFI handlers for the CPU rasterizer (csrc/cpu): decode, validate, dispatch.
//
// Targets (F32 and F64; F64 serves the finite-difference tests):
//   ua3d_rasterize_to_pixels_fwd_{f32,f64}(means2d, conics, colors, opacities,
//       depths, radii, background; width, height, keep_bins)
//       -> (render, transmittance, last, bins_token)
//   ua3d_rasterize_to_pixels_bwd_{f32,f64}(the same seven inputs, transmittance,
//       last, v_render, v_alpha, bins_token; width, height, use_token)
//       -> (v_means2d, v_conics, v_colors, v_opacities)
// bins_token [B..., 2] int32: with keep_bins = 1 the forward keeps its tile lists
// (ua3d/bins_cache.h) and writes their token to every view's pair; a backward given
// that token (use_token = 1) takes them instead of binning again.
#include <cstdlib>
#include <new>
#include <string>

#include "cpu/rasterize_cpu.h"
#include "cpu/tile_kernels.h"
#include "ffi/rasterize_shapes.h"
#include "ua3d/bins_cache.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace ua3d {
namespace {

using ffi_shapes::RasterDims;

template <ffi::DataType kT>
using Buf = ffi::Buffer<kT>;
using IBuf = ffi::Buffer<ffi::S32>;

template <ffi::DataType kT, typename T = ffi::NativeType<kT>>
cpu::RasterInputs<T> MakeInputs(const RasterDims& d, Buf<kT> means2d, Buf<kT> conics,
                                Buf<kT> colors, Buf<kT> opacities, Buf<kT> depths, IBuf radii,
                                Buf<kT> background) {
  cpu::RasterInputs<T> in;
  in.batch = d.batch;
  in.n = d.n;
  in.channels = static_cast<int>(d.channels);
  in.width = static_cast<int>(d.width);
  in.height = static_cast<int>(d.height);
  in.means2d = means2d.typed_data();
  in.conics = conics.typed_data();
  in.colors = colors.typed_data();
  in.opacities = opacities.typed_data();
  in.depths = depths.typed_data();
  in.radii = radii.typed_data();
  in.background = background.typed_data();
  return in;
}

ffi::Error CheckIsaEnv() {
  if (cpu::tile_isa_env_ok()) return ffi::Error::Success();
  return ffi::Error::InvalidArgument(
      "UA3D_CPU_ISA must be avx512, avx2 or baseline (or unset), got '" +
      std::string(std::getenv("UA3D_CPU_ISA")) + "'");
}

template <ffi::DataType kT>
ffi::Error FwdImpl(int64_t width, int64_t height, int64_t keep_bins, Buf<kT> means2d,
                   Buf<kT> conics, Buf<kT> colors, Buf<kT> opacities, Buf<kT> depths, IBuf radii,
                   Buf<kT> background, ffi::ResultBuffer<kT> render,
                   ffi::ResultBuffer<kT> transmittance, ffi::Result<IBuf> last,
                   ffi::Result<IBuf> bins_token) {
  RasterDims d;
  UA3D_RETURN_IF_ERROR(ffi_shapes::ValidateInputs(width, height, means2d, conics, colors, opacities,
                                                  depths, radii, background, &d));
  UA3D_RETURN_IF_ERROR(ffi_shapes::CheckImages(d, render->dimensions(), transmittance->dimensions(),
                                               last->dimensions()));
  UA3D_RETURN_IF_ERROR(
      ffi_shapes::CheckBuffer("bins_token", bins_token->dimensions(), d.batch, {2}));
  UA3D_RETURN_IF_ERROR(CheckIsaEnv());
  using T = ffi::NativeType<kT>;
  cpu::ForwardOutputs<T> out{render->typed_data(), transmittance->typed_data(), last->typed_data()};
  uint64_t token = 0;
  try {
    cpu::rasterize_to_pixels_fwd(
        MakeInputs<kT>(d, means2d, conics, colors, opacities, depths, radii, background), out,
        keep_bins != 0 && KeepBinsEnabled() ? &token : nullptr);
  } catch (const std::bad_alloc&) {
    return ffi::Error::Internal("rasterize_to_pixels_fwd: out of host memory");
  }
  for (int64_t b = 0; b < d.batch; ++b) WriteToken(token, bins_token->typed_data() + 2 * b);
  return ffi::Error::Success();
}

template <ffi::DataType kT>
ffi::Error BwdImpl(int64_t width, int64_t height, int64_t use_token, Buf<kT> means2d,
                   Buf<kT> conics, Buf<kT> colors, Buf<kT> opacities, Buf<kT> depths, IBuf radii,
                   Buf<kT> background, Buf<kT> transmittance, IBuf last, Buf<kT> v_render,
                   Buf<kT> v_alpha, IBuf bins_token, ffi::ResultBuffer<kT> v_means2d,
                   ffi::ResultBuffer<kT> v_conics, ffi::ResultBuffer<kT> v_colors,
                   ffi::ResultBuffer<kT> v_opacities) {
  RasterDims d;
  UA3D_RETURN_IF_ERROR(ffi_shapes::ValidateInputs(width, height, means2d, conics, colors, opacities,
                                                  depths, radii, background, &d));
  UA3D_RETURN_IF_ERROR(ffi_shapes::CheckImages(d, v_render.dimensions(), transmittance.dimensions(),
                                               last.dimensions()));
  UA3D_RETURN_IF_ERROR(
      ffi_shapes::CheckBuffer("v_alpha", v_alpha.dimensions(), d.batch, {d.height, d.width}));
  UA3D_RETURN_IF_ERROR(
      ffi_shapes::CheckBuffer("bins_token", bins_token.dimensions(), d.batch, {2}));
  UA3D_RETURN_IF_ERROR(CheckIsaEnv());
  // Every view's pair holds the same token; none when there are no views.
  const uint64_t token = use_token != 0 && d.batch > 0 ? ReadToken(bins_token.typed_data()) : 0;
  using T = ffi::NativeType<kT>;
  cpu::BackwardInputs<T> gin{transmittance.typed_data(), last.typed_data(), v_render.typed_data(),
                             v_alpha.typed_data()};
  cpu::BackwardOutputs<T> out{v_means2d->typed_data(), v_conics->typed_data(),
                              v_colors->typed_data(), v_opacities->typed_data()};
  try {
    cpu::rasterize_to_pixels_bwd(
        MakeInputs<kT>(d, means2d, conics, colors, opacities, depths, radii, background), gin, out,
        token);
  } catch (const std::bad_alloc&) {
    return ffi::Error::Internal("rasterize_to_pixels_bwd: out of host memory");
  }
  return ffi::Error::Success();
}

}  // namespace
}  // namespace ua3d

// Binding order = argument order of the Impl functions above.
#define UA3D_INPUT_BINDING(kT, flag)                \
  ffi::Ffi::Bind()                                  \
      .Attr<int64_t>("width")                       \
      .Attr<int64_t>("height")                      \
      .Attr<int64_t>(flag)                          \
      .Arg<ffi::Buffer<kT>>()       /* means2d */   \
      .Arg<ffi::Buffer<kT>>()       /* conics */    \
      .Arg<ffi::Buffer<kT>>()       /* colors */    \
      .Arg<ffi::Buffer<kT>>()       /* opacities */ \
      .Arg<ffi::Buffer<kT>>()       /* depths */    \
      .Arg<ffi::Buffer<ffi::S32>>() /* radii */     \
      .Arg<ffi::Buffer<kT>>()       /* background */

XLA_FFI_DEFINE_HANDLER_SYMBOL(Ua3dRasterizeToPixelsFwdF32, ua3d::FwdImpl<ffi::F32>,
                              UA3D_INPUT_BINDING(ffi::F32, "keep_bins")
                                  .Ret<ffi::Buffer<ffi::F32>>()    // render
                                  .Ret<ffi::Buffer<ffi::F32>>()    // transmittance
                                  .Ret<ffi::Buffer<ffi::S32>>()    // last
                                  .Ret<ffi::Buffer<ffi::S32>>());  // bins_token
XLA_FFI_DEFINE_HANDLER_SYMBOL(Ua3dRasterizeToPixelsFwdF64, ua3d::FwdImpl<ffi::F64>,
                              UA3D_INPUT_BINDING(ffi::F64, "keep_bins")
                                  .Ret<ffi::Buffer<ffi::F64>>()
                                  .Ret<ffi::Buffer<ffi::F64>>()
                                  .Ret<ffi::Buffer<ffi::S32>>()
                                  .Ret<ffi::Buffer<ffi::S32>>());

#define UA3D_BWD_BINDING(kT)                            \
  UA3D_INPUT_BINDING(kT, "use_token")                   \
      .Arg<ffi::Buffer<kT>>()       /* transmittance */ \
      .Arg<ffi::Buffer<ffi::S32>>() /* last */          \
      .Arg<ffi::Buffer<kT>>()       /* v_render */      \
      .Arg<ffi::Buffer<kT>>()       /* v_alpha */       \
      .Arg<ffi::Buffer<ffi::S32>>() /* bins_token */    \
      .Ret<ffi::Buffer<kT>>()       /* v_means2d */     \
      .Ret<ffi::Buffer<kT>>()       /* v_conics */      \
      .Ret<ffi::Buffer<kT>>()       /* v_colors */      \
      .Ret<ffi::Buffer<kT>>()       /* v_opacities */

XLA_FFI_DEFINE_HANDLER_SYMBOL(Ua3dRasterizeToPixelsBwdF32, ua3d::BwdImpl<ffi::F32>,
                              UA3D_BWD_BINDING(ffi::F32));
XLA_FFI_DEFINE_HANDLER_SYMBOL(Ua3dRasterizeToPixelsBwdF64, ua3d::BwdImpl<ffi::F64>,
                              UA3D_BWD_BINDING(ffi::F64));
