/* aarch64 NEON (armv8.0) kernels: every 64-bit board, including the cores without dotprod
 * (Pi Zero 2 / 3 / 4, Jetson Nano) where sign-bit expansion makes 1-bit decode compute-bound.
 *
 * Q1_0 uses lookup tables instead of expanding bits (the T-MAC idea). Per activation token and
 * group of 4 consecutive activations, the 16 possible sums "sum of a_i over the set bits" are
 * tabulated once; each 4-bit nibble of weight bits then costs one byte lookup, and one `tbl`
 * looks up 16 rows at once because the rows are interleaved at load time (16-row tiles, one
 * byte lane per row). A sum of 4 int8 does not fit a byte, so each activation is split
 * exactly as a = 16 * (a >> 4) + (a & 15) and both halves get a table whose entries do fit
 * (0..60 and -32..28). With bit sum B and sub-block sum S the signed dot is 2B - S.
 * Integer sums are exact and the float steps follow the scalar reference in order, so results
 * are bit-identical to it. */
#include "kernels_impl.h"

#if defined(BN_HAVE_NEON_KERNELS)
#include <arm_neon.h>
#include <stdlib.h>
#include <string.h>
#include "common.h"
#include "quants.h"

/* Keep every float product rounded before it is added, as the scalar reference does (GCC
 * would otherwise fuse the vmulq/vaddq pairs into fmla on AArch64). */
#pragma GCC optimize("fp-contract=off")

/* ---- Q1_0: activation lookup tables ----
 * For one token and one block column: per Q8_0 sub-block k, the low-half and high-half tables
 * of its 8 groups, the sum of its 32 activations and its scale. */
typedef struct {
    uint8_t tab[4][2][8][16]; /* [sub-block][a & 15, a >> 4][group][bits of the group's 4 weights] */
    int32_t sum[4][4];        /* sum of the sub-block's 32 activations, x4 for a vector load */
    float d[4];
} q1_lut;

/* Entry e of group g (g < 4 within 16 activations x, pair sums p[m] = x[2m] + x[2m+1] at 16+m)
 * is f(e & 3) + f'(e >> 2): two `tbl` lookups into {x, p}; index 0x80 reads as 0. */
#define Q1_LO(g) 0x80, 4 * (g), 4 * (g) + 1, 16 + 2 * (g)
#define Q1_HI4(v) v, v, v, v
#define Q1_HI(g) Q1_HI4(0x80), Q1_HI4(4 * (g) + 2), Q1_HI4(4 * (g) + 3), Q1_HI4(17 + 2 * (g))
static const uint8_t q1_pick[4][2][16] = {
    {{Q1_LO(0), Q1_LO(0), Q1_LO(0), Q1_LO(0)}, {Q1_HI(0)}},
    {{Q1_LO(1), Q1_LO(1), Q1_LO(1), Q1_LO(1)}, {Q1_HI(1)}},
    {{Q1_LO(2), Q1_LO(2), Q1_LO(2), Q1_LO(2)}, {Q1_HI(2)}},
    {{Q1_LO(3), Q1_LO(3), Q1_LO(3), Q1_LO(3)}, {Q1_HI(3)}},
};

/* The 16-entry subset-sum tables of the 4 groups in x (byte arithmetic wraps, and every entry
 * is in range, so one routine serves the unsigned low and the signed high halves). */
static inline void q1_group_tables(uint8x16_t x, uint8_t out[4][16]) {
    const uint8x16x2_t t = {{x, vpaddq_u8(x, x)}};
    for (int g = 0; g < 4; g++)
        vst1q_u8(out[g], vaddq_u8(vqtbl2q_u8(t, vld1q_u8(q1_pick[g][0])), vqtbl2q_u8(t, vld1q_u8(q1_pick[g][1]))));
}

