// Argument structs of rasterize_to_pixels, shared by the CPU and CUDA kernels.
//
// B views are processed in one call: every per-Gaussian array is [B, N, ...]
// and every image [B, H, W(, C)], all C-contiguous (XLA's default layout).
// The forward returns the transmittance T_final (alpha = 1 - T_final is taken
// in JAX, which keeps T exact for the backward) and, per pixel, the position
// in its tile's depth-sorted list of the last Gaussian blended (-1: none).
#pragma once

#include <cstdint>

namespace ua3d {

template <typename T>
struct RasterInputs {
  int64_t batch = 0;  // B views
  int64_t n = 0;      // N Gaussians per view
  int channels = 0;   // C
  int width = 0;
  int height = 0;
  const T* means2d = nullptr;      // [B, N, 2]
  const T* conics = nullptr;       // [B, N, 3]
  const T* colors = nullptr;       // [B, N, C]
  const T* opacities = nullptr;    // [B, N]
  const T* depths = nullptr;       // [B, N]
  const int32_t* radii = nullptr;  // [B, N, 2]
  const T* background = nullptr;   // [B, C]
};

template <typename T>
struct ForwardOutputs {
  T* render = nullptr;         // [B, H, W, C]
  T* transmittance = nullptr;  // [B, H, W]
  int32_t* last = nullptr;     // [B, H, W]
};

template <typename T>
struct BackwardInputs {
  const T* transmittance = nullptr;  // [B, H, W] forward T_final
  const int32_t* last = nullptr;     // [B, H, W] forward last positions
  const T* v_render = nullptr;       // [B, H, W, C]
  const T* v_alpha = nullptr;        // [B, H, W]
};

template <typename T>
struct BackwardOutputs {
  T* v_means2d = nullptr;    // [B, N, 2]
  T* v_conics = nullptr;     // [B, N, 3]
  T* v_colors = nullptr;     // [B, N, C]
  T* v_opacities = nullptr;  // [B, N]
};

}  // namespace ua3d
