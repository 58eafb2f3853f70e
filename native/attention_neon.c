/* aarch64 NEON attention tile (baseline armv8-a, so every board: Pi 3/4/5, Jetson). fp16 cache
 * entries are widened in registers (fcvtl) as they are loaded: no F32 copy. Same structure and
 * guarantees as attention_avx2.c, with 4-lane vectors and 32 registers. */
#include "attention_impl.h"

#if defined(BN_HAVE_NEON_ATTN)
#include <arm_neon.h>
#include <math.h>

#define BN_INLINE static inline __attribute__((always_inline))

BN_INLINE const void *kv_row(const bn_attn_tile *t, const void *base, int pos, int f16) {
    return (const char *)base + (size_t)pos * t->kv_stride * (f16 ? 2 : 4);
}

BN_INLINE float32x4_t load4(const void *row, int i, int f16) {
    if (f16) return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16((const uint16_t *)row + i)));
    return vld1q_f32((const float *)row + i);
}

/* Scores of R query rows against 4 keys: s[r * ss + c] = q_r . k_c. Each (row, key) pair is summed
 * in 4 lanes over head_dim, then the lanes by one fixed pairwise tree, so a score does not depend
 * on R or on the keys it is grouped with. */
BN_INLINE void scores_rx4(const float *const *q, int R, const void *const *k, int f16, int hd, float *s, size_t ss) {
    float32x4_t acc[4][4];
    for (int r = 0; r < R; r++)
        for (int c = 0; c < 4; c++) acc[r][c] = vdupq_n_f32(0.0f);
    for (int d = 0; d < hd; d += 4) {
        float32x4_t kv[4];
        for (int c = 0; c < 4; c++) kv[c] = load4(k[c], d, f16);
        for (int r = 0; r < R; r++) {
            const float32x4_t x = vld1q_f32(q[r] + d);
            for (int c = 0; c < 4; c++) acc[r][c] = vfmaq_f32(acc[r][c], x, kv[c]);
        }
    }
    for (int r = 0; r < R; r++)
        vst1q_f32(s + r * ss, vpaddq_f32(vpaddq_f32(acc[r][0], acc[r][1]), vpaddq_f32(acc[r][2], acc[r][3])));
}

/* Keys in fours; the last group repeats the last key (the duplicates land in the padding). */
BN_INLINE void scores(const bn_attn_tile *t, int r0, int R, int f16) {
    const int nk = t->n_kv[r0 + R - 1];
    float *s = t->s + (size_t)r0 * t->s_stride;
    for (int j = 0; j < nk; j += 4) {
        const void *k[4];
        for (int c = 0; c < 4; c++) k[c] = kv_row(t, t->k, j + c < nk ? j + c : nk - 1, f16);
        if (R == 4) scores_rx4(t->q + r0, 4, k, f16, t->head_dim, s + j, t->s_stride);
        else if (R == 2) scores_rx4(t->q + r0, 2, k, f16, t->head_dim, s + j, t->s_stride);
        else scores_rx4(t->q + r0, 1, k, f16, t->head_dim, s + j, t->s_stride);
    }
}

/* e^x for x <= 0 (and -inf), as exp8 in attention_avx2.c: x = n ln2 + f, degree-7 Taylor
 * polynomial of e^f, 2^n in the exponent bits, 0 below -87.33. */
BN_INLINE float32x4_t exp4(float32x4_t x) {
    const float32x4_t lo = vdupq_n_f32(-87.33f);
    const uint32x4_t keep = vcgeq_f32(x, lo);
    x = vmaxq_f32(x, lo);
    const float32x4_t n = vrndnq_f32(vmulq_n_f32(x, 1.44269504f));
    float32x4_t f = vfmsq_f32(x, n, vdupq_n_f32(0.693145751953125f));
    f = vfmsq_f32(f, n, vdupq_n_f32(1.428606820309417e-6f));
    float32x4_t p = vdupq_n_f32(1.0f / 5040);
    p = vfmaq_f32(vdupq_n_f32(1.0f / 720), p, f);
    p = vfmaq_f32(vdupq_n_f32(1.0f / 120), p, f);
    p = vfmaq_f32(vdupq_n_f32(1.0f / 24), p, f);
    p = vfmaq_f32(vdupq_n_f32(1.0f / 6), p, f);
    p = vfmaq_f32(vdupq_n_f32(0.5f), p, f);
    p = vfmaq_f32(vdupq_n_f32(1.0f), p, f);
    p = vfmaq_f32(vdupq_n_f32(1.0f), p, f);
    const int32x4_t e = vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127)), 23);
    const float32x4_t y = vmulq_f32(p, vreinterpretq_f32_s32(e));
    return vreinterpretq_f32_u32(vandq_u32(vreinterpretq_u32_f32(y), keep));
}

