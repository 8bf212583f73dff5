/* The portable path: kernels.c again without SIMD dot products (plain C loops, the same integers), so that
 * one build can be forced onto them (LIMUSE_NATIVE_ISA=portable) and the tests compare every path. */
#define LMN_KERNEL_COPY 1
#define LMN_KERNEL_PORTABLE 1
#define LMN_EXECUTE lmn_execute_portable
#include "kernels.c"
