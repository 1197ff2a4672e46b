// C entry points of the CPU-emulated CUDA rasterizer, for ctypes (tests/render/cuda_emu.py).
//
// They do what the CUDA FFI handlers (csrc/ffi/rasterize_cuda_ffi.cc) do after validation:
// fill RasterInputs from the arrays (layouts of ua3d/raster_args.h) and call
// cuda::RasterizeToPixelsFwd / Bwd, with host memory as device memory and scratch.
// bins_token ([B, 2] int32, may be null) is the FFI's: the forward keeps its tile lists and
// writes their token there, the backward takes them by it. Each returns 0 on success, 1 for
// a CUDA error, 2 when the scheduler rejected a kernel (KernelError); `err` then receives
// the message.
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "cuda/rasterize_cuda.h"
#include "emu/cuda_emu.h"

#define UA3D_EMU_API extern "C" __attribute__((visibility("default")))

namespace {

using ua3d::RasterInputs;

// XLA's ScratchAllocator stand-in: freed when the call returns.
class HostScratch final : public ua3d::cuda::DeviceScratch {
 public:
  ~HostScratch() override {
    for (void* p : blocks_) std::free(p);
  }
  void* Allocate(size_t bytes) override {
    void* p = std::malloc(bytes > 0 ? bytes : 1);
    if (p != nullptr) blocks_.push_back(p);
    return p;
  }

 private:
  std::vector<void*> blocks_;
};

RasterInputs<float> Inputs(const int64_t* dims, const float* means2d, const float* conics,
                           const float* colors, const float* opacities, const float* depths,
                           const int32_t* radii, const float* background) {
  RasterInputs<float> in;
  in.batch = dims[0];
  in.n = dims[1];
  in.channels = static_cast<int>(dims[2]);
  in.width = static_cast<int>(dims[3]);
  in.height = static_cast<int>(dims[4]);
  in.means2d = means2d;
  in.conics = conics;
  in.colors = colors;
  in.opacities = opacities;
  in.depths = depths;
  in.radii = radii;
  in.background = background;
  return in;
}

template <typename F>
int Guard(F&& call, char* err, int64_t err_len) {
  std::string message;
  int code = 0;
  try {
    const cudaError_t status = call();
    if (status != cudaSuccess) {
      code = 1;
      message = cudaGetErrorString(status);
    }
  } catch (const ua3d::emu::KernelError& e) {
    code = 2;
    message = e.what();
  }
  if (code != 0 && err != nullptr && err_len > 0)
    std::snprintf(err, err_len, "%s", message.c_str());
  return code;
}

}  // namespace

UA3D_EMU_API void ua3d_emu_set_schedule(int order, uint64_t seed) {
  ua3d::emu::SetSchedule(static_cast<ua3d::emu::Order>(order), seed);
}

// launches, blocks, barriers, warp_ops, switches, stream_syncs, device_allocs, live bytes.
UA3D_EMU_API void ua3d_emu_stats(int64_t* out) {
  const ua3d::emu::Stats s = ua3d::emu::GetStats();
  const int64_t values[] = {
      s.launches, s.blocks,       s.barriers,      s.warp_ops,
      s.switches, s.stream_syncs, s.device_allocs, ua3d::emu::LiveDeviceBytes()};
  for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); ++i) out[i] = values[i];
}

UA3D_EMU_API void ua3d_emu_reset_stats() { ua3d::emu::ResetStats(); }

UA3D_EMU_API int64_t ua3d_emu_kept_bins() {
  return static_cast<int64_t>(ua3d::cuda::KeptBinsCount());
}

// dims = (batch, n, channels, width, height).
UA3D_EMU_API int ua3d_emu_forward(const int64_t* dims, const float* means2d, const float* conics,
                                  const float* colors, const float* opacities, const float* depths,
                                  const int32_t* radii, const float* background, float* render,
                                  float* transmittance, int32_t* last, int32_t* bins_token,
                                  char* err, int64_t err_len) {
  const RasterInputs<float> in =
      Inputs(dims, means2d, conics, colors, opacities, depths, radii, background);
  const ua3d::ForwardOutputs<float> out{render, transmittance, last};
  return Guard(
      [&] {
        HostScratch scratch;
        return ua3d::cuda::RasterizeToPixelsFwd(in, out, scratch, nullptr, bins_token);
      },
      err, err_len);
}

UA3D_EMU_API int ua3d_emu_backward(const int64_t* dims, const float* means2d, const float* conics,
                                   const float* colors, const float* opacities, const float* depths,
                                   const int32_t* radii, const float* background,
                                   const float* transmittance, const int32_t* last,
                                   const float* v_render, const float* v_alpha,
                                   const int32_t* bins_token, float* v_means2d, float* v_conics,
                                   float* v_colors, float* v_opacities, char* err,
                                   int64_t err_len) {
  const RasterInputs<float> in =
      Inputs(dims, means2d, conics, colors, opacities, depths, radii, background);
  const ua3d::BackwardInputs<float> gin{transmittance, last, v_render, v_alpha};
  const ua3d::BackwardOutputs<float> out{v_means2d, v_conics, v_colors, v_opacities};
  return Guard(
      [&] {
        HostScratch scratch;
        return ua3d::cuda::RasterizeToPixelsBwd(in, gin, out, scratch, nullptr, bins_token);
      },
      err, err_len);
}
