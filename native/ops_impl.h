/* Private: the SIMD versions of ops.c's loops, chosen at run time by ops.c. */
#ifndef BN_OPS_IMPL_H
#define BN_OPS_IMPL_H

#include <stdint.h>

#if defined(__x86_64__) && defined(__GNUC__)
#define BN_HAVE_AVX2_OPS 1
void bn_axpy_f32_avx2(float *y, float a, const float *x, int n);
void bn_fp16_to_fp32_row_avx2(const uint16_t *h, float *out, int n);
#endif

#endif
