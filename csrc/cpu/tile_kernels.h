// Per-tile kernels of the CPU rasterizer, compiled once per x86 instruction-set level.
//
// The forward and backward of one 16x16 tile are written with GCC vector types
// (tile_simd.inc): a tile is 16 blocks of 4 x 4 pixels, a block 16 / W vectors of W lanes.
// Each level is its own file, compiled under `#pragma GCC target` with its native width:
// tile_kernels_avx512.cc (x86-64-v4, 16 float lanes), tile_kernels_avx2.cc (x86-64-v3, 8),
// tile_kernels_baseline.cc (no pragma: SSE2 on x86-64, 4 lanes, and what other CPUs and
// compilers build).
// tile_kernels<T>() picks the widest level the CPU runs, once; UA3D_CPU_ISA=avx2 or baseline
// (read at every call) caps it, for tests and A/B runs. With -ffp-contract=off every level
// rounds lane by lane as the scalar code of ua3d/raster_math.h, so all levels give the same
// bits (tested), forward and backward.
//
// (Not GCC's target_clones: its clones keep the default target's vector modes, so a vector
// comparison used as a mask is split into scalar compares, 4x slower, and some uses ICE.)
#pragma once

#include <cstddef>
#include <cstdint>

#include "cpu/rasterize_cpu.h"
#include "ua3d/raster_math.h"

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define UA3D_X86_LEVELS 1
#else
#define UA3D_X86_LEVELS 0
#endif

namespace ua3d::cpu {

// Scratch of one tile call, in T (64-byte aligned by the kernel): the forward's
// T, live, last, acc[C] and the backward's T, T_L, last, v_render[C], S[C], each 256 pixels,
// plus the backward's (6 + C) gradient sums of 16 lanes.
inline size_t tile_scratch_size(int channels) {
  return size_t(5 + 2 * channels) * kTilePixels + size_t(6 + channels) * kTileSize + 64;
}

template <typename T>
struct TileKernels {
  const char* isa = nullptr;  // "avx512", "avx2" or "baseline"
  // Blends the tile's sorted list ids[0, count) into the tile (tx, ty) of view b.
  void (*forward)(const RasterInputs<T>& in, int64_t b, int tx, int ty, const int32_t* ids,
                  int64_t count, const ForwardOutputs<T>& out, T* scratch) = nullptr;
  // Writes each list entry's gradient sums over the tile to slots[k * (6 + C), ...]
  // (layout: mean x, mean y, conic a, b, c, opacity, colour[C]); entries past the tile's
  // last blended position are left untouched.
  void (*backward)(const RasterInputs<T>& in, const BackwardInputs<T>& gin, int64_t b, int tx,
                   int ty, const int32_t* ids, int64_t count, T* slots, T* scratch) = nullptr;
  // y[i] = the level's vector exp_nonpos(x[i]) (tests: bitwise raster_math.h's scalar one).
  void (*exp_nonpos)(const T* x, T* y, int64_t n) = nullptr;
};

// The levels, each defined in its own file (null entries where not compiled).
namespace avx512 {
TileKernels<float> kernels_f32();
TileKernels<double> kernels_f64();
}  // namespace avx512
namespace avx2 {
TileKernels<float> kernels_f32();
TileKernels<double> kernels_f64();
}  // namespace avx2
namespace baseline {
TileKernels<float> kernels_f32();
TileKernels<double> kernels_f64();
}  // namespace baseline

// The kernels of the widest level this CPU runs, capped by UA3D_CPU_ISA.
template <typename T>
const TileKernels<T>& tile_kernels();

// The kernels of one level by name, or null where this build or CPU lacks it.
template <typename T>
const TileKernels<T>* tile_kernels_named(const char* isa);

// Whether UA3D_CPU_ISA is unset, empty or names a level (avx512, avx2, baseline).
bool tile_isa_env_ok();

// The levels this build and CPU run, widest first.
const char* const* tile_isas(int* count);

// The shared templates that the kernels call, instantiated here, before any target pragma:
// an instantiation first requested under `#pragma GCC target` would be compiled for that
// target, and as a COMDAT shared with other files it could be the copy the linker keeps for
// all of them (an AVX-512 pixel_span in the binning code of a CPU without AVX-512).
[[maybe_unused]] inline void instantiate_shared_math() {
  [[maybe_unused]] TileKernels<float> f32;
  [[maybe_unused]] TileKernels<double> f64;
  int lo, hi;
  pixel_span(0.0f, 1, 0, 1, &lo, &hi);
  pixel_span(0.0, 1, 0, 1, &lo, &hi);
}

}  // namespace ua3d::cpu
