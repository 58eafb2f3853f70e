/* x86 AVX-512 kernels. Like kernels_avx2.c, the file is built into every x86 binary without
 * -mavx512*: each function carries its own target attribute and is only reached when
 * bn_isa_select found AVX-512 F, BW, VL and VNNI (and the AVX2 path's features) at run time. */
#include "kernels/kernels_impl.h"

#if defined(BN_HAVE_X86_KERNELS)
#include <string.h>
#include "quants/quants.h"

/* Scalar float steps round as written (explicit _fmadd_ intrinsics are unaffected), so the
 * kernel keeps the reference's float sequence and stays bit-identical to it. */
#pragma GCC optimize("fp-contract=off")

#if defined(BN_AVX512_EMULATED)
/* native/tests/avx512_emulated.c compiles this file on SIMDe's portable intrinsics: no target. */
#define BN_AVX512
#else
#include <immintrin.h>
#define BN_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))
#endif

/* ---- Q1_0 GEMV and GEMM by lookup tables, the weights in 64-row tiles (kernels/kernels_impl.h) ----
 * The AVX2 gemm's design (arch/x86/kernels_avx2.c, which explains the arithmetic) at twice the
 * width: a tile plane is 64 rows, one 512-bit load and one cache line, and each vpshufb looks
 * up one group of 4 activations for 64 rows, the group's 16-entry tables (built by the AVX2
 * code, bn_q1_tables_avx2) broadcast to the four 128-bit lanes. Per Q8_0 sub-block and row the
 * low and high parts of 8 lookups are summed in bytes and rejoined by vpmaddubsw into 8 * S
 * (exact modulo 2^16, |S| <= 32 * 127); the int16 lanes widen to int32 as even and odd rows, so
 * a tile's sums come out in bn_q1_tile64_slot order, the order the packer stores the scales
 * in. The float steps are the scalar reference's, in its order: per row and token, partial =
 * sum_k (d8_k / 8) * (8 * S_k) (exact products, so the fused multiply-add rounds as the
 * reference's add), then acc += d_w * partial. Bit-identical to bn_vec_dot_q1_0_q8_0_scalar.
 * With 32 vector registers, four tokens share one run over a tile's planes, each plane's
 * nibbles isolated once for all four. */

#define Q1_BLOCK_TABLE_BYTES (2 * BN_Q1_PLANES * BN_Q1_GROUP_TABLE)
/* Block-token tables built per pass (64 KiB, in L2 while the rows stream by). They are read by
 * 128-bit broadcast loads; storing each half four times over for plain 512-bit loads (4x the
 * bytes) measured 10-40% slower on Zen 5, at 8, 16 or 32 blocks a pass. */
#define Q1_TABLE_BLOCKS 64
/* Tile-blocks ahead to prefetch (every line of one), into L2 as in the AVX2 gemm (Zen 4, GEMV
 * from memory, 1 thread: 0.92-1.07 ns per block with T1 at 4, 8 or 16 ahead; 1.24-1.57 with
 * NTA or T0). */
#define Q1_PREFETCH 8
/* Tokens per pass over a chunk of weights (then read from L1 by all but the first). */
#define Q1_TOKEN_TILE 8
/* Tokens sharing one run of the tile loop. */
#define Q1_PASS_TOKENS 4

/* As in the AVX2 file: without this GCC moves a block's loads and lookups next to their first
 * use and spills (724 stack accesses in the gemm with it on, 154 without; GEMV ~10% faster, on a noisy machine). */
#pragma GCC push_options
#pragma GCC optimize("no-tree-ter")

/* One tile's 64 rows against nt tokens (1 to Q1_PASS_TOKENS; a constant where this is inlined)
 * over nblk block columns, continuing acc (token t at acc + 64 t, rows in bn_q1_tile64_slot
 * order; its tables at tab + t * tab_stride, scales at d8 + t * d8_stride). The reference
 * starts partial at 0.0f; starting it at the first product differs only in the sign of a zero
 * partial, and acc + (+-0) is the same either way since acc never is -0. `skip` is the distance
 * from the end of this chunk of the tile to the start of the next tile's chunk, for the
 * prefetches. */
