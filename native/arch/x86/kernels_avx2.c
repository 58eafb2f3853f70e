/* x86 AVX2 kernels. The file is built into every x86 binary without -mavx2: each function
 * carries its own target attribute and is only reached when bn_isa_select found AVX2, FMA
 * and F16C at run time. */
#include "kernels/kernels_impl.h"

#if defined(BN_HAVE_X86_KERNELS)
#include <immintrin.h>
#include <string.h>
#include "quants/quants.h"

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

/* ---- Q1_0 GEMV and GEMM by lookup tables (the weights in 32-row tiles, see kernels/kernels_impl.h) ----
 * Instead of expanding sign bits per weight, each group of 4 activations gets a 16-entry table
 * of its signed sums (entry e = sum_i (bit i of e ? q_i : -q_i), |entry| <= 508 as Q8_0 values
 * are within +-127): one vpshufb then looks up one group for 32 rows, whose 4 bits are one
 * nibble of a plane byte (low nibble: group 2j of plane j, high nibble: group 2j + 1). A tile
 * plane is 32 rows wide, a 256-bit vector, and the tables are broadcast to both 128-bit lanes,
 * so sums never move between lanes.
 * vpshufb reads bytes, so each entry is split as 32 * high + low, low in [0, 31] and high in
 * [-16, 15]: a Q8_0 sub-block's 8 lookups per row then sum in bytes, lows to at most 248
 * (unsigned), highs within [-128, 120]; one interleave and vpmaddubsw by (1, 32) per 16 rows
 * rejoin them. vpmaddubsw reads the high sums as unsigned (256 too much when negative), so the
 * int16 result equals the dot S modulo 8192; as |S| <= 32 * 127 < 4096, shifting it left by 3
 * gives 8 * S exactly. The int16 lanes widen to int32 as even rows (vpmaddwd by 1) and odd rows
 * (arithmetic shift) instead of by lane-crossing sign extension, so a tile's sums come out in
 * the order of bn_q1_tile32_slot (the packer stores the row scales in that order too).
 * The 8 is taken out by scaling the Q8_0 scales by 1/8 when the tables are built: both are
 * exact (powers of two, far from float's subnormals: fp16 scales are >= 2^-24), so each product
 * d8 / 8 * (8 * S) rounds exactly like the reference's d8 * S. That product is exact in float
 * (11 significant bits of an fp16 scale times 12 of |S| < 4096), so adding it to the partial sum
 * by one fused multiply-add rounds once, exactly as the reference's separate add.
 * Integer sums are exact and the float steps are the scalar reference's, in its order, so the
 * results are bit-identical to it. */

/* Tables of one group for one token: 16 low parts, then 16 high parts. */
#define Q1_GROUP_BYTES BN_Q1_GROUP_TABLE
#define Q1_BLOCK_TABLE_BYTES (2 * BN_Q1_PLANES * Q1_GROUP_BYTES)
/* Block-token tables built per pass (64 KiB: they stay in L2 while the rows stream by; passes
 * over fewer columns at a time, to keep them in L1, made the GEMV of 2048 x 6144 ~15% slower,
 * the weights then coming as strided runs). */
#define Q1_TABLE_BLOCKS 64
/* Tile-blocks ahead to prefetch (every line of one): 9 KiB, a few hundred ns of work, about one
 * memory latency, so a GEMV's weights arrive as they are needed (4 or 8 were slower, 24 no
 * better). Into L2 (T1), not L1: a prefetch to L1 (T0 or NTA) holds one of L1's few miss
 * buffers for a whole memory latency, which capped a thread at ~15 GB/s of weights on Zen 4
 * (GEMV from memory 1.55-1.9 ns per block with NTA, 1.0-1.3 with T1, 1 thread); the L2 takes
 * many more misses at once, and the loads then find the lines one L2 latency away. NTA had
 * been ~3% faster on Zen 3. */
#define Q1_PREFETCH 16
/* Tokens per pass over a chunk of weights: a tile's chunk is then read from memory once and
 * from L1 by the other tokens. */
#define Q1_TOKEN_TILE 4
/* Tokens sharing one run of the tile loop, which isolates each plane's nibbles once for them:
 * GEMM ~10% faster with 2; with 3 the sums no longer fit the registers and it gained nothing. */
#define Q1_PASS_TOKENS 2

