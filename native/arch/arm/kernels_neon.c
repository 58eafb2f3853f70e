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
#include "kernels/kernels_impl.h"

#if defined(BN_HAVE_ARM_KERNELS)
#include <arm_neon.h>
#include <stdlib.h>
#include <string.h>
#include "core/common.h"
#include "arch/arm/kernels_arm.h"
#include "quants/quants.h"

/* Keep every float product rounded before it is added, as the scalar reference does (GCC
 * would otherwise fuse the vmulq/vaddq pairs into fmla on AArch64). */
#pragma GCC optimize("fp-contract=off")

/* ---- Q1_0: activation lookup tables ----
 * For one token and one block column, in the order the kernels read them: the 4 sub-block
 * scales, minus the sum of each sub-block's 32 activations, and per Q8_0 sub-block k the tables
 * of its 8 groups, per bit-plane m (groups 2m and 2m+1, the plane's low and high nibbles):
 * low-half tables of both groups, then their high-half tables. */
typedef struct {
    float d[4];
    int32_t nsum[4];          /* -S_k */
    uint8_t tab[4][4][4][16]; /* [sub-block][plane][lo 2m, lo 2m+1, hi 2m, hi 2m+1][group bits] */
} q1_lut;

/* Lane e of group g's table is f(e & 3) + f'(e >> 2) with f = (0, x0, x1, x0 + x1) and
 * f' = (0, x2, x3, x2 + x3) of its 4 activations: two `tbl` lookups into a vector holding the
 * 8 activations of groups 2j, 2j+1 (lanes 0-7) and their pair sums (lanes 8-11). Index 0x80
 * reads as 0. q1_pick[g][0] picks f, q1_pick[g][1] picks f', for g = 0, 1 of such a vector. */
#define Q1_LO(g) 0x80, 4 * (g), 4 * (g) + 1, 8 + 2 * (g)
#define Q1_HI4(v) v, v, v, v
#define Q1_HI(g) Q1_HI4(0x80), Q1_HI4(4 * (g) + 2), Q1_HI4(4 * (g) + 3), Q1_HI4(9 + 2 * (g))
static const uint8_t q1_pick[2][2][16] = {
    {{Q1_LO(0), Q1_LO(0), Q1_LO(0), Q1_LO(0)}, {Q1_HI(0)}},
    {{Q1_LO(1), Q1_LO(1), Q1_LO(1), Q1_LO(1)}, {Q1_HI(1)}},
};

/* The tables of the 2 groups in y (activations in lanes 0-7, pair sums in 8-11) into the
 * plane's slots `slot` and slot + 1 (byte arithmetic wraps, and every entry is in range, so
 * one routine serves the unsigned low halves and the signed high halves of activations). */
static inline void q1_pair_tables(uint8x16_t y, const uint8x16_t pick[2][2], uint8_t plane[4][16], int slot) {
    for (int g = 0; g < 2; g++)
        vst1q_u8(plane[slot + g], vaddq_u8(vqtbl1q_u8(y, pick[g][0]), vqtbl1q_u8(y, pick[g][1])));
}

/* The tables of the 4 groups in x (16 activations = bit-planes 0 and 1 of `planes`). */
static inline void q1_group_tables(uint8x16_t x, const uint8x16_t pick[2][2], uint8_t planes[2][4][16], int slot) {
    const uint8x16_t p = vpaddq_u8(x, x); /* p[m] = x[2m] + x[2m+1], m < 8 */
    const uint64x2_t x64 = vreinterpretq_u64_u8(x);
    q1_pair_tables(vreinterpretq_u8_u64(vzip1q_u64(x64, vreinterpretq_u64_u8(p))), pick, planes[0], slot);
    q1_pair_tables(vreinterpretq_u8_u64(vzip2q_u64(x64, vreinterpretq_u64_u8(vextq_u8(p, p, 12)))), pick, planes[1],
                   slot);
}

static void q1_build_lut(const bn_block_q8_0 *a, q1_lut *lut) {
    const uint8x16_t pick[2][2] = {{vld1q_u8(q1_pick[0][0]), vld1q_u8(q1_pick[0][1])},
                                   {vld1q_u8(q1_pick[1][0]), vld1q_u8(q1_pick[1][1])}};
    for (int k = 0; k < 4; k++) {
        const int8x16_t q[2] = {vld1q_s8(a[k].qs), vld1q_s8(a[k].qs + 16)};
        for (int h = 0; h < 2; h++) {
            q1_group_tables(vandq_u8(vreinterpretq_u8_s8(q[h]), vdupq_n_u8(15)), pick, lut->tab[k] + 2 * h, 0);
            q1_group_tables(vreinterpretq_u8_s8(vshrq_n_s8(q[h], 4)), pick, lut->tab[k] + 2 * h, 2);
        }
        lut->nsum[k] = -(vaddlvq_s8(q[0]) + vaddlvq_s8(q[1]));
        lut->d[k] = bn_arm_fp16_to_f32(a[k].d);
    }
}

