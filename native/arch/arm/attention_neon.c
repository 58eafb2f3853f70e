/* aarch64 NEON attention tile (baseline armv8-a, so every board: Pi 3/4/5, Jetson). fp16 cache
 * entries are widened in registers (fcvtl) as they are loaded: no F32 copy. The arithmetic of
 * arch/x86/attention_avx2.c, lane for lane, so both give the same bits (test_attention holds each
 * to one scalar model of it): a score is summed in 8 lanes over head_dim (here two registers of
 * 4) and the lanes by the AVX2 tile's tree; the weights come from its exp polynomial, summed in 8
 * lanes by the same tree; each output is one fused multiply-add per key, in key order. Sharing
 * the x86 order (rather than the scalar reference's, one chain per score) lets a lane hold a
 * part of a score instead of one query row: in decode a KV group has only 2 query rows. */
#include "attention/attention_impl.h"

#if defined(BN_HAVE_ARM_KERNELS)
#include <arm_neon.h>
#include <math.h>

#define BN_INLINE static inline __attribute__((always_inline))
/* No scheduling before register allocation: it hoists a step's loads so early that the 16
 * accumulators run out of registers and the loads are issued again (decode at context 512,
 * cortex-a72: 30.7 M instructions of attention per token with it, 27.9 M without). */
#pragma GCC optimize("no-schedule-insns")

BN_INLINE const void *kv_row(const bn_attn_tile *t, const void *base, int pos, int f16) {
    return (const char *)base + (size_t)pos * t->kv_stride * (f16 ? 2 : 4);
}

/* 4n elements of a row from p on (n <= 4) as F32 in v[0 .. n): F32 by ld1 of 4 registers or by
 * single loads (paired by the compiler), fp16 by ld1 of 8 or 16 halves widened in registers. */
BN_INLINE void load_row(const void *p, int n, int f16, float32x4_t *v) {
    int i = 0;
    if (f16) {
        const uint16_t *h = p;
        for (; i + 4 <= n; i += 4) {
            const uint16x8x2_t x = vld1q_u16_x2(h + 4 * i);
            v[i] = vcvt_f32_f16(vget_low_f16(vreinterpretq_f16_u16(x.val[0])));
            v[i + 1] = vcvt_high_f32_f16(vreinterpretq_f16_u16(x.val[0]));
            v[i + 2] = vcvt_f32_f16(vget_low_f16(vreinterpretq_f16_u16(x.val[1])));
            v[i + 3] = vcvt_high_f32_f16(vreinterpretq_f16_u16(x.val[1]));
        }
        for (; i + 2 <= n; i += 2) {
            const float16x8_t x = vreinterpretq_f16_u16(vld1q_u16(h + 4 * i));
            v[i] = vcvt_f32_f16(vget_low_f16(x));
            v[i + 1] = vcvt_high_f32_f16(x);
        }
        if (i < n) v[i] = vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(h + 4 * i)));
        return;
    }
    const float *f = p;
    for (; i + 4 <= n; i += 4) {
        const float32x4x4_t x = vld1q_f32_x4(f + 4 * i);
        for (int j = 0; j < 4; j++) v[i + j] = x.val[j];
    }
    for (; i < n; i++) v[i] = vld1q_f32(f + 4 * i);
}

/* Elements d .. d + 7 of scores_rxk's sums (qp and kp then move on by 8 elements). */
BN_INLINE void scores_step(const float **qp, int R, const char **kp, int K, int f16, float32x4_t lo[4][4],
                           float32x4_t hi[4][4]) {
    float32x4_t kv[4][2];
    for (int c = 0; c < K; c++) {
        load_row(kp[c], 2, f16, kv[c]);
        kp[c] += f16 ? 16 : 32;
    }
    for (int r = 0; r < R; r++) {
        float32x4_t qv[2];
        load_row(qp[r], 2, 0, qv);
        qp[r] += 8;
        for (int c = 0; c < K; c++) {
            lo[r][c] = vfmaq_f32(lo[r][c], qv[0], kv[c][0]);
            hi[r][c] = vfmaq_f32(hi[r][c], qv[1], kv[c][1]);
        }
    }
}