static inline __attribute__((always_inline)) BN_AVX512 void q1_tile64(const uint8_t *tb, int64_t nblk, size_t skip,
                                                                      const uint8_t *tab, size_t tab_stride,
                                                                      const float *d8, size_t d8_stride, float *acc,
                                                                      int nt) {
    const __m512i nibble = _mm512_set1_epi8(15);
    const __m512i rejoin = _mm512_set1_epi16(0x2001); /* bytes (1, 32): low + 32 * high */
    const __m512i even = _mm512_set1_epi32(1);
    for (int64_t i = 0; i < nblk; i++, tb += BN_Q1_TILE64_BLOCK, tab += Q1_BLOCK_TABLE_BYTES, d8 += 4) {
        const uint8_t *pf = tb + Q1_PREFETCH * BN_Q1_TILE64_BLOCK + (i + Q1_PREFETCH >= nblk ? skip : 0);
        for (int l = 0; l < BN_Q1_TILE64_BLOCK; l += 64) _mm_prefetch((const char *)(pf + l), _MM_HINT_T1);
        __m512 part[Q1_PASS_TOKENS][4];
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) {
            /* per token and row: the sums of the low and of the high parts of its 8 lookups */
            __m512i lo[Q1_PASS_TOKENS], hi[Q1_PASS_TOKENS];
#pragma GCC unroll 8
            for (int g = 8 * k; g < 8 * k + 8; g++) {
                const __m512i p = _mm512_loadu_si512((const void *)(tb + BN_Q1_TILE64 * (g / 2)));
                const __m512i idx = _mm512_and_si512(g % 2 ? _mm512_srli_epi16(p, 4) : p, nibble);
                for (int t = 0; t < nt; t++) {
                    const uint8_t *tg = tab + t * tab_stride + g * BN_Q1_GROUP_TABLE;
                    const __m512i l = _mm512_shuffle_epi8(_mm512_broadcast_i32x4(_mm_load_si128((const __m128i *)tg)), idx);
                    const __m512i h = _mm512_shuffle_epi8(_mm512_broadcast_i32x4(_mm_load_si128((const __m128i *)(tg + 16))), idx);
                    lo[t] = g == 8 * k ? l : _mm512_add_epi8(lo[t], l);
                    hi[t] = g == 8 * k ? h : _mm512_add_epi8(hi[t], h);
                }
            }
            for (int t = 0; t < nt; t++) {
                /* 8 * S of rows 0-7 of each lane of 16, then of rows 8-15 */
                const __m512i s8[2] = {
                    _mm512_slli_epi16(_mm512_maddubs_epi16(_mm512_unpacklo_epi8(lo[t], hi[t]), rejoin), 3),
                    _mm512_slli_epi16(_mm512_maddubs_epi16(_mm512_unpackhi_epi8(lo[t], hi[t]), rejoin), 3)};
                const __m512 d = _mm512_set1_ps(d8[t * d8_stride + k]);
                for (int h = 0; h < 2; h++) {
                    const __m512 v[2] = {_mm512_cvtepi32_ps(_mm512_madd_epi16(s8[h], even)),
                                         _mm512_cvtepi32_ps(_mm512_srai_epi32(s8[h], 16))};
                    for (int e = 0; e < 2; e++)
                        part[t][2 * h + e] = k == 0 ? _mm512_mul_ps(d, v[e]) : _mm512_fmadd_ps(d, v[e], part[t][2 * h + e]);
                }
            }
        }
        const uint8_t *scales = tb + BN_Q1_PLANES * BN_Q1_TILE64;
        for (int m = 0; m < 4; m++) {
            const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(scales + 32 * m)));
            for (int t = 0; t < nt; t++) {
                float *a = acc + t * BN_Q1_TILE64 + 16 * m;
                _mm512_storeu_ps(a, _mm512_add_ps(_mm512_loadu_ps(a), _mm512_mul_ps(dw, part[t][m])));
            }
        }
    }
}