/* ---- Q1_0: the tile kernels ----
 * In asm with fixed registers: GCC 12 spills the float sums and copies the tables through the
 * stack around an asm block per sub-block, and ld1 of 4 vectors needs 4 consecutive registers.
 *
 * Per sub-block k, the signed dots of 16 rows (one byte lane per row): per bit-plane, its low
 * nibbles (group 2m) and high nibbles (group 2m+1) index that plane's 4 tables (v0-v3).
 * Low-half lookups sum to <= 240 over 2 planes (u8: L), high-half ones to -128..112 (s8: H).
 * Per pair of planes, 2 L + 32 H is accumulated in int16 lanes by widening multiply(-add)s
 * (v25 = 2, v26 = 32: |sum| <= 8192 over 4 planes); widening it to int32 adds -S_k (saddw,
 * v28-v31 from one ld4r per block), giving the dot 2 (L + 16 H) - S_k exactly. The float steps
 * are the scalar reference's, in its order, so results are bit-identical to it:
 * part = sum_k d8_k * v_k (d8 in v27, fused where that is exact: Q1_SCALE), then
 * sumf += d_w * part, unfused: d_w * part is not exact. */

/* The 4 lookups of one plane's nibbles (lo, hi) into L and H, which they start (Q1_FIRST) or
 * add to (Q1_NEXT); lookup i goes through register t_i before it is added (a table register
 * itself once it is no longer needed, or a spare). */
#define Q1_LOOKUPS(lo, hi, l, h, t0, t1, t2, t3, first)                                            \
    first("tbl " l ".16b, {v0.16b}, " lo ".16b\n\t",                                               \
          "tbl " t0 ".16b, {v0.16b}, " lo ".16b\n\tadd " l ".16b, " l ".16b, " t0 ".16b\n\t")       \
    "tbl " t1 ".16b, {v1.16b}, " hi ".16b\n\tadd " l ".16b, " l ".16b, " t1 ".16b\n\t"              \
    first("tbl " h ".16b, {v2.16b}, " lo ".16b\n\t",                                               \
          "tbl " t2 ".16b, {v2.16b}, " lo ".16b\n\tadd " h ".16b, " h ".16b, " t2 ".16b\n\t")       \
    "tbl " t3 ".16b, {v3.16b}, " hi ".16b\n\tadd " h ".16b, " h ".16b, " t3 ".16b\n\t"
#define Q1_FIRST(a, b) a
#define Q1_NEXT(a, b) b

/* int16 lanes (a0: rows 0-7, a1: rows 8-15) = or += 2 L + 32 H. */
#define Q1_ACC16(a0, a1, l, h, first)                                                              \
    first("umull " a0 ".8h, " l ".8b, v25.8b\n\tumull2 " a1 ".8h, " l ".16b, v25.16b\n\t",          \
          "umlal " a0 ".8h, " l ".8b, v25.8b\n\tumlal2 " a1 ".8h, " l ".16b, v25.16b\n\t")          \
    "smlal " a0 ".8h, " h ".8b, v26.8b\n\t"                                                        \
    "smlal2 " a1 ".8h, " h ".16b, v26.16b\n\t"

/* part = d8_k * v for the first sub-block, part += d8_k * v after (v = v_k in f32). The
 * product is exact in f32: d8_k is an fp16 value (11 significant bits, subnormals included, and
 * an f32 normal) and |v_k| <= 32 * 128 has at most 12, so rounding it before the add, as the
 * reference does, changes nothing and one fused fmla gives the reference's sum bit for bit. */
