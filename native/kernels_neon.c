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

/* ---- Q1_0: packed layout ----
 * Tile t holds rows 16t..16t+15 (zero rows pad the last one). For each block column i it
 * stores the 16 bit-bytes as planes (plane j = byte j of the 16 rows), then the rows' fp16
 * scales: 256 + 32 bytes, the same 18 bytes per row-block as the file. */
#define Q1_TILE 16
#define Q1_PLANES (BN_QK1_0 / 8)
#define Q1_TILE_BLOCK (Q1_PLANES * Q1_TILE + 2 * Q1_TILE)
#define Q1_LAYOUT_NEON_TILE16 0x51310016

int bn_pack_q1_0_neon(bn_matrix *m, char *err, size_t errlen) {
    const int64_t tiles = (m->rows + Q1_TILE - 1) / Q1_TILE, nb = m->cols / BN_QK1_0;
    const size_t bytes = (size_t)(tiles * nb) * Q1_TILE_BLOCK;
    uint8_t *p = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
    if (!p)
        return bn_fail(err, errlen, "out of memory packing a %lld x %lld q1_0 matrix", (long long)m->rows,
                       (long long)m->cols);
    memset(p, 0, bytes);
    for (int64_t r = 0; r < m->rows; r++) {
        const bn_block_q1_0 *src = (const bn_block_q1_0 *)(m->data + (size_t)r * m->row_bytes);
        uint8_t *tile = p + (size_t)(r / Q1_TILE * nb) * Q1_TILE_BLOCK;
        const int lane = (int)(r % Q1_TILE);
        for (int64_t i = 0; i < nb; i++) {
            uint8_t *tb = tile + (size_t)i * Q1_TILE_BLOCK;
            for (int j = 0; j < Q1_PLANES; j++) tb[j * Q1_TILE + lane] = src[i].qs[j];
            memcpy(tb + Q1_PLANES * Q1_TILE + 2 * lane, &src[i].d, 2);
        }
    }
    m->packed = p;
    m->packed_bytes = bytes;
    m->packed_layout = Q1_LAYOUT_NEON_TILE16;
    return 0;
}

/* ---- Q1_0: activation lookup tables ----
 * For one token and one block column: per Q8_0 sub-block k, the low-half and high-half tables
 * of its 8 groups, the sum of its 32 activations and its scale. */
typedef struct {
    uint8_t tab[4][2][8][16]; /* [sub-block][a & 15, a >> 4][group][bits of the group's 4 weights] */
    int16_t sum[4];
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
        lut->sum[k] = sum;
        lut->d[k] = bn_fp16_to_fp32(a[k].d);
    }
}

/* ---- Q1_0: the tile kernel ---- */

/* Byte-lane sum of 4 lookups: groups 4h..4h+3 of a sub-block, whose bits are the low and high
 * nibbles of planes 2h and 2h+1. */
static inline uint8x16_t q1_lookup4(const uint8_t tab[8][16], int h, uint8x16_t p0, uint8x16_t p1) {
    const uint8x16_t m = vdupq_n_u8(15);
    uint8x16_t s0 = vaddq_u8(vqtbl1q_u8(vld1q_u8(tab[4 * h]), vandq_u8(p0, m)),
                             vqtbl1q_u8(vld1q_u8(tab[4 * h + 1]), vshrq_n_u8(p0, 4)));
    uint8x16_t s1 = vaddq_u8(vqtbl1q_u8(vld1q_u8(tab[4 * h + 2]), vandq_u8(p1, m)),
                             vqtbl1q_u8(vld1q_u8(tab[4 * h + 3]), vshrq_n_u8(p1, 4)));
    return vaddq_u8(s0, s1);
}

/* Signed dot of one sub-block for the 16 rows of a tile, as 2 x 8 int16 (|v| <= 32 * 127).
 * Low-half lookups sum to <= 240 per 4 groups (u8), high-half ones to -128..112 (s8). */
static inline void q1_sub_dots(const uint8_t *planes, const uint8_t tab[2][8][16], int16_t sum, int16x8_t v[2]) {
    const uint8x16x4_t p = vld1q_u8_x4(planes);
    const uint8x16_t l0 = q1_lookup4(tab[0], 0, p.val[0], p.val[1]), l1 = q1_lookup4(tab[0], 1, p.val[2], p.val[3]);
    const int8x16_t h0 = vreinterpretq_s8_u8(q1_lookup4(tab[1], 0, p.val[0], p.val[1]));
    const int8x16_t h1 = vreinterpretq_s8_u8(q1_lookup4(tab[1], 1, p.val[2], p.val[3]));
    const int16x8_t lo[2] = {vreinterpretq_s16_u16(vaddl_u8(vget_low_u8(l0), vget_low_u8(l1))),
                             vreinterpretq_s16_u16(vaddl_high_u8(l0, l1))};
    const int16x8_t hi[2] = {vaddl_s8(vget_low_s8(h0), vget_low_s8(h1)), vaddl_high_s8(h0, h1)};
    for (int q = 0; q < 2; q++)
        v[q] = vsubq_s16(vshlq_n_s16(vaddq_s16(lo[q], vshlq_n_s16(hi[q], 4)), 1), vdupq_n_s16(sum));
}

