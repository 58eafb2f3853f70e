/* aarch64 NEON attention tile (baseline armv8-a, so every board: Pi 3/4/5, Jetson). fp16 cache
 * entries are widened in registers (fcvtl) as they are loaded: no F32 copy. Same structure and
 * guarantees as attention_avx2.c, and the scalar reference's arithmetic throughout (as compiled
 * for aarch64, where GCC fuses its multiply-adds): the same bits. The quantized-activation
 * models of test_forward showed a rounding flip against llama.cpp (0.024 logit) with
 * lane-parallel dot products and a polynomial exp; the reference order does not. */
#include "attention/attention_impl.h"

#if defined(BN_HAVE_ARM_KERNELS)
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

/* Scores of 4 query rows (one per lane; qt holds them transposed, 4 * hd floats) against 8 keys:
 * s[r * ss + c] = q_r . k_c. Lanes are rows, so each score is one fused multiply-add per element
 * in element order: the scalar reference's sum (GCC contracts it to the same fmadd chain). */
BN_INLINE void scores_4x8(const float *qt, const void *const *k, int f16, int hd, float *s, size_t ss, int R) {
    float32x4_t acc[8];
    for (int c = 0; c < 8; c++) acc[c] = vdupq_n_f32(0.0f);
    for (int d = 0; d < hd; d += 4) {
        const float32x4_t q0 = vld1q_f32(qt + 4 * d), q1 = vld1q_f32(qt + 4 * d + 4);
        const float32x4_t q2 = vld1q_f32(qt + 4 * d + 8), q3 = vld1q_f32(qt + 4 * d + 12);
        for (int c = 0; c < 8; c++) {
            const float32x4_t kv = load4(k[c], d, f16);
            acc[c] = vfmaq_laneq_f32(acc[c], q0, kv, 0);
            acc[c] = vfmaq_laneq_f32(acc[c], q1, kv, 1);
            acc[c] = vfmaq_laneq_f32(acc[c], q2, kv, 2);
            acc[c] = vfmaq_laneq_f32(acc[c], q3, kv, 3);
        }
    }
    float out[8][4];
    for (int c = 0; c < 8; c++) vst1q_f32(out[c], acc[c]);
    for (int r = 0; r < R; r++)
        for (int c = 0; c < 8; c++) s[r * ss + c] = out[c][r];
}

/* Scores of rows r0 .. r0 + R - 1 (R <= 4) for keys in eights; the last group repeats the last key
 * (the duplicates land in the padding). */
BN_INLINE void scores(const bn_attn_tile *t, int r0, int R, int f16, float *qt) {
    const int nk = t->n_kv[r0 + R - 1], hd = t->head_dim;
    for (int d = 0; d < hd; d++)
        for (int r = 0; r < 4; r++) qt[4 * d + r] = t->q[r0 + (r < R ? r : 0)][d];
    float *s = t->s + (size_t)r0 * t->s_stride;
    for (int j = 0; j < nk; j += 8) {
        const void *k[8];
        for (int c = 0; c < 8; c++) k[c] = kv_row(t, t->k, j + c < nk ? j + c : nk - 1, f16);
        scores_4x8(qt, k, f16, hd, s + j, t->s_stride, R);
    }
}

/* Row r's scores become its weights softmax(scale * s), zero from n_kv[r] up to n_zero (the keys
 * later rows of the tile read): the scalar reference's arithmetic (libm expf, sum in double), so
 * with the scores and the weighted sums the NEON tile gives the reference's bits. */
BN_INLINE void softmax_row(const bn_attn_tile *t, int r, int n_zero) {
    float *s = t->s + (size_t)r * t->s_stride;
    const int n = t->n_kv[r];
    float max = -INFINITY;
    for (int j = 0; j < n; j++) max = s[j] > max ? s[j] : max;
    double sum = 0.0;
    for (int j = 0; j < n; j++) {
        s[j] = expf((s[j] - max) * t->scale);
        sum += s[j];
    }
    const float inv = (float)(1.0 / sum);
    for (int j = 0; j < n; j++) s[j] *= inv;
    for (int j = n; j < n_zero; j++) s[j] = 0.0f;
}

/* out_r[d .. d + 4D) += sum over keys j in [j0, j1) of w_r[j] v_j (from 0 when j0 is 0), for R
 * rows: one fused multiply-add per key in key order for every output, whatever R, D and the key
 * blocks. */
BN_INLINE void values_rxd(const bn_attn_tile *t, int r0, int R, int d, int D, int f16, int j0, int j1) {
    const float *w = t->s + (size_t)r0 * t->s_stride;
    float32x4_t acc[4][4];
    for (int r = 0; r < R; r++)
        for (int i = 0; i < D; i++) acc[r][i] = j0 ? vld1q_f32(t->out[r0 + r] + d + 4 * i) : vdupq_n_f32(0.0f);
    for (int j = j0; j < j1; j++) {
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

BN_INLINE void values(const bn_attn_tile *t, int r0, int R, int f16, int j0, int j1) {
    int d = 0;
    for (; d + 16 <= t->head_dim; d += 16) {
        if (R == 4) values_rxd(t, r0, 4, d, 4, f16, j0, j1);
        else if (R == 2) values_rxd(t, r0, 2, d, 4, f16, j0, j1);
        else values_rxd(t, r0, 1, d, 4, f16, j0, j1);
    }
    for (; d < t->head_dim; d += 4) {
        if (R == 4) values_rxd(t, r0, 4, d, 1, f16, j0, j1);
        else if (R == 2) values_rxd(t, r0, 2, d, 1, f16, j0, j1);
        else values_rxd(t, r0, 1, d, 1, f16, j0, j1);
    }
}

/* Rows in blocks of 4 (then 2, 1) that share every K and V load. */
static int block_rows(int left) { return left >= 4 ? 4 : left >= 2 ? 2 : 1; }

BN_INLINE void tile(const bn_attn_tile *t, int f16) {
    for (int r0 = 0; r0 < t->n_rows; r0 += block_rows(t->n_rows - r0)) scores(t, r0, block_rows(t->n_rows - r0), f16, t->pack);
    for (int r = 0; r < t->n_rows; r++) softmax_row(t, r, t->n_kv[t->n_rows - 1]);
    /* Values key block by key block: values() sweeps its keys once per 16 outputs, which over a
     * whole long context would fetch every value row from memory again on each sweep. */
    const int nk = t->n_kv[t->n_rows - 1];
    for (int b0 = 0; b0 < nk; b0 += BN_ATTN_KEY_BLOCK)
        for (int r0 = 0; r0 < t->n_rows; r0 += block_rows(t->n_rows - r0)) {
            const int R = block_rows(t->n_rows - r0), last = t->n_kv[r0 + R - 1];
            const int j1 = last < b0 + BN_ATTN_KEY_BLOCK ? last : b0 + BN_ATTN_KEY_BLOCK;
            if (j1 > b0) values(t, r0, R, f16, b0, j1);
        }
}

void bn_attn_tile_neon(const bn_attn_tile *t) {
    if (t->kv_f16) tile(t, 1);
    else tile(t, 0);
}

#endif