/* Row r's scores become its weights softmax(scale * s), zero from n_kv[r] up to n_zero (the keys
 * later rows of the tile read); normalized here, as in attention_avx2.c. */
BN_INLINE void softmax_row(const bn_attn_tile *t, int r, int n_zero) {
    float *s = t->s + (size_t)r * t->s_stride;
    const int n = t->n_kv[r], n4 = (n + 3) & ~3;
    for (int j = n; j < n4; j++) s[j] = -INFINITY;
    float32x4_t vmax = vdupq_n_f32(-INFINITY);
    for (int j = 0; j < n4; j += 4) vmax = vmaxq_f32(vmax, vld1q_f32(s + j));
    const float32x4_t max = vdupq_n_f32(vmaxvq_f32(vmax));
    float32x4_t sum = vdupq_n_f32(0.0f);
    for (int j = 0; j < n4; j += 4) {
        const float32x4_t e = exp4(vmulq_n_f32(vsubq_f32(vld1q_f32(s + j), max), t->scale));
        vst1q_f32(s + j, e);
        sum = vaddq_f32(sum, e);
    }
    const float inv = 1.0f / vaddvq_f32(sum);
    for (int j = 0; j < n4; j += 4) vst1q_f32(s + j, vmulq_n_f32(vld1q_f32(s + j), inv));
    for (int j = n4; j < n_zero; j++) s[j] = 0.0f;
}

/* out_r[d .. d + 4D) = sum over keys j of w_r[j] v_j, for R rows: one fused multiply-add per key
 * in key order for every output, whatever R and D. */
BN_INLINE void values_rxd(const bn_attn_tile *t, int r0, int R, int d, int D, int f16) {
    const int nk = t->n_kv[r0 + R - 1];
    const float *w = t->s + (size_t)r0 * t->s_stride;
    float32x4_t acc[4][4];
    for (int r = 0; r < R; r++)
        for (int i = 0; i < D; i++) acc[r][i] = vdupq_n_f32(0.0f);
    for (int j = 0; j < nk; j++) {
        const void *row = kv_row(t, t->v, j, f16);
        float32x4_t v[4];
        for (int i = 0; i < D; i++) v[i] = load4(row, d + 4 * i, f16);
        for (int r = 0; r < R; r++) {
            const float p = w[r * t->s_stride + j];
            for (int i = 0; i < D; i++) acc[r][i] = vfmaq_n_f32(acc[r][i], v[i], p);
        }
    }
    for (int r = 0; r < R; r++)
        for (int i = 0; i < D; i++) vst1q_f32(t->out[r0 + r] + d + 4 * i, acc[r][i]);
}

BN_INLINE void values(const bn_attn_tile *t, int r0, int R, int f16) {
    int d = 0;
    for (; d + 16 <= t->head_dim; d += 16) {
        if (R == 4) values_rxd(t, r0, 4, d, 4, f16);
        else if (R == 2) values_rxd(t, r0, 2, d, 4, f16);
        else values_rxd(t, r0, 1, d, 4, f16);
    }
    for (; d < t->head_dim; d += 4) {
        if (R == 4) values_rxd(t, r0, 4, d, 1, f16);
        else if (R == 2) values_rxd(t, r0, 2, d, 1, f16);
        else values_rxd(t, r0, 1, d, 1, f16);
    }
}

/* Rows in blocks of 4 (then 2, 1) that share every K and V load. */
static int block_rows(int left) { return left >= 4 ? 4 : left >= 2 ? 2 : 1; }

BN_INLINE void tile(const bn_attn_tile *t, int f16) {
    for (int r0 = 0; r0 < t->n_rows; r0 += block_rows(t->n_rows - r0)) scores(t, r0, block_rows(t->n_rows - r0), f16);
    for (int r = 0; r < t->n_rows; r++) softmax_row(t, r, t->n_kv[t->n_rows - 1]);
    for (int r0 = 0; r0 < t->n_rows; r0 += block_rows(t->n_rows - r0)) values(t, r0, block_rows(t->n_rows - r0), f16);
}

void bn_attn_tile_neon(const bn_attn_tile *t) {
    if (t->kv_f16) tile(t, 1);
    else tile(t, 0);
}

#endif
