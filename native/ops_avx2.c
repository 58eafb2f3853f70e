/* x86 AVX2 + F16C versions of attention loops with the scalar arithmetic, so results are
 * bit-identical (ops.c dispatches to them at run time; the file is built into every x86 binary
 * without -mavx2, each function carrying its own target attribute). */
#include "ops_impl.h"

#if defined(BN_HAVE_AVX2_OPS)
#include <immintrin.h>

#define BN_AVX2 __attribute__((target("avx2,f16c")))

/* Multiply, then add (no fused multiply-add): the same roundings as the scalar loop. */
BN_AVX2 void bn_axpy_f32_avx2(float *y, float a, const float *x, int n) {
    const __m256 va = _mm256_set1_ps(a);
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(y + i), _mm256_mul_ps(va, _mm256_loadu_ps(x + i))));
    for (; i < n; i++) y[i] += a * x[i];
}

/* vcvtph2ps is exact (every fp16 value is an f32 value), as the scalar conversion. */
BN_AVX2 void bn_fp16_to_fp32_row_avx2(const uint16_t *h, float *out, int n) {
    int i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + i))));
    for (; i < n; i++) out[i] = _cvtsh_ss(h[i]);
}

#endif
