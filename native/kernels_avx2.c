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

/* One Q1_0 block (sign masks already expanded, scale dw broadcast) against the four Q8_0
 * blocks of one activation row: exact integer sums per quarter, scaled by d_w * d_a into four
 * float lanes that are only reduced at the end. Summing in lanes instead of ggml's generic
 * per-block sequence changes the last bits, as ggml's own SIMD path does. */
static inline BN_AVX2 __m128 q1_0_block_dot(const __m256i clear[4], __m128 dw, const bn_block_q8_0 *y, __m128 acc) {
    __m256i v[4];
    for (int k = 0; k < 4; k++) v[k] = sum_i8(negate_where(_mm256_loadu_si256((const __m256i *)y[k].qs), clear[k]));
    __m256i h = _mm256_hadd_epi32(_mm256_hadd_epi32(v[0], v[1]), _mm256_hadd_epi32(v[2], v[3]));
    __m128i isum = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
    __m128 d8 = _mm_cvtph_ps(_mm_setr_epi16((short)y[0].d, (short)y[1].d, (short)y[2].d, (short)y[3].d, 0, 0, 0, 0));
    return _mm_fmadd_ps(_mm_mul_ps(d8, dw), _mm_cvtepi32_ps(isum), acc);
}

/* (v0 + v2) + (v1 + v3) */
static inline BN_AVX2 float hsum_ps128(__m128 v) {
    v = _mm_add_ps(v, _mm_movehl_ps(v, v));
    return _mm_cvtss_f32(_mm_add_ss(v, _mm_shuffle_ps(v, v, 1)));
}

BN_AVX2 void bn_vec_dot_q1_0_q8_0_avx2(int64_t n, float *s, const void *w, const void *a) {
    const bn_block_q1_0 *x = w;
    const bn_block_q8_0 *y = a;
    __m128 acc = _mm_setzero_ps();
    for (int64_t i = 0; i < n / BN_QK1_0; i++) {
        __m256i clear[4];
        sign_masks(x[i].qs, clear);
        acc = q1_0_block_dot(clear, _mm_set1_ps(_cvtsh_ss(x[i].d)), y + 4 * i, acc);
    }
    *s = hsum_ps128(acc);
}

/* Rows handled per pass over the batch: their weights (16 x 576 B at 4096 columns) stay in L1
 * while every token tile streams by. */
#define BN_Q1_ROW_TILE 16
/* Tokens sharing one expansion of a weight block's sign masks. */
#define BN_Q1_TOKEN_TILE 4

/* A batch of tokens: each weight block's sign masks are expanded once and applied to up to
 * four activation rows, with the same per-row arithmetic as the GEMV above. */
static BN_AVX2 void q1_0_rows_tokens(const bn_matrix *w, int64_t r, const uint8_t *act, size_t act_stride,
                                     int nt, float *y, int64_t y_stride) {
    const bn_block_q1_0 *x = (const bn_block_q1_0 *)(w->data + (size_t)r * w->row_bytes);
    __m128 acc[BN_Q1_TOKEN_TILE] = {_mm_setzero_ps(), _mm_setzero_ps(), _mm_setzero_ps(), _mm_setzero_ps()};
    for (int64_t i = 0; i < w->cols / BN_QK1_0; i++) {
        __m256i clear[4];
        sign_masks(x[i].qs, clear);
        __m128 dw = _mm_set1_ps(_cvtsh_ss(x[i].d));
        for (int t = 0; t < nt; t++)
            acc[t] = q1_0_block_dot(clear, dw, (const bn_block_q8_0 *)(act + (size_t)t * act_stride) + 4 * i, acc[t]);
    }
    for (int t = 0; t < nt; t++) y[t * y_stride + r] = hsum_ps128(acc[t]);
}

BN_AVX2 void bn_gemm_q1_0_q8_0_avx2(const bn_matrix *w, int64_t r0, int64_t r1, const void *act, size_t act_stride,
                                    int n_tokens, float *y, int64_t y_stride) {
    for (int64_t rb = r0; rb < r1; rb += BN_Q1_ROW_TILE) {
        int64_t re = rb + BN_Q1_ROW_TILE < r1 ? rb + BN_Q1_ROW_TILE : r1;
        for (int t0 = 0; t0 < n_tokens; t0 += BN_Q1_TOKEN_TILE) {
            int nt = n_tokens - t0 < BN_Q1_TOKEN_TILE ? n_tokens - t0 : BN_Q1_TOKEN_TILE;
            for (int64_t r = rb; r < re; r++)
                q1_0_rows_tokens(w, r, (const uint8_t *)act + (size_t)t0 * act_stride, act_stride, nt,
                                 y + (int64_t)t0 * y_stride, y_stride);
        }
    }
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
    *s = hsum_ps128(_mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1)));
}

/* TQ2_0 x Q8_K in the scalar reference's lane order (llama.cpp's x86 order): codes c in
 * {0,1,2} feed vpmaddubsw directly, the int16 lanes drop Q8_K's bsums (sum(c * q) - sum(q) =
 * sum(trit * q)), and vpmaddwd pairs them into the reference's eight lanes. Bit-identical to
 * bn_vec_dot_tq2_0_q8_K_scalar. */
BN_AVX2 void bn_vec_dot_tq2_0_q8_K_avx2(int64_t n, float *s, const void *w, const void *a) {
    const bn_block_tq2_0 *x = w;
    const bn_block_q8_K *y = a;
    const __m256i three = _mm256_set1_epi8(3);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / BN_QK_K; i++) {
        /* int16 is enough: a lane sums 16 products of at most 2 * 127 */
        __m256i s16 = _mm256_setzero_si256();
        for (int half = 0; half < 2; half++) {
            __m256i packed = _mm256_loadu_si256((const __m256i *)(x[i].qs + 32 * half));
            for (int l = 0; l < 4; l++) {
                __m256i codes = _mm256_and_si256(_mm256_srli_epi16(packed, 2 * l), three);
                __m256i q = _mm256_loadu_si256((const __m256i *)(y[i].qs + 128 * half + 32 * l));
                s16 = _mm256_add_epi16(s16, _mm256_maddubs_epi16(codes, q));
            }
        }
        s16 = _mm256_sub_epi16(s16, _mm256_loadu_si256((const __m256i *)y[i].bsums));
        __m256i lanes = _mm256_madd_epi16(s16, _mm256_set1_epi16(1));
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(lanes), _mm256_set1_ps(y[i].d * _cvtsh_ss(x[i].d)), acc);
    }
    /* the reference's reduction: (l0+l4 + l2+l6) + (l1+l5 + l3+l7) */
    *s = hsum_ps128(_mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1)));
}

#endif
