// pybind11 module `ua3dtalk_jax.render._raster_cuda`: exposes the CUDA FFI
// handlers as capsules for jax.ffi.register_ffi_target (platform "CUDA").
#include <pybind11/pybind11.h>

#include <type_traits>

#include "cuda/rasterize_cuda.h"
#include "xla/ffi/api/c_api.h"
#include "xla/ffi/api/ffi.h"

XLA_FFI_DECLARE_HANDLER_SYMBOL(Ua3dRasterizeToPixelsFwdCuda);
XLA_FFI_DECLARE_HANDLER_SYMBOL(Ua3dRasterizeToPixelsBwdCuda);

namespace py = pybind11;

namespace {

template <typename F>
py::capsule Capsule(F* fn) {
  static_assert(std::is_invocable_r_v<XLA_FFI_Error*, F, XLA_FFI_CallFrame*>,
                "not an XLA FFI handler");
  return py::capsule(reinterpret_cast<void*>(fn));
}

}  // namespace

PYBIND11_MODULE(_raster_cuda, m) {
  m.doc() = "CUDA rasterize_to_pixels XLA FFI handlers (F32).";
  m.def("registrations", []() {
    py::dict d;
    d["ua3d_rasterize_to_pixels_fwd_f32"] = Capsule(Ua3dRasterizeToPixelsFwdCuda);
    d["ua3d_rasterize_to_pixels_bwd_f32"] = Capsule(Ua3dRasterizeToPixelsBwdCuda);
    return d;
  });
  m.def(
      "kept_bins", []() { return ua3d::cuda::KeptBinsCount(); },
      "Forward tile lists kept for a backward and not yet taken, all devices.");
}