static void q1_build_lut(const bn_block_q8_0 *a, q1_lut *lut) {
    for (int k = 0; k < 4; k++) {
        int16_t sum = 0;
        for (int h = 0; h < 2; h++) {
            const int8x16_t q = vld1q_s8(a[k].qs + 16 * h);
            q1_group_tables(vandq_u8(vreinterpretq_u8_s8(q), vdupq_n_u8(15)), lut->tab[k][0] + 4 * h);
            q1_group_tables(vreinterpretq_u8_s8(vshrq_n_s8(q, 4)), lut->tab[k][1] + 4 * h);
            sum = (int16_t)(sum + vaddlvq_s8(q));
        }
        for (int l = 0; l < 4; l++) lut->sum[k][l] = sum;
        lut->d[k] = bn_fp16_to_fp32(a[k].d);
    }
}

/* ---- Q1_0: the tile kernel ---- */

/* Byte-lane sum of 4 lookups: the tables t[0..3] of 4 groups of a sub-block, whose bits are
 * the low and high nibbles of planes p0 and p1. (Tables load one by one: GCC 12 copies
 * uint8x16x4_t values through the stack here.) */
static inline uint8x16_t q1_lookup4(const uint8_t t[4][16], uint8x16_t p0, uint8x16_t p1) {
    const uint8x16_t m = vdupq_n_u8(15);
    return vaddq_u8(vaddq_u8(vqtbl1q_u8(vld1q_u8(t[0]), vandq_u8(p0, m)), vqtbl1q_u8(vld1q_u8(t[1]), vshrq_n_u8(p0, 4))),
                    vaddq_u8(vqtbl1q_u8(vld1q_u8(t[2]), vandq_u8(p1, m)), vqtbl1q_u8(vld1q_u8(t[3]), vshrq_n_u8(p1, 4))));
}

/* Signed dot of one sub-block for the 16 rows of a tile, as 4 x 4 int32 (|v| <= 32 * 127).
 * Low-half lookups sum to <= 240 per 4 groups (u8), high-half ones to -128..112 (s8); with
 * t = L + 16 H the dot is 2t - S, the doubling folded into the widening shift. */
static inline void q1_sub_dots(const uint8_t *planes, const uint8_t tab[2][8][16], const int32_t sum[4], int32x4_t v[4]) {
    const uint8x16x4_t p = vld1q_u8_x4(planes);
    const uint8x16_t p0 = p.val[0], p1 = p.val[1], p2 = p.val[2], p3 = p.val[3];
    const uint8x16_t l0 = q1_lookup4(tab[0], p0, p1), l1 = q1_lookup4(tab[0] + 4, p2, p3);
    const int8x16_t h0 = vreinterpretq_s8_u8(q1_lookup4(tab[1], p0, p1));
    const int8x16_t h1 = vreinterpretq_s8_u8(q1_lookup4(tab[1] + 4, p2, p3));
    const int16x8_t t0 = vmlaq_n_s16(vreinterpretq_s16_u16(vaddl_u8(vget_low_u8(l0), vget_low_u8(l1))),
                                     vaddl_s8(vget_low_s8(h0), vget_low_s8(h1)), 16);
    const int16x8_t t1 = vmlaq_n_s16(vreinterpretq_s16_u16(vaddl_high_u8(l0, l1)), vaddl_high_s8(h0, h1), 16);
    const int32x4_t s = vld1q_s32(sum);
    v[0] = vsubq_s32(vshll_n_s16(vget_low_s16(t0), 1), s);
    v[1] = vsubq_s32(vshll_high_n_s16(t0, 1), s);
    v[2] = vsubq_s32(vshll_n_s16(vget_low_s16(t1), 1), s);
    v[3] = vsubq_s32(vshll_high_n_s16(t1, 1), s);
}

/* One tile's 16 rows against one token's tables over all nb block columns:
 * partial = sum_k d8_k * v_k, then sumf += d_w * partial, as the scalar reference. */