/* Scores of R query rows against K keys (K even, R * K <= 8: 16 accumulators), s[r * ss + c] =
 * q_r . k_c. AVX2's 8 lanes are lo (0-3) and hi (4-7); its tree per pair of keys a, b: pairwise
 * sums (a0+a1, a2+a3, b0+b1, b2+b3) of the low and of the high lanes, those two added, then
 * pairwise again: a's score, b's score. */
BN_INLINE void scores_rxk(const float *const *q, int R, const void *const *k, int K, int f16, int hd, float *s,
                          size_t ss) {
    float32x4_t lo[4][4], hi[4][4];
    const float *qp[4];
    const char *kp[4];
    for (int r = 0; r < R; r++) {
        qp[r] = q[r];
        for (int c = 0; c < K; c++) lo[r][c] = hi[r][c] = vdupq_n_f32(0.0f);
    }
    for (int c = 0; c < K; c++) kp[c] = k[c];
    /* unrolled (completely for a constant head size): one pointer update for several steps */
#pragma GCC unroll 16
    for (int d = 0; d < hd; d += 8) scores_step(qp, R, kp, K, f16, lo, hi);
    for (int r = 0; r < R; r++)
        for (int c = 0; c < K; c += 2) {
            const float32x4_t p = vaddq_f32(vpaddq_f32(lo[r][c], lo[r][c + 1]), vpaddq_f32(hi[r][c], hi[r][c + 1]));
            vst1_f32(s + r * ss + c, vget_low_f32(vpaddq_f32(p, p)));
        }
}

/* Keys per call of scores_rxk for R rows: every accumulator register in use. */
static int keys_for_rows(int R) { return R == 4 ? 2 : 4; }

/* scores_rxk of R rows (a constant) for K keys at k; Qwen3's head size, 128 (every Bonsai model),
 * as a constant too, so that the steps unroll completely. */
BN_INLINE void scores_group(const bn_attn_tile *t, int r0, int R, const void *const *k, int f16, float *s) {
    if (t->head_dim == 128) scores_rxk(t->q + r0, R, k, keys_for_rows(R), f16, 128, s, t->s_stride);
    else scores_rxk(t->q + r0, R, k, keys_for_rows(R), f16, t->head_dim, s, t->s_stride);
}

/* Scores of rows r0 .. r0 + R - 1 for keys [j0, j1), K at a time; the last group repeats the
 * last key (the duplicates land in the padding or are overwritten by the next block). */
BN_INLINE void scores(const bn_attn_tile *t, int r0, int R, int f16, int j0, int j1) {
    const int K = keys_for_rows(R);
    float *s = t->s + (size_t)r0 * t->s_stride;
    for (int j = j0; j < j1; j += K) {
        const void *k[4];
        for (int c = 0; c < K; c++) k[c] = kv_row(t, t->k, j + c < j1 ? j + c : j1 - 1, f16);
        if (R == 4) scores_group(t, r0, 4, k, f16, s + j);
        else if (R == 2) scores_group(t, r0, 2, k, f16, s + j);
        else scores_group(t, r0, 1, k, f16, s + j);
    }
}

/* attention_avx2.c's exp8 on 4 lanes, operation for operation (vrndnq: nearest, ties to even,
 * as _mm256_round_ps there; vfmsq c - a * b fused, as fnmadd). */
BN_INLINE float32x4_t exp4(float32x4_t x) {
    const float32x4_t lo = vdupq_n_f32(-87.33f);
    const uint32x4_t keep = vcgeq_f32(x, lo);
    x = vmaxq_f32(x, lo);
    const float32x4_t n = vrndnq_f32(vmulq_f32(x, vdupq_n_f32(1.44269504f)));
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
    return vreinterpretq_f32_u32(vandq_u32(vreinterpretq_u32_f32(vmulq_f32(p, vreinterpretq_f32_s32(e))), keep));
}