#define Q1_SCALE(part, v, k, first)                                                                \
    first("fmul " part ".4s, " v ".4s, v27.s[" #k "]\n\t", "fmla " part ".4s, " v ".4s, v27.s[" #k "]\n\t")

/* The 16 int16 sums (a0, a1) plus -S_k (s) as int32 in i0-i3, to f32, scaled into part p0-p3. */
#define Q1_FLOAT(a0, a1, i0, i1, i2, i3, s, p0, p1, p2, p3, k, first)                              \
    "saddw " i0 ".4s, " s ".4s, " a0 ".4h\n\t"                                                     \
    "saddw2 " i1 ".4s, " s ".4s, " a0 ".8h\n\t"                                                    \
    "saddw " i2 ".4s, " s ".4s, " a1 ".4h\n\t"                                                     \
    "saddw2 " i3 ".4s, " s ".4s, " a1 ".8h\n\t"                                                    \
    "scvtf " i0 ".4s, " i0 ".4s\n\t"                                                               \
    "scvtf " i1 ".4s, " i1 ".4s\n\t"                                                               \
    "scvtf " i2 ".4s, " i2 ".4s\n\t"                                                               \
    "scvtf " i3 ".4s, " i3 ".4s\n\t"                                                               \
    Q1_SCALE(p0, i0, k, first) Q1_SCALE(p1, i1, k, first) Q1_SCALE(p2, i2, k, first) Q1_SCALE(p3, i3, k, first)

#define Q1_CLOBBERS                                                                                \
    "memory", "cc", "v0", "v1", "v2", "v3", "v4", "v5", "v6", "v7", "v8", "v9", "v10", "v11", "v12", \
        "v13", "v14", "v15", "v16", "v17", "v18", "v19", "v20", "v21", "v22", "v23", "v24", "v25",  \
        "v26", "v27", "v28", "v29", "v30", "v31"

/* One tile, read as packed (q1 tile16), against one token's tables over nb >= 1 block columns:
 * the decode kernel. Each sub-block's 4 planes are split into nibbles on the fly (v16-v19 low,
 * v20-v23 high; v24 = 15); int16 sums in v6, v7, part in v8-v11, sumf in v12-v15; the row
 * scales are converted from fp16 per block. */
#define Q1_TILE_SUB(k, first, s)                                                                   \
    "ld1 {v16.16b-v19.16b}, [%[w]], #64\n\t"                                                       \
    "ushr v20.16b, v16.16b, #4\n\t"                                                                \
    "and v16.16b, v16.16b, v24.16b\n\t"                                                            \
    "ushr v21.16b, v17.16b, #4\n\t"                                                                \
    "and v17.16b, v17.16b, v24.16b\n\t"                                                            \
    "ushr v22.16b, v18.16b, #4\n\t"                                                                \
    "and v18.16b, v18.16b, v24.16b\n\t"                                                            \
    "ushr v23.16b, v19.16b, #4\n\t"                                                                \
    "and v19.16b, v19.16b, v24.16b\n\t"                                                            \
    "ld1 {v0.16b-v3.16b}, [%[lut]], #64\n\t"                                                       \
    Q1_LOOKUPS("v16", "v20", "v4", "v5", "v0", "v1", "v2", "v3", Q1_FIRST)                         \
    "ld1 {v0.16b-v3.16b}, [%[lut]], #64\n\t"                                                       \
    Q1_LOOKUPS("v17", "v21", "v4", "v5", "v0", "v1", "v2", "v3", Q1_NEXT)                          \
    Q1_ACC16("v6", "v7", "v4", "v5", Q1_FIRST)                                                     \
    "ld1 {v0.16b-v3.16b}, [%[lut]], #64\n\t"                                                       \
    Q1_LOOKUPS("v18", "v22", "v4", "v5", "v0", "v1", "v2", "v3", Q1_FIRST)                         \
    "ld1 {v0.16b-v3.16b}, [%[lut]], #64\n\t"                                                       \
    Q1_LOOKUPS("v19", "v23", "v4", "v5", "v0", "v1", "v2", "v3", Q1_NEXT)                          \
    Q1_ACC16("v6", "v7", "v4", "v5", Q1_NEXT)                                                      \
    Q1_FLOAT("v6", "v7", "v0", "v1", "v2", "v3", s, "v8", "v9", "v10", "v11", k, first)

/* One block column's header (its four d8 scales into v27, its four sub-blocks' -S broadcast into
 * v28-v31 by ld4r) and its four sub-blocks, each by SUB(k, first-or-next, -S register). */
#define Q1_BLOCK_SUBS(SUB)                                                                         \
    "ld1 {v27.4s}, [%[lut]], #16\n\t"                                                              \
    "ld4r {v28.4s-v31.4s}, [%[lut]], #16\n\t"                                                      \
    SUB(0, Q1_FIRST, "v28") SUB(1, Q1_NEXT, "v29") SUB(2, Q1_NEXT, "v30") SUB(3, Q1_NEXT, "v31")

static void q1_tile_dots(const uint8_t *w, const q1_lut *lut, int64_t nb, float out[BN_Q1_TILE]) {
    __asm__ volatile("movi v12.16b, #0\n\t"
                     "movi v13.16b, #0\n\t"
                     "movi v14.16b, #0\n\t"
                     "movi v15.16b, #0\n\t"
                     "movi v24.16b, #15\n\t"
                     "movi v25.16b, #2\n\t"
                     "movi v26.16b, #32\n\t"
                     "1:\n\t"
                     Q1_BLOCK_SUBS(Q1_TILE_SUB)
                     "ld1 {v0.8h, v1.8h}, [%[w]], #32\n\t"
                     "fcvtl v2.4s, v0.4h\n\t"
                     "fcvtl2 v3.4s, v0.8h\n\t"
                     "fcvtl v4.4s, v1.4h\n\t"
                     "fcvtl2 v5.4s, v1.8h\n\t"
                     "fmul v2.4s, v2.4s, v8.4s\n\t"
                     "fmul v3.4s, v3.4s, v9.4s\n\t"
                     "fmul v4.4s, v4.4s, v10.4s\n\t"
                     "fmul v5.4s, v5.4s, v11.4s\n\t"
                     "fadd v12.4s, v12.4s, v2.4s\n\t"
                     "fadd v13.4s, v13.4s, v3.4s\n\t"
                     "fadd v14.4s, v14.4s, v4.4s\n\t"
                     "fadd v15.4s, v15.4s, v5.4s\n\t"
                     "subs %[nb], %[nb], #1\n\t"
                     "b.ne 1b\n\t"
                     "st1 {v12.4s-v15.4s}, [%[out]]"
                     : [w] "+r"(w), [lut] "+r"(lut), [nb] "+r"(nb)
                     : [out] "r"(out)
                     : Q1_CLOBBERS);
}

/* Two adjacent tiles (A: rows 0-15, B: 16-31) split into nibbles once for a batch of tokens,
 * per block column: per plane, A's low and high nibbles then B's (one ld1 of 4 vectors), then
 * the 32 row scales in f32. Splitting once per tile pair instead of per token saves 8
 * instructions a sub-block per further token, and each table load serves 32 rows. */
typedef struct {
    uint8_t nib[BN_Q1_PLANES][2][2][BN_Q1_TILE]; /* [plane j][tile][low (group 2j), high (2j+1)] */
    float dw[2][BN_Q1_TILE];
} q1_pair_col;

static void q1_split_pair(const uint8_t *ta, const uint8_t *tb, int64_t nb, q1_pair_col *col) {
    const uint8x16_t m15 = vdupq_n_u8(15);
    for (int64_t i = 0; i < nb; i++, ta += BN_Q1_TILE_BLOCK, tb += BN_Q1_TILE_BLOCK, col++) {
        for (int j = 0; j < BN_Q1_PLANES; j += 4) {
            const uint8x16x4_t a = vld1q_u8_x4(ta + BN_Q1_TILE * j), b = vld1q_u8_x4(tb + BN_Q1_TILE * j);
            for (int p = 0; p < 4; p++) {
                const uint8x16x4_t n = {{vandq_u8(a.val[p], m15), vshrq_n_u8(a.val[p], 4), vandq_u8(b.val[p], m15),
                                         vshrq_n_u8(b.val[p], 4)}};
                vst1q_u8_x4(col->nib[j + p][0][0], n);
            }
        }
        const uint8_t *scales[2] = {ta + BN_Q1_PLANES * BN_Q1_TILE, tb + BN_Q1_PLANES * BN_Q1_TILE};
        for (int t = 0; t < 2; t++) {
            const uint16x8x2_t dh = vld1q_u16_x2((const uint16_t *)scales[t]);
            const float32x4x4_t d = {{vcvt_f32_f16(vreinterpret_f16_u16(vget_low_u16(dh.val[0]))),
                                      vcvt_high_f32_f16(vreinterpretq_f16_u16(dh.val[0])),
                                      vcvt_f32_f16(vreinterpret_f16_u16(vget_low_u16(dh.val[1]))),
                                      vcvt_high_f32_f16(vreinterpretq_f16_u16(dh.val[1]))}};
            vst1q_f32_x4(col->dw[t], d);
        }
    }
}

/* A split tile pair against one token's tables over nb >= 1 block columns, adding to
 * sumf[0..31] (in memory: the registers hold each plane's nibbles and tables once for both
 * tiles, the int16 sums and parts of both). Per plane: tables v0-v3, nibbles v4-v7 (A low,
 * A high, B low, B high), L and H in v9, v10 (A) and v11, v12 (B), A's lookups through v8,
 * B's through the tables (its lookups are their last use); int16 sums in v13, v14 (A) and v15,
 * v16 (B), part in v17-v20 (A) and v21-v24 (B). */
#define Q1_PAIR_PLANE(first)                                                                       \
    "ld1 {v0.16b-v3.16b}, [%[lut]], #64\n\t"                                                       \
    "ld1 {v4.16b-v7.16b}, [%[w]], #64\n\t"                                                         \
    Q1_LOOKUPS("v4", "v5", "v9", "v10", "v8", "v8", "v8", "v8", first)                             \
    Q1_LOOKUPS("v6", "v7", "v11", "v12", "v0", "v1", "v2", "v3", first)

#define Q1_PAIR_SUB(k, first, s)                                                                   \
    Q1_PAIR_PLANE(Q1_FIRST) Q1_PAIR_PLANE(Q1_NEXT)                                                 \
    Q1_ACC16("v13", "v14", "v9", "v10", Q1_FIRST) Q1_ACC16("v15", "v16", "v11", "v12", Q1_FIRST)   \
    Q1_PAIR_PLANE(Q1_FIRST) Q1_PAIR_PLANE(Q1_NEXT)                                                 \
    Q1_ACC16("v13", "v14", "v9", "v10", Q1_NEXT) Q1_ACC16("v15", "v16", "v11", "v12", Q1_NEXT)     \
    Q1_FLOAT("v13", "v14", "v0", "v1", "v2", "v3", s, "v17", "v18", "v19", "v20", k, first)        \
    Q1_FLOAT("v15", "v16", "v4", "v5", "v6", "v7", s, "v21", "v22", "v23", "v24", k, first)

/* sumf (16 floats at `sum`) += d_w * part, with d_w read from w into v_d and sumf into v_s. */
#define Q1_PAIR_SUMF(sum, d0, d1, d2, d3, s0, s3, p0, p1, p2, p3)                                 \
    "ld1 {" d0 ".4s-" d3 ".4s}, [%[w]], #64\n\t"                                                   \
    "ld1 {" s0 ".4s-" s3 ".4s}, [%[" sum "]]\n\t"                                                  \
    "fmul " d0 ".4s, " d0 ".4s, " p0 ".4s\n\t"                                                     \
    "fmul " d1 ".4s, " d1 ".4s, " p1 ".4s\n\t"                                                     \
    "fmul " d2 ".4s, " d2 ".4s, " p2 ".4s\n\t"                                                     \
    "fmul " d3 ".4s, " d3 ".4s, " p3 ".4s\n\t"

static void q1_pair_dots(const q1_pair_col *w, const q1_lut *lut, int64_t nb, float sumf[2 * BN_Q1_TILE]) {
    float *sumb = sumf + BN_Q1_TILE;
    __asm__ volatile("movi v25.16b, #2\n\t"
                     "movi v26.16b, #32\n\t"
                     "1:\n\t"
                     Q1_BLOCK_SUBS(Q1_PAIR_SUB)
                     Q1_PAIR_SUMF("suma", "v0", "v1", "v2", "v3", "v4", "v7", "v17", "v18", "v19", "v20")
                     "fadd v4.4s, v4.4s, v0.4s\n\t"
                     "fadd v5.4s, v5.4s, v1.4s\n\t"
                     "fadd v6.4s, v6.4s, v2.4s\n\t"
                     "fadd v7.4s, v7.4s, v3.4s\n\t"
                     "st1 {v4.4s-v7.4s}, [%[suma]]\n\t"
                     Q1_PAIR_SUMF("sumb", "v8", "v9", "v10", "v11", "v12", "v15", "v21", "v22", "v23", "v24")
                     "fadd v12.4s, v12.4s, v8.4s\n\t"
                     "fadd v13.4s, v13.4s, v9.4s\n\t"
                     "fadd v14.4s, v14.4s, v10.4s\n\t"
                     "fadd v15.4s, v15.4s, v11.4s\n\t"
                     "st1 {v12.4s-v15.4s}, [%[sumb]]\n\t"
                     "subs %[nb], %[nb], #1\n\t"
                     "b.ne 1b"
                     : [w] "+r"(w), [lut] "+r"(lut), [nb] "+r"(nb)
                     : [suma] "r"(sumf), [sumb] "r"(sumb)
                     : Q1_CLOBBERS);
}

/* ---- Q1_0: the GEMM ---- */

/* Tokens whose tables are built together and share each tile pair's split (q1_split_pair,
 * about 100 instructions per pair and block column: 0.2 per block and token at 16 tokens).
 * Their tables (1056 bytes per block column and token, 0.8 MB for 16 tokens of a 6144-wide
 * matrix) stream from L2. */
#define Q1_TOKEN_TILE 16
/* Block columns split at a time: 18 KB of split pair, kept in L1 while the tokens pass. */
#define Q1_SPLIT_COLS 16
/* Batches from this size take the split pair kernel (per tile, block column and token: about
 * 221 instructions plus 50 / tokens of splitting); one token takes the packed tile kernel
 * (about 261, its on-the-fly split included). */
#define Q1_PAIR_MIN_TOKENS 2

/* Rows of an unpacked matrix (prepared for another path): the reference dot per output. */
static void q1_gemm_unpacked(const bn_matrix *w, int64_t r0, int64_t r1, const uint8_t *act, size_t act_stride,
                             int n_tokens, float *y, int64_t y_stride) {
    for (int t = 0; t < n_tokens; t++)
        for (int64_t r = r0; r < r1; r++)
            bn_vec_dot_q1_0_q8_0_scalar(w->cols, &y[t * y_stride + r], w->data + (size_t)r * w->row_bytes,
                                        act + (size_t)t * act_stride);
}

/* Outputs of rows row .. row + n - 1 (computed for whole tiles) into y, those in [r0, r1). */
static void q1_store(float *y, const float *v, int64_t row, int n, int64_t r0, int64_t r1) {
    if (row >= r0 && row + n <= r1) {
        memcpy(y + row, v, (size_t)n * sizeof *v);
        return;
    }
    for (int l = 0; l < n; l++)
        if (row + l >= r0 && row + l < r1) y[row + l] = v[l];
}

void bn_gemm_q1_0_q8_0_neon(const bn_matrix *w, int64_t r0, int64_t r1, const void *act, size_t act_stride,
                            int n_tokens, float *y, int64_t y_stride) {
    const int64_t nb = w->cols / BN_QK1_0, split_cols = nb < Q1_SPLIT_COLS ? nb : Q1_SPLIT_COLS;
    const int ntt = n_tokens < Q1_TOKEN_TILE ? n_tokens : Q1_TOKEN_TILE;
    const size_t lut_bytes = sizeof(q1_lut) * (size_t)ntt * (size_t)nb;
    const size_t pair_bytes = ntt >= Q1_PAIR_MIN_TOKENS ? sizeof(q1_pair_col) * (size_t)split_cols : 0;
    q1_lut *lut = NULL;
    if (nb > 0 && w->packed && w->packed_layout == BN_Q1_LAYOUT_TILE16)
        lut = malloc(lut_bytes + pair_bytes + sizeof(float) * 2 * BN_Q1_TILE * (size_t)ntt);
    if (!lut) { /* unpacked, or no memory for the tables: the reference is slow but right */
        q1_gemm_unpacked(w, r0, r1, act, act_stride, n_tokens, y, y_stride);
        return;
    }
    q1_pair_col *col = (q1_pair_col *)((uint8_t *)lut + lut_bytes);
    float *sums = (float *)((uint8_t *)col + pair_bytes); /* [token][32 rows] */
    const size_t tile_bytes = (size_t)nb * BN_Q1_TILE_BLOCK;
    for (int t0 = 0; t0 < n_tokens; t0 += Q1_TOKEN_TILE) {
        const int nt = n_tokens - t0 < Q1_TOKEN_TILE ? n_tokens - t0 : Q1_TOKEN_TILE;
        for (int t = 0; t < nt; t++) {
            const bn_block_q8_0 *a = (const bn_block_q8_0 *)((const uint8_t *)act + (size_t)(t0 + t) * act_stride);
            for (int64_t i = 0; i < nb; i++) q1_build_lut(a + 4 * i, &lut[t * nb + i]);
        }
        float *yt = y + (int64_t)t0 * y_stride;
        for (int64_t row = r0 - r0 % BN_Q1_TILE; row < r1;) {
            const uint8_t *ta = (const uint8_t *)w->packed + (size_t)(row / BN_Q1_TILE) * tile_bytes;
            if (nt >= Q1_PAIR_MIN_TOKENS && row + BN_Q1_TILE < r1) {
                memset(sums, 0, sizeof(float) * 2 * BN_Q1_TILE * (size_t)nt);
                for (int64_t c0 = 0; c0 < nb; c0 += split_cols) {
                    const int64_t cn = nb - c0 < split_cols ? nb - c0 : split_cols;
                    q1_split_pair(ta + (size_t)c0 * BN_Q1_TILE_BLOCK, ta + tile_bytes + (size_t)c0 * BN_Q1_TILE_BLOCK,
                                  cn, col);
                    for (int t = 0; t < nt; t++) q1_pair_dots(col, lut + t * nb + c0, cn, sums + 2 * BN_Q1_TILE * t);
                }
                for (int t = 0; t < nt; t++) q1_store(yt + t * y_stride, sums + 2 * BN_Q1_TILE * t, row, 2 * BN_Q1_TILE, r0, r1);
                row += 2 * BN_Q1_TILE;
            } else {
                for (int t = 0; t < nt; t++) {
                    q1_tile_dots(ta, lut + t * nb, nb, sums);
                    q1_store(yt + t * y_stride, sums, row, BN_Q1_TILE, r0, r1);
                }
                row += BN_Q1_TILE;
            }
        }
    }
    free(lut);
}

/* ---- F32 -> Q8_0 activations, bit-identical to the reference quantizer (quants/quants.c): the same
 * amax (fmaxnm ignores NaN as fmaxf does), the same scalar d = amax / 127 and 1 / d, the same
 * products, rounded half away from zero as roundf (fcvtas), fp16 d by the hardware's
 * round-to-nearest-even conversion. ---- */

void bn_quantize_q8_0_neon(const float *x, void *dst, int64_t n) {
    bn_block_q8_0 *b = dst;
    for (int64_t i = 0; i < n / BN_QK8_0; i++, x += BN_QK8_0) {
        float32x4_t v[8], amax = vdupq_n_f32(0.0f);
        for (int k = 0; k < 8; k++) {
            v[k] = vld1q_f32(x + 4 * k);
            amax = vmaxnmq_f32(amax, vabsq_f32(v[k]));
        }
        const float d = vmaxnmvq_f32(amax) / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        b[i].d = vget_lane_u16(vreinterpret_u16_f16(vcvt_f16_f32(vdupq_n_f32(d))), 0);
        int16x8_t q16[4];
        for (int k = 0; k < 4; k++)
            q16[k] = vcombine_s16(vmovn_s32(vcvtaq_s32_f32(vmulq_n_f32(v[2 * k], id))),
                                  vmovn_s32(vcvtaq_s32_f32(vmulq_n_f32(v[2 * k + 1], id))));
        vst1q_s8(b[i].qs, vcombine_s8(vmovn_s16(q16[0]), vmovn_s16(q16[1])));
        vst1q_s8(b[i].qs + 16, vcombine_s8(vmovn_s16(q16[2]), vmovn_s16(q16[3])));
    }
}

/* ---- Q8_0 x Q8_0: exact integer block sums, the reference's float steps ---- */

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
    for (int64_t i = 0; i < n / BN_QK8_0; i++) {
        const float d = bn_arm_fp16_to_f32(x[i].d) * bn_arm_fp16_to_f32(y[i].d);
        sumf += (float)dot32_i8(x[i].qs, y[i].qs) * d;
    }
    *s = sumf;
}

