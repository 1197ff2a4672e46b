// Tile kernels for the build's own target (SSE2 on x86-64; NEON and others elsewhere): 16-byte
// vectors, 4 float lanes. The fallback of every CPU and the only level off x86-64 GCC.
#include "cpu/tile_kernels.h"

#define UA3D_ISA baseline
#define UA3D_VEC_BYTES 16
#include "cpu/tile_kernels_isa.inc"
