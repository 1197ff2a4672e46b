// Picks the tile kernels' instruction-set level (tile_kernels.h): the widest the CPU runs,
// capped by UA3D_CPU_ISA (avx512, avx2 or baseline; read at every call).
#include <cstdlib>
#include <cstring>

#include "cpu/tile_kernels.h"

namespace ua3d::cpu {
namespace {

// Widest first; a level runs where the CPU supports it.
#if UA3D_X86_LEVELS
constexpr int kLevels = 3;
constexpr const char* kNames[kLevels] = {"avx512", "avx2", "baseline"};
#else
constexpr int kLevels = 1;
constexpr const char* kNames[kLevels] = {"baseline"};
#endif

// Index into kNames of the widest level this CPU runs.
int widest_supported() {
#if UA3D_X86_LEVELS
  __builtin_cpu_init();
  if (__builtin_cpu_supports("x86-64-v4")) return 0;
  if (__builtin_cpu_supports("x86-64-v3")) return 1;
#endif
  return kLevels - 1;
}

int level_index(const char* isa) {
  for (int i = 0; i < kLevels; ++i)
    if (std::strcmp(isa, kNames[i]) == 0) return i;
  return -1;
}

template <typename T>
struct Levels {
  TileKernels<T> k[kLevels];
};

Levels<float> make_levels(float) {
#if UA3D_X86_LEVELS
  return {{avx512::kernels_f32(), avx2::kernels_f32(), baseline::kernels_f32()}};
#else
  return {{baseline::kernels_f32()}};
#endif
}

Levels<double> make_levels(double) {
#if UA3D_X86_LEVELS
  return {{avx512::kernels_f64(), avx2::kernels_f64(), baseline::kernels_f64()}};
#else
  return {{baseline::kernels_f64()}};
#endif
}

template <typename T>
const Levels<T>& levels() {
  static const Levels<T> all = make_levels(T(0));
  return all;
}

int supported() {
  static const int widest = widest_supported();
  return widest;
}

}  // namespace

template <typename T>
const TileKernels<T>& tile_kernels() {
  int level = supported();
  if (const char* env = std::getenv("UA3D_CPU_ISA"); env != nullptr && env[0] != '\0') {
    const int requested = level_index(env);
    if (requested > level) level = requested;  // a narrower level than the widest
  }
  return levels<T>().k[level];
}

template <typename T>
const TileKernels<T>* tile_kernels_named(const char* isa) {
  const int level = level_index(isa);
  return level >= supported() ? &levels<T>().k[level] : nullptr;
}

bool tile_isa_env_ok() {
  const char* env = std::getenv("UA3D_CPU_ISA");
  return env == nullptr || env[0] == '\0' || level_index(env) >= 0;
}

const char* const* tile_isas(int* count) {
  *count = kLevels - supported();
  return kNames + supported();
}

template const TileKernels<float>& tile_kernels<float>();
template const TileKernels<double>& tile_kernels<double>();
template const TileKernels<float>* tile_kernels_named<float>(const char*);
template const TileKernels<double>* tile_kernels_named<double>(const char*);

}  // namespace ua3d::cpu