/* GCC's temporary expression replacement moves the table loads and lookups of a whole block
 * next to their first use and then needs more than 16 ymm registers: the tile loop spilled on
 * every sub-block (72 stack accesses per block) and ran ~5% slower. */
#pragma GCC push_options
#pragma GCC optimize("no-tree-ter")

/* Entry e of the table of q[4g..4g+3], as int16 lane e: two vpmaddubsw of |q| against +-1 sign
 * patterns that carry q's own sign (|q| <= 127, so the unsigned operand is exact). */
static inline BN_AVX2 __m256i subset_sums(__m256i q8, int g) {
#define Q1_PAIR(a) a, a + 1
#define Q1_PAIRS(a) Q1_PAIR(a), Q1_PAIR(a), Q1_PAIR(a), Q1_PAIR(a), Q1_PAIR(a), Q1_PAIR(a), Q1_PAIR(a), Q1_PAIR(a)
    static const int8_t pick[2][2][32] = {{{Q1_PAIRS(0), Q1_PAIRS(0)}, {Q1_PAIRS(2), Q1_PAIRS(2)}},
                                          {{Q1_PAIRS(4), Q1_PAIRS(4)}, {Q1_PAIRS(6), Q1_PAIRS(6)}}};
#undef Q1_PAIRS
#undef Q1_PAIR
    /* lane e: signs of bits (0, 1) and (2, 3) of e */
#define Q1_S(e, b) (((e) >> (b) & 1) ? 1 : -1)
#define Q1_E(e, b) Q1_S(e, b), Q1_S(e, b + 1)
#define Q1_E16(b) Q1_E(0, b), Q1_E(1, b), Q1_E(2, b), Q1_E(3, b), Q1_E(4, b), Q1_E(5, b), Q1_E(6, b), Q1_E(7, b), \
                  Q1_E(8, b), Q1_E(9, b), Q1_E(10, b), Q1_E(11, b), Q1_E(12, b), Q1_E(13, b), Q1_E(14, b), Q1_E(15, b)
    static const int8_t signs[2][32] = {{Q1_E16(0)}, {Q1_E16(2)}};
#undef Q1_E16
#undef Q1_E
#undef Q1_S
    __m256i sum = _mm256_setzero_si256();
    for (int h = 0; h < 2; h++) {
        __m256i q = _mm256_shuffle_epi8(q8, _mm256_loadu_si256((const __m256i *)pick[g][h]));
        __m256i s = _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)signs[h]), q);
        sum = _mm256_add_epi16(sum, _mm256_maddubs_epi16(_mm256_abs_epi8(q), s));
    }
    return sum;
}

/* Stores the table of one group (int16 entries e): the low parts e & 31, then the high parts
 * e >> 5. vpacksswb works per 128-bit lane; vpermq restores entry order. */
static inline BN_AVX2 void q1_store_table(__m256i e, uint8_t *dst) {
    const __m256i parts = _mm256_packs_epi16(_mm256_and_si256(e, _mm256_set1_epi16(31)), _mm256_srai_epi16(e, 5));
    _mm256_store_si256((__m256i *)dst, _mm256_permute4x64_epi64(parts, 0xd8));
}

/* The tables of one token for blocks [i0, i0 + nblk) of its Q8_0 row (group g of a block at
 * g * Q1_GROUP_BYTES), and its Q8_0 scales divided by 8 (see above). The AVX-512 gemm reads
 * them too (kernels_impl.h). */
BN_AVX2 void bn_q1_tables_avx2(const void *act, int64_t i0, int64_t nblk, uint8_t *tab, float *d8) {
    const bn_block_q8_0 *a = act;
    for (int64_t b = 0; b < 4 * nblk; b++) {
        const bn_block_q8_0 *blk = &a[4 * i0 + b];
        d8[b] = _cvtsh_ss(blk->d) * 0.125f;
        for (int j = 0; j < 4; j++, tab += 2 * Q1_GROUP_BYTES) {
            int64_t eight;
            memcpy(&eight, blk->qs + 8 * j, 8);
            const __m256i q = _mm256_set1_epi64x(eight);
            q1_store_table(subset_sums(q, 0), tab);
            q1_store_table(subset_sums(q, 1), tab + Q1_GROUP_BYTES);
        }
    }
}