static inline void q1_tile_dots(const uint8_t *tb, const q1_lut *lut, int64_t nb, float out[BN_Q1_TILE]) {
    float32x4_t sumf[4] = {vdupq_n_f32(0.0f), vdupq_n_f32(0.0f), vdupq_n_f32(0.0f), vdupq_n_f32(0.0f)};
    for (int64_t i = 0; i < nb; i++, tb += BN_Q1_TILE_BLOCK) {
        float32x4_t part[4];
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) {
            int32x4_t v[4];
            q1_sub_dots(tb + 4 * BN_Q1_TILE * k, lut[i].tab[k], lut[i].sum[k], v);
            for (int q = 0; q < 4; q++) {
                const float32x4_t prod = vmulq_n_f32(vcvtq_f32_s32(v[q]), lut[i].d[k]);
                part[q] = k ? vaddq_f32(part[q], prod) : prod;
            }
        }
        const uint16x8x2_t dh = vld1q_u16_x2((const uint16_t *)(tb + BN_Q1_PLANES * BN_Q1_TILE));
        for (int q = 0; q < 4; q++) {
            const uint16x4_t h = q & 1 ? vget_high_u16(dh.val[q / 2]) : vget_low_u16(dh.val[q / 2]);
            sumf[q] = vaddq_f32(sumf[q], vmulq_f32(vcvt_f32_f16(vreinterpret_f16_u16(h)), part[q]));
        }
    }
    for (int q = 0; q < 4; q++) vst1q_f32(out + 4 * q, sumf[q]);
}

/* ---- Q1_0: the GEMM ---- */

/* Tokens whose tables are built together: each tile's weights (16 rows x 18 bytes per block)
 * stay in L1 while they pass over it. */
#define Q1_TOKEN_TILE 4

/* Rows of an unpacked matrix (prepared for another path): the reference dot per output. */
static void q1_gemm_unpacked(const bn_matrix *w, int64_t r0, int64_t r1, const uint8_t *act, size_t act_stride,
                             int n_tokens, float *y, int64_t y_stride) {
    for (int t = 0; t < n_tokens; t++)
        for (int64_t r = r0; r < r1; r++)
            bn_vec_dot_q1_0_q8_0_scalar(w->cols, &y[t * y_stride + r], w->data + (size_t)r * w->row_bytes,
                                        act + (size_t)t * act_stride);
}

void bn_gemm_q1_0_q8_0_neon(const bn_matrix *w, int64_t r0, int64_t r1, const void *act, size_t act_stride,
                            int n_tokens, float *y, int64_t y_stride) {
    const int64_t nb = w->cols / BN_QK1_0;
    q1_lut *lut = NULL;
    if (w->packed && w->packed_layout == BN_Q1_LAYOUT_TILE16)
        lut = malloc(sizeof *lut * (size_t)(nb * (n_tokens < Q1_TOKEN_TILE ? n_tokens : Q1_TOKEN_TILE)));
    if (!lut) { /* unpacked, or no memory for the tables: the reference is slow but right */
        q1_gemm_unpacked(w, r0, r1, act, act_stride, n_tokens, y, y_stride);
        return;
    }
    for (int t0 = 0; t0 < n_tokens; t0 += Q1_TOKEN_TILE) {
        const int nt = n_tokens - t0 < Q1_TOKEN_TILE ? n_tokens - t0 : Q1_TOKEN_TILE;
        for (int t = 0; t < nt; t++) {
            const bn_block_q8_0 *a = (const bn_block_q8_0 *)((const uint8_t *)act + (size_t)(t0 + t) * act_stride);
            for (int64_t i = 0; i < nb; i++) q1_build_lut(a + 4 * i, &lut[t * nb + i]);
        }
        for (int64_t row = r0 - r0 % BN_Q1_TILE; row < r1; row += BN_Q1_TILE) {
            const uint8_t *tb = (const uint8_t *)w->packed + (size_t)(row / BN_Q1_TILE * nb) * BN_Q1_TILE_BLOCK;
            for (int t = 0; t < nt; t++) {
                float out[BN_Q1_TILE];
                q1_tile_dots(tb, lut + t * nb, nb, out);
                for (int l = 0; l < BN_Q1_TILE; l++)
                    if (row + l >= r0 && row + l < r1) y[(int64_t)(t0 + t) * y_stride + row + l] = out[l];
            }
        }
    }
    free(lut);
}

/* ---- Q8_0 x Q8_0 and TQ2_0 x Q8_K: exact integer block sums, the reference's float steps ---- */