/* Row r's scores become its weights softmax(scale * s), zero from n_kv[r] up to n_zero (the keys
 * later rows of the tile read), as attention_avx2.c's softmax_row: 8-lane sum, its tree, one
 * float reciprocal. */
BN_INLINE void softmax_row(const bn_attn_tile *t, int r, int n_zero) {
    float *s = t->s + (size_t)r * t->s_stride;
    const int n = t->n_kv[r], n8 = (n + 7) & ~7;
    for (int j = n; j < n8; j++) s[j] = -INFINITY;
    float32x4_t vmax = vdupq_n_f32(-INFINITY);
    for (int j = 0; j < n8; j += 4) vmax = vmaxq_f32(vmax, vld1q_f32(s + j));
    const float32x4_t max = vdupq_n_f32(vmaxvq_f32(vmax)), scale = vdupq_n_f32(t->scale);
    float32x4_t sum_lo = vdupq_n_f32(0.0f), sum_hi = vdupq_n_f32(0.0f);
    for (int j = 0; j < n8; j += 8) {
        const float32x4_t e_lo = exp4(vmulq_f32(vsubq_f32(vld1q_f32(s + j), max), scale));
        const float32x4_t e_hi = exp4(vmulq_f32(vsubq_f32(vld1q_f32(s + j + 4), max), scale));
        vst1q_f32(s + j, e_lo);
        vst1q_f32(s + j + 4, e_hi);
        sum_lo = vaddq_f32(sum_lo, e_lo);
        sum_hi = vaddq_f32(sum_hi, e_hi);
    }
    const float32x4_t x = vaddq_f32(sum_lo, sum_hi);
    const float32x4_t inv = vdupq_n_f32(1.0f / vpadds_f32(vadd_f32(vget_low_f32(x), vget_high_f32(x))));
    for (int j = 0; j < n8; j += 4) vst1q_f32(s + j, vmulq_f32(vld1q_f32(s + j), inv));
    for (int j = n8; j < n_zero; j++) s[j] = 0.0f;
}

/* acc[r][i] += w_r[j] * v_j[d + 4i .. d + 4i + 3] for the key whose row (from element d) is at
 * p, its weight in lane c of wv[r] (a constant). */
#define BN_VALUES_KEY(c, p)                                                                        \
    do {                                                                                           \
        float32x4_t v[4];                                                                          \
        load_row(p, D, f16, v);                                                                    \
        for (int r = 0; r < R; r++)                                                                \
            for (int i = 0; i < D; i++) acc[r][i] = vfmaq_laneq_f32(acc[r][i], v[i], wv[r], c);   \
    } while (0)

/* out_r[d .. d + 4D) += sum over keys j in [j0, j1) of w_r[j] v_j (from 0 when j0 is 0), for R
 * rows: one fused multiply-add per key in key order for every output, whatever R, D and the key
 * blocks. Weights are loaded 4 keys at a time and used by lane. */
BN_INLINE void values_rxd(const bn_attn_tile *t, int r0, int R, int d, int D, int f16, int j0, int j1) {
    const size_t step = t->kv_stride * (f16 ? 2 : 4);
    const char *row = (const char *)kv_row(t, t->v, j0, f16) + (size_t)d * (f16 ? 2 : 4);
    const float *w[4];
    float32x4_t acc[4][4];
    for (int r = 0; r < R; r++) {
        w[r] = t->s + (size_t)(r0 + r) * t->s_stride + j0;
        for (int i = 0; i < D; i++) acc[r][i] = j0 ? vld1q_f32(t->out[r0 + r] + d + 4 * i) : vdupq_n_f32(0.0f);
    }
    for (int n = (j1 - j0) / 4; n > 0; n--) {
        float32x4_t wv[4];
        for (int r = 0; r < R; r++) {
            wv[r] = vld1q_f32(w[r]);
            w[r] += 4;
        }
        BN_VALUES_KEY(0, row);
        BN_VALUES_KEY(1, row + step);
        BN_VALUES_KEY(2, row + 2 * step);
        BN_VALUES_KEY(3, row + 3 * step);
        row += 4 * step;
    }
    for (int n = (j1 - j0) % 4; n > 0; n--) {
        float32x4_t wv[4];
        for (int r = 0; r < R; r++) wv[r] = vdupq_n_f32(*w[r]++);
        BN_VALUES_KEY(0, row);
        row += step;
    }
    for (int r = 0; r < R; r++)
        for (int i = 0; i < D; i++) vst1q_f32(t->out[r0 + r] + d + 4 * i, acc[r][i]);
}