/* n block columns of one tile against one token's tables, accumulated into sumf (16 rows):
 * partial = sum_k d8_k * v_k, then sumf += d_w * partial, as the scalar reference. */
static inline void q1_tile_blocks(const uint8_t *tb, const q1_lut *lut, int n, float32x4_t sumf[4]) {
    for (int i = 0; i < n; i++, tb += Q1_TILE_BLOCK) {
        float32x4_t part[4];
        for (int k = 0; k < 4; k++) {
            int16x8_t v[2];
            q1_sub_dots(tb + 4 * Q1_TILE * k, lut[i].tab[k], lut[i].sum[k], v);
            const float32x4_t d8 = vdupq_n_f32(lut[i].d[k]);
            for (int q = 0; q < 4; q++) {
                const int16x4_t v4 = q & 1 ? vget_high_s16(v[q / 2]) : vget_low_s16(v[q / 2]);
                const float32x4_t prod = vmulq_f32(d8, vcvtq_f32_s32(vmovl_s16(v4)));
                part[q] = k ? vaddq_f32(part[q], prod) : prod;
            }
        }
        const uint16x8x2_t dh = vld1q_u16_x2((const uint16_t *)(tb + Q1_PLANES * Q1_TILE));
        for (int q = 0; q < 4; q++) {
            const uint16x4_t h = q & 1 ? vget_high_u16(dh.val[q / 2]) : vget_low_u16(dh.val[q / 2]);
            sumf[q] = vaddq_f32(sumf[q], vmulq_f32(vcvt_f32_f16(vreinterpret_f16_u16(h)), part[q]));
        }
    }
}

/* ---- Q1_0: the GEMM ---- */

/* Block columns per table chunk and tokens per pass: 4 x 4 tables (17 KB) stay in L1 while
 * every tile of the thread's rows streams by, and each tile's 1.1 KB of weights stays in L1
 * across the tokens of the pass. */
#define Q1_LUT_BLOCKS 4
#define Q1_TOKEN_TILE 4

/* Running sums of the tile's rows that lie in [r0, r1): y itself carries them between table
 * chunks (the float sequence is unchanged, only stored in between). */
static inline void q1_load_sums(const float *y, int64_t row, int64_t r0, int64_t r1, int first, float32x4_t s[4]) {
    float tmp[Q1_TILE] = {0};
    if (!first && row >= r0 && row + Q1_TILE <= r1) {
        for (int q = 0; q < 4; q++) s[q] = vld1q_f32(y + row + 4 * q);
        return;
    }
    for (int l = 0; l < Q1_TILE && !first; l++)
        if (row + l >= r0 && row + l < r1) tmp[l] = y[row + l];
    for (int q = 0; q < 4; q++) s[q] = vld1q_f32(tmp + 4 * q);
}

static inline void q1_store_sums(float *y, int64_t row, int64_t r0, int64_t r1, const float32x4_t s[4]) {
    float tmp[Q1_TILE];
    if (row >= r0 && row + Q1_TILE <= r1) {
        for (int q = 0; q < 4; q++) vst1q_f32(y + row + 4 * q, s[q]);
        return;
    }
    for (int q = 0; q < 4; q++) vst1q_f32(tmp + 4 * q, s[q]);
    for (int l = 0; l < Q1_TILE; l++)
        if (row + l >= r0 && row + l < r1) y[row + l] = tmp[l];
}

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
    if (!w->packed || w->packed_layout != Q1_LAYOUT_NEON_TILE16) {
        q1_gemm_unpacked(w, r0, r1, act, act_stride, n_tokens, y, y_stride);
        return;
    }
    const int64_t nb = w->cols / BN_QK1_0;
    q1_lut lut[Q1_TOKEN_TILE][Q1_LUT_BLOCKS];
    for (int t0 = 0; t0 < n_tokens; t0 += Q1_TOKEN_TILE) {
        const int nt = n_tokens - t0 < Q1_TOKEN_TILE ? n_tokens - t0 : Q1_TOKEN_TILE;
        for (int64_t i0 = 0; i0 < nb; i0 += Q1_LUT_BLOCKS) {
            const int n = nb - i0 < Q1_LUT_BLOCKS ? (int)(nb - i0) : Q1_LUT_BLOCKS;
            for (int t = 0; t < nt; t++) {
                const bn_block_q8_0 *a = (const bn_block_q8_0 *)((const uint8_t *)act + (size_t)(t0 + t) * act_stride);
                for (int i = 0; i < n; i++) q1_build_lut(a + 4 * (i0 + i), &lut[t][i]);
            }
            for (int64_t row = r0 - r0 % Q1_TILE; row < r1; row += Q1_TILE) {
                const uint8_t *tb = (const uint8_t *)w->packed + (size_t)(row / Q1_TILE * nb + i0) * Q1_TILE_BLOCK;
                for (int t = 0; t < nt; t++) {
                    float *yt = y + (int64_t)(t0 + t) * y_stride;
                    float32x4_t sumf[4];
                    q1_load_sums(yt, row, r0, r1, i0 == 0, sumf);
                    q1_tile_blocks(tb, lut[t], n, sumf);
                    q1_store_sums(yt, row, r0, r1, sumf);
                }
            }
        }
    }
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
