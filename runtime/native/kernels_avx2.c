/* The AVX2 path (x86-64): kernels.c again with AVX2 and FMA enabled for this file alone, chosen at run time
 * where the CPU has them (engine.c); the rest of the library stays baseline x86-64 (SSE2).
 *
 * The Makefile compiles this file with -mavx2 -mfma. Built on one cc line with the other sources (README),
 * gcc enables them through the pragma below; clang has no such pragma, so a one-line clang build has no
 * AVX2 path (lmn_kernels_avx2 is NULL) and runs SSE2. FP contraction stays off (-ffp-contract=off), so
 * FMA changes nothing but speed. */
#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__) && !defined(__clang__) && !defined(__AVX2__) && \
    !defined(LMN_NO_SIMD)
#pragma GCC target("avx2,fma")
#endif
#include "model.h"

#if (defined(__x86_64__) || defined(__i386__)) && defined(__AVX2__) && defined(__FMA__) && defined(LMN_PAIRS)
#define LMN_KERNEL_COPY 1
#define LMN_EXECUTE lmn_execute_avx2
#include "kernels.c"
const lmn_execute_fn lmn_kernels_avx2 = lmn_execute_avx2;
#else
const lmn_execute_fn lmn_kernels_avx2 = NULL;
#endif