/* ---- Ternary x Q8_K, in the scalar reference's order (llama.cpp's x86 one): eight integer
 * lanes, lane k summing code * q over offsets 4k..4k+3 of every 32-element group minus bsums 2k
 * and 2k+1, each fused-scaled by d_w * d_a into its own float accumulator. Codes c in {0,1,2}
 * stand for c - 1. Products are gathered per offset in a 32-element group first:
 * prod[j] holds offsets 8j..8j+7 (an int16 lane adds 8 products of at most 2 * 127). ---- */

typedef struct {
    int16x8_t prod[4];
} tq_offsets;

/* Codes c (16 lanes, offsets 16h..16h+15 of a group) times the 16 activations at q. */
static inline void tq_mla(tq_offsets *o, int h, uint8x16_t c, const int8_t *q) {
    const int8x16_t cs = vreinterpretq_s8_u8(c), qs = vld1q_s8(q);
    o->prod[2 * h] = vmlal_s8(o->prod[2 * h], vget_low_s8(cs), vget_low_s8(qs));
    o->prod[2 * h + 1] = vmlal_high_s8(o->prod[2 * h + 1], cs, qs);
}

/* One block's eight lanes (minus the bsum pairs), fused-scaled by d into acc. */
static inline void tq_finish(const tq_offsets *o, const bn_block_q8_K *y, float dw, float32x4_t acc[2]) {
    const int16x8x2_t bsums = vld1q_s16_x2(y->bsums);
    const int16x8_t sums = vpaddq_s16(vpaddq_s16(o->prod[0], o->prod[1]), vpaddq_s16(o->prod[2], o->prod[3]));
    const int16x8_t lanes = vsubq_s16(sums, vpaddq_s16(bsums.val[0], bsums.val[1]));
    const float32x4_t d = vdupq_n_f32(y->d * dw);
    acc[0] = vfmaq_f32(acc[0], vcvtq_f32_s32(vmovl_s16(vget_low_s16(lanes))), d);
    acc[1] = vfmaq_f32(acc[1], vcvtq_f32_s32(vmovl_high_s16(lanes)), d);
}

