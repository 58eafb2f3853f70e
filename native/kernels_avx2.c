/* x86 AVX2 kernels. The file is built into every x86 binary without -mavx2: each function
 * carries its own target attribute and is only reached when bn_isa_select found AVX2, FMA
 * and F16C at run time. */
#include "kernels_impl.h"

#if defined(BN_HAVE_AVX2_KERNELS)
#include <immintrin.h>
#include "quants.h"

/* Scalar float steps round as written (explicit _fmadd_ intrinsics are unaffected), so a
 * kernel that keeps the reference's float sequence stays bit-identical to it. */
#pragma GCC optimize("fp-contract=off")

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

/* Sum of the eight int32 lanes. */
static inline BN_AVX2 int hsum_i32(__m256i v) {
    __m128i x = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    x = _mm_add_epi32(x, _mm_shuffle_epi32(x, _MM_SHUFFLE(1, 0, 3, 2)));
    x = _mm_add_epi32(x, _mm_shuffle_epi32(x, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(x);
}

/* Q8_0 x Q8_0: |w| times a with w's sign moved onto a (vpmaddubsw needs one unsigned side),
 * float lanes accumulated as in ggml's SIMD path. */
BN_AVX2 void bn_vec_dot_q8_0_q8_0_avx2(int64_t n, float *s, const void *w, const void *a) {
    const bn_block_q8_0 *x = w, *y = a;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / BN_QK8_0; i++) {
        __m256i qx = _mm256_loadu_si256((const __m256i *)x[i].qs);
        __m256i qy = _mm256_loadu_si256((const __m256i *)y[i].qs);
        __m256i pairs = _mm256_maddubs_epi16(_mm256_sign_epi8(qx, qx), _mm256_sign_epi8(qy, qx));
        __m256i isum = _mm256_madd_epi16(pairs, _mm256_set1_epi16(1));
        __m256 d = _mm256_set1_ps(_cvtsh_ss(x[i].d) * _cvtsh_ss(y[i].d));
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(isum), acc);
    }
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_shuffle_ps(h, h, 1));
    *s = _mm_cvtss_f32(h);
}

/* TQ2_0 x Q8_K: codes c in {0,1,2} stand for c - 1, so the block's integer dot is
 * sum(c * q) - sum(q), the second term read from Q8_K's bsums. The float step is the
 * reference's, so the result is bit-identical to the scalar path. */
BN_AVX2 void bn_vec_dot_tq2_0_q8_K_avx2(int64_t n, float *s, const void *w, const void *a) {
    const bn_block_tq2_0 *x = w;
    const bn_block_q8_K *y = a;
    const __m256i three = _mm256_set1_epi8(3), ones16 = _mm256_set1_epi16(1);
    float sumf = 0.0f;
    for (int64_t i = 0; i < n / BN_QK_K; i++) {
        __m256i acc = _mm256_setzero_si256();
        for (int half = 0; half < 2; half++) {
            __m256i packed = _mm256_loadu_si256((const __m256i *)(x[i].qs + 32 * half));
            for (int l = 0; l < 4; l++) {
                __m256i codes = _mm256_and_si256(_mm256_srli_epi16(packed, 2 * l), three);
                __m256i q = _mm256_loadu_si256((const __m256i *)(y[i].qs + 128 * half + 32 * l));
                acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(codes, q), ones16));
            }
        }
        __m256i bsums = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)y[i].bsums), ones16);
        int isum = hsum_i32(acc) - hsum_i32(bsums);
        sumf += (float)isum * (_cvtsh_ss(x[i].d) * y[i].d);
    }
    *s = sumf;
}

#endif