/* out_q = (a.lane q, b.lane q, c.lane q, d.lane q): a transpose of 128-bit lanes, its own inverse. */
static inline BN_AVX512 void q1_transpose_lanes(__m512 a, __m512 b, __m512 c, __m512 d, __m512 out[4]) {
    const __m512 ab0 = _mm512_shuffle_f32x4(a, b, 0x44), ab1 = _mm512_shuffle_f32x4(a, b, 0xee);
    const __m512 cd0 = _mm512_shuffle_f32x4(c, d, 0x44), cd1 = _mm512_shuffle_f32x4(c, d, 0xee);
    out[0] = _mm512_shuffle_f32x4(ab0, cd0, 0x88);
    out[1] = _mm512_shuffle_f32x4(ab0, cd0, 0xdd);
    out[2] = _mm512_shuffle_f32x4(ab1, cd1, 0x88);
    out[3] = _mm512_shuffle_f32x4(ab1, cd1, 0xdd);
}

/* 64 consecutive floats <-> a tile's sums (bn_q1_tile64_slot order). Per lane, the unpacks of
 * the even- and odd-row vectors give rows 0-3 and 4-7 (of 0-7, then of 8-15); the lane
 * transpose gathers a lane of 16 rows. */
static inline BN_AVX512 void q1_from_slots64(const float *slots, float *x) {
    const __m512 p0 = _mm512_loadu_ps(slots), p1 = _mm512_loadu_ps(slots + 16);
    const __m512 p2 = _mm512_loadu_ps(slots + 32), p3 = _mm512_loadu_ps(slots + 48);
    __m512 rows[4];
    q1_transpose_lanes(_mm512_unpacklo_ps(p0, p1), _mm512_unpackhi_ps(p0, p1), _mm512_unpacklo_ps(p2, p3),
                       _mm512_unpackhi_ps(p2, p3), rows);
    for (int q = 0; q < 4; q++) _mm512_storeu_ps(x + 16 * q, rows[q]);
}

static inline BN_AVX512 void q1_to_slots64(const float *x, float *slots) {
    __m512 u[4];
    q1_transpose_lanes(_mm512_loadu_ps(x), _mm512_loadu_ps(x + 16), _mm512_loadu_ps(x + 32), _mm512_loadu_ps(x + 48), u);
    for (int h = 0; h < 2; h++) {
        _mm512_storeu_ps(slots + 32 * h, _mm512_shuffle_ps(u[2 * h], u[2 * h + 1], _MM_SHUFFLE(2, 0, 2, 0)));
        _mm512_storeu_ps(slots + 32 * h + 16, _mm512_shuffle_ps(u[2 * h], u[2 * h + 1], _MM_SHUFFLE(3, 1, 3, 1)));
    }
}

/* Rows [r0, r1) for nt tokens over blocks [i0, i0 + nblk), the sums so far carried in y (when
 * i0 > 0); token t's tables at tab + t * nblk blocks. A range that cuts a tile computes the
 * whole tile and writes only its own rows. Each tile runs once per Q1_PASS_TOKENS tokens (the
 * rest one at a time) while its weights stay in L1. */
