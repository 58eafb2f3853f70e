/* x86 AVX2 kernels. The file is built into every x86 binary without -mavx2: each function
 * carries its own target attribute and is only reached when bn_isa_select found AVX2, FMA
 * and F16C at run time. */
#include "kernels_impl.h"

#if defined(BN_HAVE_AVX2_KERNELS)
#include <immintrin.h>
#include "quants.h"

#define BN_AVX2 __attribute__((target("avx2,fma,f16c")))

/* Sign masks of one Q1_0 block: byte j of clear[k] is 0xFF where weight 32k + j has its bit
 * clear (weight -d). The block's 16 bit-bytes are broadcast once and each Q8_0 quarter picks
 * its 4 bytes, spreading each over 8 lanes, then isolates one bit per lane. */
static inline BN_AVX2 void sign_masks(const uint8_t qs[16], __m256i clear[4]) {
    const __m256i select = _mm256_set1_epi64x(0x8040201008040201LL);
    __m256i bytes = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)qs));
    for (int k = 0; k < 4; k++) {
        const __m256i spread = _mm256_add_epi8(_mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                                                                2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3),
                                               _mm256_set1_epi8((char)(4 * k)));
        __m256i b = _mm256_and_si256(_mm256_shuffle_epi8(bytes, spread), select);
        clear[k] = _mm256_cmpeq_epi8(b, _mm256_setzero_si256());
    }
}

/* q negated where the mask is set: (q ^ m) - m. */
static inline BN_AVX2 __m256i negate_where(__m256i q, __m256i m) {
    return _mm256_sub_epi8(_mm256_xor_si256(q, m), m);
}

/* Eight int32 partial sums of 32 int8 values. */
static inline BN_AVX2 __m256i sum_i8(__m256i v) {
    __m256i pairs = _mm256_maddubs_epi16(_mm256_set1_epi8(1), v);
    return _mm256_madd_epi16(pairs, _mm256_set1_epi16(1));
}

/* Q1_0 x Q8_0: exact integer sums per Q8_0 quarter, scaled by d_w * d_a into four float lanes
 * that are only reduced at the end. Summing in lanes instead of ggml's generic per-block
 * sequence changes the last bits (as ggml's own SIMD path does) and is ~25% faster. */
BN_AVX2 void bn_vec_dot_q1_0_q8_0_avx2(int64_t n, float *s, const void *w, const void *a) {
    const bn_block_q1_0 *x = w;
    const bn_block_q8_0 *y = a;
    __m128 acc = _mm_setzero_ps();
    for (int64_t i = 0; i < n / BN_QK1_0; i++, y += 4) {
        __m256i clear[4], v[4];
        sign_masks(x[i].qs, clear);
        for (int k = 0; k < 4; k++) v[k] = sum_i8(negate_where(_mm256_loadu_si256((const __m256i *)y[k].qs), clear[k]));
        __m256i h = _mm256_hadd_epi32(_mm256_hadd_epi32(v[0], v[1]), _mm256_hadd_epi32(v[2], v[3]));
        __m128i isum = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
        __m128 d8 = _mm_cvtph_ps(_mm_setr_epi16((short)y[0].d, (short)y[1].d, (short)y[2].d, (short)y[3].d, 0, 0, 0, 0));
        acc = _mm_fmadd_ps(_mm_mul_ps(d8, _mm_set1_ps(_cvtsh_ss(x[i].d))), _mm_cvtepi32_ps(isum), acc);
    }
    acc = _mm_add_ps(acc, _mm_movehl_ps(acc, acc));
    acc = _mm_add_ss(acc, _mm_shuffle_ps(acc, acc, 1));
    *s = _mm_cvtss_f32(acc);
}

#endif