/* One tile's 32 rows against nt tokens (1 or Q1_PASS_TOKENS; a constant where this is inlined)
 * over nblk block columns, continuing acc (token t at acc + 32 t, rows in bn_q1_tile32_slot
 * order; its tables at tab + t * tab_stride, scales at d8 + t * d8_stride): per token,
 * partial = sum_k d8_k * isum_k, then acc += d_w * partial, as the scalar reference. The reference starts partial at 0.0f; starting it at the first product
 * differs only in the sign of a zero partial, and acc + (+-0) is the same either way since acc
 * never is -0 (it starts at +0, and x + y is -0 only when both are). acc is read and written
 * once per block, so the loop keeps in registers only what a block needs (16 ymm: the sums of 4
 * tokens spilled to the stack on every sub-block). `skip` is the distance from the end of this chunk of the
 * tile to the start of the next tile's chunk, for the prefetches. */
static inline __attribute__((always_inline)) BN_AVX2 void q1_tile(const uint8_t *tb, int64_t nblk, size_t skip,
                                                                  const uint8_t *tab, size_t tab_stride, const float *d8,
                                                                  size_t d8_stride, float *acc, int nt) {
    const __m256i nibble = _mm256_set1_epi8(15);
    const __m256i rejoin = _mm256_set1_epi16(0x2001); /* bytes (1, 32): low + 32 * high */
    const __m256i even = _mm256_set1_epi32(1);
    for (int64_t i = 0; i < nblk; i++, tb += BN_Q1_TILE32_BLOCK, tab += Q1_BLOCK_TABLE_BYTES, d8 += 4) {
        const uint8_t *pf = tb + Q1_PREFETCH * BN_Q1_TILE32_BLOCK + (i + Q1_PREFETCH >= nblk ? skip : 0);
        for (int l = 0; l < BN_Q1_TILE32_BLOCK; l += 64) _mm_prefetch((const char *)(pf + l), _MM_HINT_T1);
        __m256 part[Q1_PASS_TOKENS][4];
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) {
            /* per token and row: the sums of the low and of the high parts of its 8 lookups */
            __m256i lo[Q1_PASS_TOKENS], hi[Q1_PASS_TOKENS];
            for (int t = 0; t < nt; t++) lo[t] = hi[t] = _mm256_setzero_si256();
#pragma GCC unroll 8
            for (int g = 8 * k; g < 8 * k + 8; g++) {
                const __m256i p = _mm256_loadu_si256((const __m256i *)(tb + BN_Q1_TILE32 * (g / 2)));
                const __m256i idx = _mm256_and_si256(g % 2 ? _mm256_srli_epi16(p, 4) : p, nibble);
                for (int t = 0; t < nt; t++) {
                    const uint8_t *tg = tab + t * tab_stride + g * Q1_GROUP_BYTES;
                    lo[t] = _mm256_add_epi8(lo[t], _mm256_shuffle_epi8(_mm256_broadcastsi128_si256(_mm_load_si128((const __m128i *)tg)), idx));
                    hi[t] = _mm256_add_epi8(hi[t], _mm256_shuffle_epi8(_mm256_broadcastsi128_si256(_mm_load_si128((const __m128i *)(tg + 16))), idx));
                }
            }
            for (int t = 0; t < nt; t++) {
                /* 8 * S of rows 0-7 | 16-23, then of rows 8-15 | 24-31 */
                const __m256i s8[2] = {_mm256_slli_epi16(_mm256_maddubs_epi16(_mm256_unpacklo_epi8(lo[t], hi[t]), rejoin), 3),
                                       _mm256_slli_epi16(_mm256_maddubs_epi16(_mm256_unpackhi_epi8(lo[t], hi[t]), rejoin), 3)};
                const __m256 d = _mm256_broadcast_ss(d8 + t * d8_stride + k);
                for (int h = 0; h < 2; h++) {
                    const __m256 v[2] = {_mm256_cvtepi32_ps(_mm256_madd_epi16(s8[h], even)),
                                         _mm256_cvtepi32_ps(_mm256_srai_epi32(s8[h], 16))};
                    for (int e = 0; e < 2; e++)
                        part[t][2 * h + e] = k == 0 ? _mm256_mul_ps(d, v[e]) : _mm256_fmadd_ps(d, v[e], part[t][2 * h + e]);
                }
            }
        }
        const uint8_t *scales = tb + BN_Q1_PLANES * BN_Q1_TILE32;
        for (int m = 0; m < 4; m++) {
            const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(scales + 16 * m)));
            for (int t = 0; t < nt; t++) {
                float *a = acc + t * BN_Q1_TILE32 + 8 * m;
                _mm256_storeu_ps(a, _mm256_add_ps(_mm256_loadu_ps(a), _mm256_mul_ps(dw, part[t][m])));
            }
        }
    }
}

