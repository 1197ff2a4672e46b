// Stands in for the CUDA runtime header when csrc/cuda is compiled by g++ for the CPU
// emulation (this directory is on the include path only then).
#pragma once
#include "emu/cuda_emu.h"
