/* x86 AVX2 kernels. The file is built into every x86 binary without -mavx2: each function
 * carries its own target attribute and is only reached when bn_isa_select found AVX2, FMA
 * and F16C at run time. */
#include "kernels_impl.h"

#if defined(BN_HAVE_AVX2_KERNELS)
#include <immintrin.h>
#include <string.h>
#include "quants.h"

/* Rounding must stay step for step as in the scalar reference: no fused multiply-adds. */
#pragma GCC optimize("fp-contract=off")

#define BN_AVX2 __attribute__((target("avx2,fma,f16c")))

/* The 32 int8 activations of q, negated where the matching bit of `bits` is clear
 * (bit j of the little-endian word selects element j). */
static inline BN_AVX2 __m256i apply_signs(uint32_t bits, __m256i q) {
    const __m256i spread = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                                            2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    const __m256i select = _mm256_set1_epi64x(0x8040201008040201LL);
    __m256i b = _mm256_shuffle_epi8(_mm256_set1_epi32((int)bits), spread);
    __m256i clear = _mm256_cmpeq_epi8(_mm256_and_si256(b, select), _mm256_setzero_si256());
    /* +1 where set, -1 where clear; Q8_0 values stay within [-127, 127], so no -128 overflow */
    return _mm256_sign_epi8(q, _mm256_or_si256(clear, _mm256_set1_epi8(1)));
}

/* Eight int32 partial sums of 32 int8 values. */
static inline BN_AVX2 __m256i sum_i8(__m256i v) {
    __m256i pairs = _mm256_maddubs_epi16(_mm256_set1_epi8(1), v);
    return _mm256_madd_epi16(pairs, _mm256_set1_epi16(1));
}

/* Q1_0 x Q8_0: the four integer block sums are formed in SIMD registers; the float scaling
 * then runs in the scalar reference's order, so the result is bit-identical to it. */
BN_AVX2 void bn_vec_dot_q1_0_q8_0_avx2(int64_t n, float *s, const void *w, const void *a) {
    const bn_block_q1_0 *x = w;
    const bn_block_q8_0 *y = a;
    float sumf = 0.0f;
    for (int64_t i = 0; i < n / BN_QK1_0; i++, y += 4) {
        __m256i v[4];
        for (int k = 0; k < 4; k++) {
            uint32_t bits;
            memcpy(&bits, &x[i].qs[4 * k], 4);
            v[k] = sum_i8(apply_signs(bits, _mm256_loadu_si256((const __m256i *)y[k].qs)));
        }
        __m256i h = _mm256_hadd_epi32(_mm256_hadd_epi32(v[0], v[1]), _mm256_hadd_epi32(v[2], v[3]));
        __m128i isum = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
        __m128 d8 = _mm_cvtph_ps(_mm_setr_epi16((short)y[0].d, (short)y[1].d, (short)y[2].d, (short)y[3].d, 0, 0, 0, 0));
        float p[4];
        _mm_storeu_ps(p, _mm_mul_ps(d8, _mm_cvtepi32_ps(isum)));
        float partial = 0.0f;
        for (int k = 0; k < 4; k++) partial += p[k];
        sumf += _cvtsh_ss(x[i].d) * partial;
    }
    *s = sumf;
}

#endif