/* 32 consecutive floats <-> a tile's sums (bn_q1_tile32_slot order). */
static inline BN_AVX2 void q1_to_slots(const float *x, float *slots) {
    for (int h = 0; h < 2; h++) {
        const __m256 a = _mm256_loadu_ps(x + 8 * h), b = _mm256_loadu_ps(x + 16 + 8 * h);
        const __m256 first = _mm256_permute2f128_ps(a, b, 0x20), second = _mm256_permute2f128_ps(a, b, 0x31);
        _mm256_storeu_ps(slots + 16 * h, _mm256_shuffle_ps(first, second, _MM_SHUFFLE(2, 0, 2, 0)));
        _mm256_storeu_ps(slots + 16 * h + 8, _mm256_shuffle_ps(first, second, _MM_SHUFFLE(3, 1, 3, 1)));
    }
}

static inline BN_AVX2 void q1_from_slots(const float *slots, float *x) {
    for (int h = 0; h < 2; h++) {
        const __m256 even_rows = _mm256_loadu_ps(slots + 16 * h), odd_rows = _mm256_loadu_ps(slots + 16 * h + 8);
        const __m256 lo = _mm256_unpacklo_ps(even_rows, odd_rows), hi = _mm256_unpackhi_ps(even_rows, odd_rows);
        _mm256_storeu_ps(x + 8 * h, _mm256_permute2f128_ps(lo, hi, 0x20));
        _mm256_storeu_ps(x + 16 + 8 * h, _mm256_permute2f128_ps(lo, hi, 0x31));
    }
}

/* Rows [r0, r1) for nt tokens over blocks [i0, i0 + nblk), the sums so far carried in y (when
 * i0 > 0); token t's tables at tab + t * nblk blocks. A range that cuts a tile computes the
 * whole tile and writes only its own rows. Each tile runs once per pair of tokens (and once
 * for an odd one) while its weights stay in L1. */
static BN_AVX2 void q1_rows_chunk(const bn_matrix *w, int64_t r0, int64_t r1, int64_t i0, int64_t nblk,
                                  const uint8_t *tab, const float *d8, int nt, float *y, int64_t y_stride) {
    const int64_t nb = w->cols / BN_QK1_0;
    const size_t skip = (size_t)(nb - nblk) * BN_Q1_TILE32_BLOCK;
    for (int64_t row = r0 - r0 % BN_Q1_TILE32; row < r1; row += BN_Q1_TILE32) {
        const uint8_t *tb = (const uint8_t *)w->packed + (size_t)(row / BN_Q1_TILE32 * nb + i0) * BN_Q1_TILE32_BLOCK;
        const int64_t first = row > r0 ? row : r0, end = row + BN_Q1_TILE32 < r1 ? row + BN_Q1_TILE32 : r1;
        const int whole = first == row && end == row + BN_Q1_TILE32;
        float acc[Q1_TOKEN_TILE][BN_Q1_TILE32];
        for (int t = 0; t < nt; t++) {
            float *yt = y + t * y_stride, rows[BN_Q1_TILE32];
            if (i0 == 0) {
                for (int m = 0; m < 4; m++) _mm256_storeu_ps(acc[t] + 8 * m, _mm256_setzero_ps());
            } else if (whole) {
                q1_to_slots(yt + row, acc[t]);
            } else {
                for (int64_t r = first; r < end; r++) rows[r - row] = yt[r];
                q1_to_slots(rows, acc[t]);
            }
        }
        const size_t tab_stride = (size_t)nblk * Q1_BLOCK_TABLE_BYTES, d8_stride = (size_t)(4 * nblk);
        int t = 0;
        for (; t + Q1_PASS_TOKENS <= nt; t += Q1_PASS_TOKENS)
            q1_tile(tb, nblk, skip, tab + t * tab_stride, tab_stride, d8 + t * d8_stride, d8_stride, acc[t], Q1_PASS_TOKENS);
        for (; t < nt; t++) q1_tile(tb, nblk, skip, tab + t * tab_stride, tab_stride, d8 + t * d8_stride, d8_stride, acc[t], 1);
        for (t = 0; t < nt; t++) {
            float *yt = y + t * y_stride, rows[BN_Q1_TILE32];
            if (whole) {
                q1_from_slots(acc[t], yt + row);
            } else {
                q1_from_slots(acc[t], rows);
                for (int64_t r = first; r < end; r++) yt[r] = rows[r - row];
            }
        }
    }
}

