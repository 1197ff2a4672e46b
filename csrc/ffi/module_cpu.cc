// pybind11 module `ua3dtalk_jax.render._raster_cpu`: exposes the CPU FFI
// handlers as capsules for jax.ffi.register_ffi_target (platform "cpu").
#include <pybind11/pybind11.h>

#include <type_traits>

#include "cpu/rasterize_cpu.h"
#include "xla/ffi/api/c_api.h"
#include "xla/ffi/api/ffi.h"

XLA_FFI_DECLARE_HANDLER_SYMBOL(Ua3dRasterizeToPixelsFwdF32);
XLA_FFI_DECLARE_HANDLER_SYMBOL(Ua3dRasterizeToPixelsFwdF64);
XLA_FFI_DECLARE_HANDLER_SYMBOL(Ua3dRasterizeToPixelsBwdF32);
XLA_FFI_DECLARE_HANDLER_SYMBOL(Ua3dRasterizeToPixelsBwdF64);

namespace py = pybind11;

namespace {

template <typename F>
py::capsule Capsule(F* fn) {
  static_assert(std::is_invocable_r_v<XLA_FFI_Error*, F, XLA_FFI_CallFrame*>,
                "not an XLA FFI handler");
  return py::capsule(reinterpret_cast<void*>(fn));
}

}  // namespace

PYBIND11_MODULE(_raster_cpu, m) {
  m.doc() = "CPU rasterize_to_pixels XLA FFI handlers (F32, F64).";
  m.def("registrations", []() {
    py::dict d;
    d["ua3d_rasterize_to_pixels_fwd_f32"] = Capsule(Ua3dRasterizeToPixelsFwdF32);
    d["ua3d_rasterize_to_pixels_fwd_f64"] = Capsule(Ua3dRasterizeToPixelsFwdF64);
    d["ua3d_rasterize_to_pixels_bwd_f32"] = Capsule(Ua3dRasterizeToPixelsBwdF32);
    d["ua3d_rasterize_to_pixels_bwd_f64"] = Capsule(Ua3dRasterizeToPixelsBwdF64);
    return d;
  });
  m.def("kept_bins", []() { return ua3d::cpu::kept_bins_count(); },
        "Forward tile lists kept for a backward and not yet taken (ua3d/bins_cache.h).");
}