/* sum x[j] * y[j] over 32 int8 pairs: each int16 lane adds two products (<= 2 * 127 * 128). */
static inline int32_t dot32_i8(const int8_t *x, const int8_t *y) {
    int32x4_t acc = vdupq_n_s32(0);
    for (int h = 0; h < 2; h++) {
        const int8x16_t a = vld1q_s8(x + 16 * h), b = vld1q_s8(y + 16 * h);
        acc = vpadalq_s16(acc, vmlal_high_s8(vmull_s8(vget_low_s8(a), vget_low_s8(b)), a, b));
    }
    return vaddvq_s32(acc);
}

void bn_vec_dot_q8_0_q8_0_neon(int64_t n, float *s, const void *w, const void *a) {
    const bn_block_q8_0 *x = w, *y = a;
    float sumf = 0.0f;
    for (int64_t i = 0; i < n / BN_QK8_0; i++)
        sumf += (float)dot32_i8(x[i].qs, y[i].qs) * (bn_fp16_to_fp32(x[i].d) * bn_fp16_to_fp32(y[i].d));
    *s = sumf;
}

/* TQ2_0 x Q8_K in the scalar reference's order (llama.cpp's x86 one): eight integer lanes, lane
 * k summing code * q over offsets 4k..4k+3 of every 32-element group minus bsums 2k and 2k+1,
 * each fused-scaled by d_w * d_a into its own float accumulator. Codes c in {0,1,2} stand for
 * c - 1; byte m of each 32-byte half holds elements m + 32l (l = 0..3) in bits 2l..2l+1. */
void bn_vec_dot_tq2_0_q8_K_neon(int64_t n, float *s, const void *w, const void *a) {
    const bn_block_tq2_0 *x = w;
    const bn_block_q8_K *y = a;
    float32x4_t acc[2] = {vdupq_n_f32(0.0f), vdupq_n_f32(0.0f)};
    for (int64_t i = 0; i < n / BN_QK_K; i++) {
        /* prod[j]: products at offsets 8j..8j+7 of the groups; int16 holds 8 of at most 2 * 127 */
        int16x8_t prod[4] = {vdupq_n_s16(0), vdupq_n_s16(0), vdupq_n_s16(0), vdupq_n_s16(0)};
        for (int half = 0; half < 2; half++) {
            const uint8x16x2_t packed = vld1q_u8_x2(x[i].qs + 32 * half);
            for (int l = 0; l < 4; l++) {
                const int8x16x2_t q = vld1q_s8_x2(y[i].qs + 128 * half + 32 * l);
                for (int h = 0; h < 2; h++) {
                    const int8x16_t c = vreinterpretq_s8_u8(
                        vandq_u8(vshlq_u8(packed.val[h], vdupq_n_s8((int8_t)(-2 * l))), vdupq_n_u8(3)));
                    prod[2 * h] = vmlal_s8(prod[2 * h], vget_low_s8(c), vget_low_s8(q.val[h]));
                    prod[2 * h + 1] = vmlal_high_s8(prod[2 * h + 1], c, q.val[h]);
                }
            }
        }
        const int16x8x2_t bsums = vld1q_s16_x2(y[i].bsums);
        const int16x8_t lanes = vsubq_s16(vpaddq_s16(vpaddq_s16(prod[0], prod[1]), vpaddq_s16(prod[2], prod[3])),
                                          vpaddq_s16(bsums.val[0], bsums.val[1]));
        const float32x4_t d = vdupq_n_f32(y[i].d * bn_fp16_to_fp32(x[i].d));
        acc[0] = vfmaq_f32(acc[0], vcvtq_f32_s32(vmovl_s16(vget_low_s16(lanes))), d);
        acc[1] = vfmaq_f32(acc[1], vcvtq_f32_s32(vmovl_high_s16(lanes)), d);
    }
    const float32x4_t r = vaddq_f32(acc[1], acc[0]);
    *s = (vgetq_lane_f32(r, 0) + vgetq_lane_f32(r, 2)) + (vgetq_lane_f32(r, 1) + vgetq_lane_f32(r, 3));
}

#endif
