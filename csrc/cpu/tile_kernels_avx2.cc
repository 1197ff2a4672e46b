// Tile kernels for x86-64-v3 (AVX2, FMA unused: -ffp-contract=off): 8 float lanes.
#include "cpu/tile_kernels.h"

#if UA3D_X86_LEVELS
#pragma GCC target("arch=x86-64-v3")
#define UA3D_ISA avx2
#define UA3D_VEC_BYTES 32
#include "cpu/tile_kernels_isa.inc"
#endif
