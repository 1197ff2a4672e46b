// pybind11 module `ua3dtalk_jax.render._raster_cpu`: exposes the CPU FFI
// handlers as capsules for jax.ffi.register_ffi_target (platform "cpu").
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>
#include <type_traits>

#include "cpu/rasterize_cpu.h"
#include "cpu/tile_kernels.h"
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

// exp_nonpos of `x` by raster_math.h's scalar code ("scalar") or by the vector code of a
// tile-kernel level (tests: the two must agree bit for bit).
py::array_t<float> ExpNonpos(py::array_t<float, py::array::c_style | py::array::forcecast> x,
                             const std::string& isa) {
  py::array_t<float> y(x.request().shape);
  const float* in = x.data();
  float* out = y.mutable_data();
  const int64_t n = x.size();
  if (isa == "scalar") {
    for (int64_t i = 0; i < n; ++i) out[i] = ua3d::exp_nonpos(in[i]);
    return y;
  }
  const ua3d::cpu::TileKernels<float>* k = ua3d::cpu::tile_kernels_named<float>(isa.c_str());
  if (k == nullptr)
    throw py::value_error("isa: '" + isa + "' is not a level this CPU runs (see tile_isas())");
  k->exp_nonpos(in, out, n);
  return y;
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
  m.def(
      "tile_isa", []() { return std::string(ua3d::cpu::tile_kernels<float>().isa); },
      "Instruction-set level of the tile kernels now (widest the CPU runs, capped by "
      "UA3D_CPU_ISA).");
  m.def(
      "tile_isas",
      []() {
        int count = 0;
        const char* const* names = ua3d::cpu::tile_isas(&count);
        py::list levels;
        for (int i = 0; i < count; ++i) levels.append(names[i]);
        return levels;
      },
      "Levels this build and CPU run, widest first.");
  m.def("exp_nonpos", &ExpNonpos, py::arg("x"), py::arg("isa"),
        "exp_nonpos(x) by the scalar code ('scalar') or a level's vector code (tests).");
  m.def(
      "kept_bins", []() { return ua3d::cpu::kept_bins_count(); },
      "Forward tile lists kept for a backward and not yet taken (ua3d/bins_cache.h).");
}