/* TQ2_0: byte m of each 32-byte half holds elements m + 32l (l = 0..3) in bits 2l..2l+1. */
void bn_vec_dot_tq2_0_q8_K_neon(int64_t n, float *s, const void *w, const void *a) {
    const bn_block_tq2_0 *x = w;
    const bn_block_q8_K *y = a;
    float32x4_t acc[2] = {vdupq_n_f32(0.0f), vdupq_n_f32(0.0f)};
    for (int64_t i = 0; i < n / BN_QK_K; i++) {
        tq_offsets o = {{vdupq_n_s16(0), vdupq_n_s16(0), vdupq_n_s16(0), vdupq_n_s16(0)}};
        for (int half = 0; half < 2; half++) {
            const uint8x16x2_t packed = vld1q_u8_x2(x[i].qs + 32 * half);
            for (int l = 0; l < 4; l++)
                for (int h = 0; h < 2; h++)
                    tq_mla(&o, h, vandq_u8(vshlq_u8(packed.val[h], vdupq_n_s8((int8_t)(-2 * l))), vdupq_n_u8(3)),
                           y[i].qs + 128 * half + 32 * l + 16 * h);
        }
        tq_finish(&o, &y[i], bn_arm_fp16_to_f32(x[i].d), acc);
    }
    *s = bn_arm_tq_reduce(acc);
}

