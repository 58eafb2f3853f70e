/* x86 AVX-512 kernels. Like kernels_avx2.c, the file is built into every x86 binary without
 * -mavx512*: each function carries its own target attribute and is only reached when
 * bn_isa_select found AVX-512 F, BW, VL and VNNI (and the AVX2 path's features) at run time,
 * the avx512vbmi path's when it also found VBMI (Ice Lake and later, Zen 4 and later; not
 * Skylake-SP or Cascade Lake). */
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
#define BN_AVX512_VBMI
#else
#include <immintrin.h>
#define BN_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))
#define BN_AVX512_VBMI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,avx2,fma,f16c")))
#endif

/* ---- Q1_0 GEMV and GEMM by lookup tables, the weights in 64-row tiles (kernels/kernels_impl.h) ----
 * The AVX2 gemm's design (arch/x86/kernels_avx2.c, which explains the arithmetic) at twice the
 * width: a tile plane is 64 rows, one 512-bit load and one cache line, and each lookup (vpshufb,
 * or vpermb where the CPU has VBMI: q1_lookup_*) serves one group of 4 activations for 64 rows,
 * in the group's 16-entry tables (built by the AVX2 code, bn_q1_tables_avx2). Per Q8_0 sub-block
 * and row the low and high parts of 8 lookups are summed in bytes and rejoined by vpmaddubsw
 * into 8 * S (exact modulo 2^16, |S| <= 32 * 127); the int16 lanes widen to int32 as even and
 * odd rows, so a tile's sums come out in bn_q1_tile64_slot order, the order the packer stores
 * the scales in. The float steps are the scalar reference's, in its order: per row and token, partial =
 * sum_k (d8_k / 8) * (8 * S_k) (exact products, so the fused multiply-add rounds as the
 * reference's add), then acc += d_w * partial. Bit-identical to bn_vec_dot_q1_0_q8_0_scalar.
 * With 32 vector registers, four tokens share one run over a tile's planes, each plane's
 * nibbles isolated once for all four. */

#define Q1_BLOCK_TABLE_BYTES (2 * BN_Q1_PLANES * BN_Q1_GROUP_TABLE)
/* Block-token tables built per pass (64 KiB, in L2 while the rows stream by). vpshufb reads them
 * by 128-bit broadcast loads; storing each half four times over for plain 512-bit loads (4x the
 * bytes) measured 10-40% slower on Zen 5, at 8, 16 or 32 blocks a pass. For vpermb those copies
 * would let the plane bytes index as they are (no masking: 32 fewer operations per tile-block and
 * token), but they stay in L1 only in passes of up to 6 blocks: on Zen 4 a GEMV in cache ran 5-8%
 * faster that way and decode from memory 30% slower, its weights then coming as strided runs. */
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

/* The lookups of group g for 64 rows. q1_index: each row's 4 weight signs of the group (a nibble
 * of the plane that holds groups g & ~1 and g | 1); q1_lookup: the low and the high parts of the
 * rows' table entries, tab being the token's tables of the block. */

/* vpshufb looks up within 128-bit lanes, so each 16-byte half-table is broadcast to all four. */
static inline __attribute__((always_inline)) BN_AVX512 __m512i q1_index_shufb(__m512i plane, int g) {
    return _mm512_and_si512(g % 2 ? _mm512_srli_epi16(plane, 4) : plane, _mm512_set1_epi8(15));
}

static inline __attribute__((always_inline)) BN_AVX512 void q1_lookup_shufb(const uint8_t *tab, int g, __m512i idx,
                                                                           __m512i *lo, __m512i *hi) {
    const uint8_t *tg = tab + g * BN_Q1_GROUP_TABLE;
    *lo = _mm512_shuffle_epi8(_mm512_broadcast_i32x4(_mm_load_si128((const __m128i *)tg)), idx);
    *hi = _mm512_shuffle_epi8(_mm512_broadcast_i32x4(_mm_load_si128((const __m128i *)(tg + 16))), idx);
}

/* vpermb (VBMI) looks up in all 64 bytes of a register, so no broadcast: the two groups of a
 * plane have their tables side by side, [even low, even high, odd low, odd high] in 16-byte
 * parts, and a plain load there serves the low parts of both (index bit 5 picks the odd group's),
 * another 16 bytes on the high parts. The odd group's index gets bit 5 in the same instruction
 * that masks its nibble: the lookups cost no more instructions than vpshufb's, less the
 * broadcasts (Zen 4: the GEMV 0.71-0.76 ns per block instead of 0.82-0.86, weights in cache). */
static inline __attribute__((always_inline)) BN_AVX512_VBMI __m512i q1_index_vbmi(__m512i plane, int g) {
    const __m512i nibble = _mm512_set1_epi8(15);
    /* 0xEA: (a & b) | c */
    return g % 2 ? _mm512_ternarylogic_epi32(_mm512_srli_epi16(plane, 4), nibble, _mm512_set1_epi8(32), 0xEA)
                 : _mm512_and_si512(plane, nibble);
}

static inline __attribute__((always_inline)) BN_AVX512_VBMI void q1_lookup_vbmi(const uint8_t *tab, int g, __m512i idx,
                                                                               __m512i *lo, __m512i *hi) {
    const uint8_t *pair = tab + (g & ~1) * BN_Q1_GROUP_TABLE;
    *lo = _mm512_permutexvar_epi8(idx, _mm512_loadu_si512((const void *)pair));
    *hi = _mm512_permutexvar_epi8(idx, _mm512_loadu_si512((const void *)(pair + 16)));
}

#define Q1_TARGET BN_AVX512
#define Q1_VARIANT(name) name##_shufb
#include "arch/x86/q1_tile64_avx512.h"
#undef Q1_TARGET
#undef Q1_VARIANT
#define Q1_TARGET BN_AVX512_VBMI
#define Q1_VARIANT(name) name##_vbmi
#include "arch/x86/q1_tile64_avx512.h"
#undef Q1_TARGET
#undef Q1_VARIANT
#pragma GCC pop_options

typedef void q1_rows_fn(const bn_matrix *w, int64_t r0, int64_t r1, int64_t i0, int64_t nblk, const uint8_t *tab,
                        const float *d8, int nt, float *y, int64_t y_stride);

/* Builds the lookup tables pass by pass, and `rows` runs the tiles through each. */
static BN_AVX512 void q1_gemm64(q1_rows_fn *rows, const bn_matrix *w, int64_t r0, int64_t r1, const void *act,
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
            rows(w, r0, r1, i0, nblk, tab, d8, nt, y + t0 * y_stride, y_stride);
        }
    }
}

BN_AVX512 void bn_gemm_q1_0_q8_0_avx512(const bn_matrix *w, int64_t r0, int64_t r1, const void *act,
                                        size_t act_stride, int n_tokens, float *y, int64_t y_stride) {
    q1_gemm64(q1_rows_chunk64_shufb, w, r0, r1, act, act_stride, n_tokens, y, y_stride);
}

BN_AVX512_VBMI void bn_gemm_q1_0_q8_0_avx512vbmi(const bn_matrix *w, int64_t r0, int64_t r1, const void *act,
                                                 size_t act_stride, int n_tokens, float *y, int64_t y_stride) {
    q1_gemm64(q1_rows_chunk64_vbmi, w, r0, r1, act, act_stride, n_tokens, y, y_stride);
}

#endif
