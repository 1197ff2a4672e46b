// Tile kernels for x86-64-v4 (AVX-512): 16 float lanes, one register a 4 x 4 pixel block.
#include "cpu/tile_kernels.h"

#if UA3D_X86_LEVELS
#pragma GCC target("arch=x86-64-v4")
#define UA3D_ISA avx512
#define UA3D_VEC_BYTES 64
#include "cpu/tile_kernels_isa.inc"
#endif
