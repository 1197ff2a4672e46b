// XLA FFI handlers for the CUDA rasterizer (csrc/cuda): decode, validate, dispatch.
//
// Same target names and signatures as the CPU handlers (F32 only):
//   ua3d_rasterize_to_pixels_fwd_f32, ua3d_rasterize_to_pixels_bwd_f32
// (keep_bins / use_token and bins_token: see rasterize_cpu_ffi.cc).
// The stream comes from the FFI context (PlatformStream) and device scratch from
// XLA's ScratchAllocator; kept tile lists live in stream-ordered allocations of their
// own. Not marked command-buffer compatible: binning reads the intersection count
// back to the host to size the sort, and a backward reads the bins token.
#include <cuda_runtime_api.h>

#include <string>

#include "cuda/rasterize_cuda.h"
#include "ffi/rasterize_shapes.h"
#include "ua3d/bins_cache.h"
#include "ua3d/raster_math.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace ua3d {
namespace {

using ffi_shapes::RasterDims;
using FBuf = ffi::Buffer<ffi::F32>;
using IBuf = ffi::Buffer<ffi::S32>;

class XlaScratch final : public cuda::DeviceScratch {
 public:
  explicit XlaScratch(ffi::ScratchAllocator& alloc) : alloc_(alloc) {}
  void* Allocate(size_t bytes) override {
    std::optional<void*> p = alloc_.Allocate(bytes > 0 ? bytes : 1, 256);
    return p.has_value() ? *p : nullptr;
  }

 private:
  ffi::ScratchAllocator& alloc_;
};

ffi::Error CudaStatus(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return ffi::Error::Success();
  return ffi::Error::Internal(std::string(what) + ": " + cudaGetErrorString(err));
}

RasterInputs<float> MakeInputs(const RasterDims& d, FBuf means2d, FBuf conics, FBuf colors,
                               FBuf opacities, FBuf depths, IBuf radii, FBuf background) {
  RasterInputs<float> in;
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

// Launch limits: views are gridDim.z and tile rows gridDim.y (both at most
// 65535); Gaussian ids are int32.
ffi::Error CheckBatch(const RasterDims& d) {
  if (d.batch * d.n > INT32_MAX || d.batch > 65535)
    return ffi::Error::InvalidArgument(
        "rasterize_to_pixels (CUDA): at most 65535 views and 2^31 Gaussians in all");
  if ((d.height + kTileSize - 1) / kTileSize > 65535)
    return ffi::Error::InvalidArgument(
        "rasterize_to_pixels (CUDA): height must be at most 65535 tiles (1048560 pixels)");
  return ffi::Error::Success();
}

ffi::Error FwdImpl(cudaStream_t stream, ffi::ScratchAllocator scratch, int64_t width,
                   int64_t height, int64_t keep_bins, FBuf means2d, FBuf conics, FBuf colors,
                   FBuf opacities, FBuf depths, IBuf radii, FBuf background,
                   ffi::ResultBuffer<ffi::F32> render, ffi::ResultBuffer<ffi::F32> transmittance,
                   ffi::Result<IBuf> last, ffi::Result<IBuf> bins_token) {
  RasterDims d;
  UA3D_RETURN_IF_ERROR(ffi_shapes::ValidateInputs(width, height, means2d, conics, colors, opacities,
                                                  depths, radii, background, &d));
  UA3D_RETURN_IF_ERROR(ffi_shapes::CheckImages(d, render->dimensions(), transmittance->dimensions(),
                                               last->dimensions()));
  UA3D_RETURN_IF_ERROR(
      ffi_shapes::CheckBuffer("bins_token", bins_token->dimensions(), d.batch, {2}));
  UA3D_RETURN_IF_ERROR(CheckBatch(d));
  XlaScratch alloc(scratch);
  ForwardOutputs<float> out{render->typed_data(), transmittance->typed_data(), last->typed_data()};
  int32_t* token = bins_token->typed_data();
  keep_bins = keep_bins != 0 && KeepBinsEnabled();
  if (keep_bins == 0 && d.batch > 0)
    cudaMemsetAsync(token, 0, sizeof(int32_t) * 2 * d.batch, stream);
  return CudaStatus(
      cuda::RasterizeToPixelsFwd(
          MakeInputs(d, means2d, conics, colors, opacities, depths, radii, background), out, alloc,
          stream, keep_bins != 0 ? token : nullptr),
      "rasterize_to_pixels_fwd (CUDA)");
}

ffi::Error BwdImpl(cudaStream_t stream, ffi::ScratchAllocator scratch, int64_t width,
                   int64_t height, int64_t use_token, FBuf means2d, FBuf conics, FBuf colors,
                   FBuf opacities, FBuf depths, IBuf radii, FBuf background, FBuf transmittance,
                   IBuf last, FBuf v_render, FBuf v_alpha, IBuf bins_token,
                   ffi::ResultBuffer<ffi::F32> v_means2d, ffi::ResultBuffer<ffi::F32> v_conics,
                   ffi::ResultBuffer<ffi::F32> v_colors, ffi::ResultBuffer<ffi::F32> v_opacities) {
  RasterDims d;
  UA3D_RETURN_IF_ERROR(ffi_shapes::ValidateInputs(width, height, means2d, conics, colors, opacities,
                                                  depths, radii, background, &d));
  UA3D_RETURN_IF_ERROR(ffi_shapes::CheckImages(d, v_render.dimensions(), transmittance.dimensions(),
                                               last.dimensions()));
  UA3D_RETURN_IF_ERROR(
      ffi_shapes::CheckBuffer("v_alpha", v_alpha.dimensions(), d.batch, {d.height, d.width}));
  UA3D_RETURN_IF_ERROR(
      ffi_shapes::CheckBuffer("bins_token", bins_token.dimensions(), d.batch, {2}));
  UA3D_RETURN_IF_ERROR(CheckBatch(d));
  XlaScratch alloc(scratch);
  BackwardInputs<float> gin{transmittance.typed_data(), last.typed_data(), v_render.typed_data(),
                            v_alpha.typed_data()};
  BackwardOutputs<float> out{v_means2d->typed_data(), v_conics->typed_data(),
                             v_colors->typed_data(), v_opacities->typed_data()};
  return CudaStatus(
      cuda::RasterizeToPixelsBwd(
          MakeInputs(d, means2d, conics, colors, opacities, depths, radii, background), gin, out,
          alloc, stream, use_token != 0 ? bins_token.typed_data() : nullptr),
      "rasterize_to_pixels_bwd (CUDA)");
}

}  // namespace
}  // namespace ua3d