#undef BN_VALUES_KEY

/* values_rxd with R and D as constants: R * D accumulators, at most 16 of the 32 registers
 * (sweeps of 8 vectors for 2 rows came out longer: the compiler spilled). */
BN_INLINE void values_chunk(const bn_attn_tile *t, int r0, int R, int d, int D, int f16, int j0, int j1) {
    if (R == 4 && D == 4) values_rxd(t, r0, 4, d, 4, f16, j0, j1);
    else if (R == 4 && D == 2) values_rxd(t, r0, 4, d, 2, f16, j0, j1);
    else if (R == 4) values_rxd(t, r0, 4, d, 1, f16, j0, j1);
    else if (R == 2 && D == 4) values_rxd(t, r0, 2, d, 4, f16, j0, j1);
    else if (R == 2 && D == 2) values_rxd(t, r0, 2, d, 2, f16, j0, j1);
    else if (R == 2) values_rxd(t, r0, 2, d, 1, f16, j0, j1);
    else if (D == 4) values_rxd(t, r0, 1, d, 4, f16, j0, j1);
    else if (D == 2) values_rxd(t, r0, 1, d, 2, f16, j0, j1);
    else values_rxd(t, r0, 1, d, 1, f16, j0, j1);
}

/* The outputs in sweeps of 16 over the keys (then 8, 4 for head sizes off 16). */
BN_INLINE void values(const bn_attn_tile *t, int r0, int R, int f16, int j0, int j1) {
    for (int d = 0; d < t->head_dim;) {
        const int left = (t->head_dim - d) / 4, D = left >= 4 ? 4 : left >= 2 ? 2 : 1;
        values_chunk(t, r0, R, d, D, f16, j0, j1);
        d += 4 * D;
    }
}

/* Rows in blocks of 4 (then 2, 1) that share every K and V load. */
static int block_rows(int left) { return left >= 4 ? 4 : left >= 2 ? 2 : 1; }

typedef void (*row_block_fn)(const bn_attn_tile *t, int r0, int R, int f16, int j0, int j1);

/* fn over the keys in blocks of BN_ATTN_KEY_BLOCK, each used by every row block that sees part of
 * it while it is in L1 (values() sweeps a block's keys once per chunk of outputs). */
BN_INLINE void key_blocks(const bn_attn_tile *t, int f16, int nk, row_block_fn fn) {
    for (int b0 = 0; b0 < nk; b0 += BN_ATTN_KEY_BLOCK) {
        const int b1 = b0 + BN_ATTN_KEY_BLOCK < nk ? b0 + BN_ATTN_KEY_BLOCK : nk;
        for (int r0 = 0; r0 < t->n_rows;) {
            const int R = block_rows(t->n_rows - r0), last = t->n_kv[r0 + R - 1], j1 = last < b1 ? last : b1;
            if (j1 > b0) fn(t, r0, R, f16, b0, j1);
            r0 += R;
        }
    }
}

BN_INLINE void tile(const bn_attn_tile *t, int f16) {
    const int nk = t->n_kv[t->n_rows - 1];
    key_blocks(t, f16, nk, scores);
    for (int r = 0; r < t->n_rows; r++) softmax_row(t, r, nk);
    key_blocks(t, f16, nk, values);
}

void bn_attn_tile_neon(const bn_attn_tile *t) {
    if (t->kv_f16) tile(t, 1);
    else tile(t, 0);
}

#endif