static BN_AVX512 void q1_rows_chunk64(const bn_matrix *w, int64_t r0, int64_t r1, int64_t i0, int64_t nblk,
                                      const uint8_t *tab, const float *d8, int nt, float *y, int64_t y_stride) {
    const int64_t nb = w->cols / BN_QK1_0;
    const size_t skip = (size_t)(nb - nblk) * BN_Q1_TILE64_BLOCK;
    const size_t tab_stride = (size_t)nblk * Q1_BLOCK_TABLE_BYTES, d8_stride = (size_t)(4 * nblk);
    for (int64_t row = r0 - r0 % BN_Q1_TILE64; row < r1; row += BN_Q1_TILE64) {
        const uint8_t *tb = (const uint8_t *)w->packed + (size_t)(row / BN_Q1_TILE64 * nb + i0) * BN_Q1_TILE64_BLOCK;
        const int64_t first = row > r0 ? row : r0, end = row + BN_Q1_TILE64 < r1 ? row + BN_Q1_TILE64 : r1;
        const int whole = first == row && end == row + BN_Q1_TILE64;
        _Alignas(64) float acc[Q1_TOKEN_TILE][BN_Q1_TILE64];
        for (int t = 0; t < nt; t++) {
            float *yt = y + t * y_stride, rows[BN_Q1_TILE64];
            if (i0 == 0) {
                for (int m = 0; m < 4; m++) _mm512_store_ps(acc[t] + 16 * m, _mm512_setzero_ps());
            } else if (whole) {
                q1_to_slots64(yt + row, acc[t]);
            } else {
                for (int64_t r = first; r < end; r++) rows[r - row] = yt[r];
                q1_to_slots64(rows, acc[t]);
            }
        }
        int t = 0;
        for (; t + Q1_PASS_TOKENS <= nt; t += Q1_PASS_TOKENS)
            q1_tile64(tb, nblk, skip, tab + t * tab_stride, tab_stride, d8 + t * d8_stride, d8_stride, acc[t],
                      Q1_PASS_TOKENS);
        switch (nt - t) {
        case 3: q1_tile64(tb, nblk, skip, tab + t * tab_stride, tab_stride, d8 + t * d8_stride, d8_stride, acc[t], 3); break;
        case 2: q1_tile64(tb, nblk, skip, tab + t * tab_stride, tab_stride, d8 + t * d8_stride, d8_stride, acc[t], 2); break;
        case 1: q1_tile64(tb, nblk, skip, tab + t * tab_stride, tab_stride, d8 + t * d8_stride, d8_stride, acc[t], 1); break;
        default: break;
        }
        for (t = 0; t < nt; t++) {
            float *yt = y + t * y_stride, rows[BN_Q1_TILE64];
            if (whole) {
                q1_from_slots64(acc[t], yt + row);
            } else {
                q1_from_slots64(acc[t], rows);
                for (int64_t r = first; r < end; r++) yt[r] = rows[r - row];
            }
        }
    }
}

#pragma GCC pop_options

BN_AVX512 void bn_gemm_q1_0_q8_0_avx512(const bn_matrix *w, int64_t r0, int64_t r1, const void *act,
                                        size_t act_stride, int n_tokens, float *y, int64_t y_stride) {
    if (!w->packed || w->packed_layout != BN_Q1_LAYOUT_TILE64) { /* prepared for another path, or not at all */
        bn_gemm_q1_0_q8_0_avx2(w, r0, r1, act, act_stride, n_tokens, y, y_stride);
        return;
    }
    _Alignas(64) uint8_t tab[Q1_TABLE_BLOCKS * Q1_BLOCK_TABLE_BYTES];
    float d8[4 * Q1_TABLE_BLOCKS];
    const int64_t nb = w->cols / BN_QK1_0;
    for (int t0 = 0; t0 < n_tokens; t0 += Q1_TOKEN_TILE) {
        const int nt = n_tokens - t0 < Q1_TOKEN_TILE ? n_tokens - t0 : Q1_TOKEN_TILE;
        const int64_t chunk = Q1_TABLE_BLOCKS / nt;
        for (int64_t i0 = 0; i0 < nb; i0 += chunk) {
            const int64_t nblk = nb - i0 < chunk ? nb - i0 : chunk;
            for (int t = 0; t < nt; t++)
                bn_q1_tables_avx2((const uint8_t *)act + (size_t)(t0 + t) * act_stride, i0, nblk,
                                  tab + t * nblk * Q1_BLOCK_TABLE_BYTES, d8 + t * 4 * nblk);
            q1_rows_chunk64(w, r0, r1, i0, nblk, tab, d8, nt, y + t0 * y_stride, y_stride);
        }
    }
}

#endif