XLA_FFI_DEFINE_HANDLER_SYMBOL(Ua3dRasterizeToPixelsFwdCuda, ua3d::FwdImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::PlatformStream<cudaStream_t>>()
                                  .Ctx<ffi::ScratchAllocator>()
                                  .Attr<int64_t>("width")
                                  .Attr<int64_t>("height")
                                  .Attr<int64_t>("keep_bins")
                                  .Arg<ffi::Buffer<ffi::F32>>()    // means2d
                                  .Arg<ffi::Buffer<ffi::F32>>()    // conics
                                  .Arg<ffi::Buffer<ffi::F32>>()    // colors
                                  .Arg<ffi::Buffer<ffi::F32>>()    // opacities
                                  .Arg<ffi::Buffer<ffi::F32>>()    // depths
                                  .Arg<ffi::Buffer<ffi::S32>>()    // radii
                                  .Arg<ffi::Buffer<ffi::F32>>()    // background
                                  .Ret<ffi::Buffer<ffi::F32>>()    // render
                                  .Ret<ffi::Buffer<ffi::F32>>()    // transmittance
                                  .Ret<ffi::Buffer<ffi::S32>>()    // last
                                  .Ret<ffi::Buffer<ffi::S32>>());  // bins_token

XLA_FFI_DEFINE_HANDLER_SYMBOL(Ua3dRasterizeToPixelsBwdCuda, ua3d::BwdImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::PlatformStream<cudaStream_t>>()
                                  .Ctx<ffi::ScratchAllocator>()
                                  .Attr<int64_t>("width")
                                  .Attr<int64_t>("height")
                                  .Attr<int64_t>("use_token")
                                  .Arg<ffi::Buffer<ffi::F32>>()    // means2d
                                  .Arg<ffi::Buffer<ffi::F32>>()    // conics
                                  .Arg<ffi::Buffer<ffi::F32>>()    // colors
                                  .Arg<ffi::Buffer<ffi::F32>>()    // opacities
                                  .Arg<ffi::Buffer<ffi::F32>>()    // depths
                                  .Arg<ffi::Buffer<ffi::S32>>()    // radii
                                  .Arg<ffi::Buffer<ffi::F32>>()    // background
                                  .Arg<ffi::Buffer<ffi::F32>>()    // transmittance
                                  .Arg<ffi::Buffer<ffi::S32>>()    // last
                                  .Arg<ffi::Buffer<ffi::F32>>()    // v_render
                                  .Arg<ffi::Buffer<ffi::F32>>()    // v_alpha
                                  .Arg<ffi::Buffer<ffi::S32>>()    // bins_token
                                  .Ret<ffi::Buffer<ffi::F32>>()    // v_means2d
                                  .Ret<ffi::Buffer<ffi::F32>>()    // v_conics
                                  .Ret<ffi::Buffer<ffi::F32>>()    // v_colors
                                  .Ret<ffi::Buffer<ffi::F32>>());  // v_opacities