/* TQ1_0 code of the trit at position p3 (3^n) of base-3 bytes b: floor(3 * (b * 3^n mod 256) / 256),
 * computed as ((v + v/2) / 2) / 64 so no lane overflows a byte. */
static inline uint8x16_t tq1_codes(uint8x16_t b, uint8x16_t p3) {
    const uint8x16_t v = vmulq_u8(b, p3);
    return vshrq_n_u8(vhaddq_u8(v, vshrq_n_u8(v, 1)), 6);
}

/* TQ1_0: qs[0..31] hold 5 trits of elements 32n + m, qs[32..47] 5 of elements 160 + 16n + m
 * (offsets m or 16 + m of their group, by the parity of n), qh[0..3] 4 of elements
 * 240 + 4n + m (offsets 16 + 4n + m): the last 16 elements take one vector, qh repeated with
 * the power of 3 of each lane. */
void bn_vec_dot_tq1_0_q8_K_neon(int64_t n, float *s, const void *w, const void *a) {
    static const uint8_t qh_pow3[16] = {1, 1, 1, 1, 3, 3, 3, 3, 9, 9, 9, 9, 27, 27, 27, 27};
    static const uint8_t pow3[5] = {1, 3, 9, 27, 81};
    const bn_block_tq1_0 *x = w;
    const bn_block_q8_K *y = a;
    float32x4_t acc[2] = {vdupq_n_f32(0.0f), vdupq_n_f32(0.0f)};
    for (int64_t i = 0; i < n / BN_QK_K; i++) {
        tq_offsets o = {{vdupq_n_s16(0), vdupq_n_s16(0), vdupq_n_s16(0), vdupq_n_s16(0)}};
        const uint8x16x2_t b32 = vld1q_u8_x2(x[i].qs);
        const uint8x16_t b16 = vld1q_u8(x[i].qs + 32);
        for (int t = 0; t < 5; t++) {
            const uint8x16_t p3 = vdupq_n_u8(pow3[t]);
            for (int h = 0; h < 2; h++) tq_mla(&o, h, tq1_codes(b32.val[h], p3), y[i].qs + 32 * t + 16 * h);
            tq_mla(&o, t & 1, tq1_codes(b16, p3), y[i].qs + 160 + 16 * t);
        }
        uint32_t qh;
        memcpy(&qh, x[i].qh, 4);
        tq_mla(&o, 1, tq1_codes(vreinterpretq_u8_u32(vdupq_n_u32(qh)), vld1q_u8(qh_pow3)), y[i].qs + 240);
        tq_finish(&o, &y[i], bn_arm_fp16_to_f32(x[i].d), acc);
    }
    *s = bn_arm_tq_reduce(acc);
}

#endif