BN_AVX2 void bn_gemm_q1_0_q8_0_avx2(const bn_matrix *w, int64_t r0, int64_t r1, const void *act, size_t act_stride,
                                    int n_tokens, float *y, int64_t y_stride) {
    _Alignas(32) uint8_t tab[Q1_TABLE_BLOCKS * Q1_BLOCK_TABLE_BYTES];
    float d8[4 * Q1_TABLE_BLOCKS];
    const int64_t nb = w->cols / BN_QK1_0;
    if (!w->packed || w->packed_layout != BN_Q1_LAYOUT_TILE32) { /* prepared for another path */
        for (int t = 0; t < n_tokens; t++)
            for (int64_t r = r0; r < r1; r++)
                bn_vec_dot_q1_0_q8_0_avx2(w->cols, &y[t * y_stride + r], w->data + (size_t)r * w->row_bytes,
                                          (const uint8_t *)act + (size_t)t * act_stride);
        return;
    }
    for (int t0 = 0; t0 < n_tokens; t0 += Q1_TOKEN_TILE) {
        const int nt = n_tokens - t0 < Q1_TOKEN_TILE ? n_tokens - t0 : Q1_TOKEN_TILE;
        const int64_t chunk = Q1_TABLE_BLOCKS / nt;
        for (int64_t i0 = 0; i0 < nb; i0 += chunk) {
            const int64_t nblk = nb - i0 < chunk ? nb - i0 : chunk;
            for (int t = 0; t < nt; t++)
                bn_q1_tables_avx2((const uint8_t *)act + (size_t)(t0 + t) * act_stride, i0, nblk,
                                  tab + t * nblk * Q1_BLOCK_TABLE_BYTES, d8 + t * 4 * nblk);
            q1_rows_chunk(w, r0, r1, i0, nblk, tab, d8, nt, y + t0 * y_stride, y_stride);
        }
    }
}

#pragma GCC pop_options

/* roundf (halves away from zero) of each lane, exactly: truncate, then step one away from zero
 * where the dropped fraction (exact: |v| < 2^23) is at least one half. */
static inline BN_AVX2 __m256 round_half_away(__m256 v) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __m256 up = _mm256_cmp_ps(_mm256_andnot_ps(sign, _mm256_sub_ps(v, t)), _mm256_set1_ps(0.5f), _CMP_GE_OQ);
    const __m256 step = _mm256_or_ps(_mm256_and_ps(v, sign), _mm256_set1_ps(1.0f));
    return _mm256_add_ps(t, _mm256_and_ps(up, step));
}

/* F32 -> Q8_0 with the reference quantizer's arithmetic (quants/quants.c): the same scalar d and 1/d,
 * the same products, roundf; so the blocks are bit-identical to it. d goes to fp16 by F16C's
 * round-to-nearest-even, the reference's rounding (a call to its software conversion made GCC
 * spill the block's four vectors around it: 14.5 ns a block on Zen 4 with it, 12 without). */
BN_AVX2 void bn_quantize_q8_0_avx2(const float *x, void *dst, int64_t n) {
    bn_block_q8_0 *b = dst;
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (int64_t i = 0; i < n / BN_QK8_0; i++, x += BN_QK8_0) {
        __m256 v[4], amax = _mm256_setzero_ps();
        for (int k = 0; k < 4; k++) {
            v[k] = _mm256_loadu_ps(x + 8 * k);
            amax = _mm256_max_ps(amax, _mm256_andnot_ps(sign, v[k]));
        }
        __m128 m = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
        m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        const float d = _mm_cvtss_f32(_mm_max_ss(m, _mm_shuffle_ps(m, m, 1))) / 127.0f;
        const __m256 id = _mm256_set1_ps(d != 0.0f ? 1.0f / d : 0.0f);
        b[i].d = _cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        __m256i q[4];
        for (int k = 0; k < 4; k++) q[k] = _mm256_cvttps_epi32(round_half_away(_mm256_mul_ps(v[k], id)));
        /* packing interleaves the 128-bit lanes; the permutation restores element order */
        const __m256i bytes = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
        _mm256_storeu_si256((__m256i *)b[i].qs,
                            _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
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
