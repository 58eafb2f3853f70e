/* AVX2 + FMA + F16C attention tile (attention/attention.c picks it at run time; the file is built into
 * every x86 binary without -mavx2, each function carrying its own target attribute).
 * fp16 cache entries are converted in registers (vcvtph2ps) as they are loaded: no F32 copy. */
#include "attention/attention_impl.h"

#if defined(BN_HAVE_X86_KERNELS)
#include <immintrin.h>
#include <math.h>

#define BN_AVX2 __attribute__((target("avx2,fma,f16c")))
#define BN_AVX2_INLINE static inline __attribute__((target("avx2,fma,f16c"), always_inline))

BN_AVX2_INLINE const void *kv_row(const void *base, int pos, size_t stride, int f16) {
    return (const char *)base + (size_t)pos * stride * (f16 ? 2 : 4);
}

BN_AVX2_INLINE __m256 load8(const void *row, int i, int f16) {
    if (f16) return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)row + i)));
    return _mm256_loadu_ps((const float *)row + i);
}

/* Keys ahead whose rows are prefetched: about one memory latency of work. */
#define BN_ATTN_PREFETCH 8

/* Scores of R query rows against keys k0 and k1: s[r * ss] = q_r . k0, s[r * ss + 1] = q_r . k1.
 * Each (row, key) pair is summed in 8 lanes over head_dim, then the lanes by one fixed tree, so
 * a score does not depend on R or on which key it is paired with. */
BN_AVX2_INLINE void scores_rx2(const float *const *q, int R, const void *k0, const void *k1, int f16, int hd,
                               float *s, size_t ss) {
    __m256 acc[4][2];
    for (int r = 0; r < R; r++) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
    for (int d = 0; d < hd; d += 8) {
        const __m256 a = load8(k0, d, f16), b = load8(k1, d, f16);
        for (int r = 0; r < R; r++) {
            const __m256 x = _mm256_loadu_ps(q[r] + d);
            acc[r][0] = _mm256_fmadd_ps(x, a, acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(x, b, acc[r][1]);
        }
    }
    for (int r = 0; r < R; r++) {
        const __m256 h = _mm256_hadd_ps(acc[r][0], acc[r][1]);
        const __m128 p = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
        _mm_storel_pi((__m64 *)(s + r * ss), _mm_hadd_ps(p, p));
    }
}

/* Scores of rows r0 .. r0 + R - 1 for keys [j0, j1), key j at row j - j0 of src (the cache, or a
 * packed F32 block); keys in pairs, an odd last key paired with itself (the duplicate lands in
 * the padding or is overwritten by the next block). `ahead`: keys of src past j1 that a prefetch
 * may reach for (the rest of the context when src is the cache). */
BN_AVX2_INLINE void scores(const bn_attn_tile *t, int r0, int R, const void *src, size_t stride, int f16, int j0,
                           int j1, int ahead) {
    float *s = t->s + (size_t)r0 * t->s_stride;
    const size_t row_bytes = (size_t)t->head_dim * (f16 ? 2 : 4);
    for (int j = j0; j < j1; j += 2) {
        const void *k0 = kv_row(src, j - j0, stride, f16), *k1 = kv_row(src, (j + 1 < j1 ? j + 1 : j) - j0, stride, f16);
        if (j + BN_ATTN_PREFETCH + 1 < j1 + ahead)
            for (size_t b = 0; b < 2 * row_bytes; b += 64)
                _mm_prefetch((const char *)kv_row(src, j + BN_ATTN_PREFETCH - j0 + (int)(b / row_bytes), stride, f16) +
                                 b % row_bytes, _MM_HINT_T0);
        if (R == 4) scores_rx2(t->q + r0, 4, k0, k1, f16, t->head_dim, s + j, t->s_stride);
        else if (R == 2) scores_rx2(t->q + r0, 2, k0, k1, f16, t->head_dim, s + j, t->s_stride);
        else scores_rx2(t->q + r0, 1, k0, k1, f16, t->head_dim, s + j, t->s_stride);
    }
}

/* e^x for x <= 0 (and -inf): x = n ln2 + f with |f| <= ln2/2 (ln2 split in two for an exact
 * n ln2), e^f by its degree-7 Taylor polynomial (truncation below 6e-9 relative), times 2^n
 * built in the exponent bits. Within 2 ulp of expf; below -87.33 (where 2^n would leave the
 * normal range) the result is 0 rather than a denormal. */
BN_AVX2_INLINE __m256 exp8(__m256 x) {
    const __m256 lo = _mm256_set1_ps(-87.33f);
    const __m256 keep = _mm256_cmp_ps(x, lo, _CMP_GE_OQ);
    x = _mm256_max_ps(x, lo);
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 f = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693145751953125f), x);
    f = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.428606820309417e-6f), f);
    __m256 p = _mm256_set1_ps(1.0f / 5040);
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.0f / 720));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.0f / 120));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.0f / 24));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.0f / 6));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.0f));
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_and_ps(_mm256_mul_ps(p, _mm256_castsi256_ps(e)), keep);
}

BN_AVX2_INLINE float hsum8(__m256 v) {
    __m128 x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    x = _mm_add_ps(x, _mm_movehl_ps(x, x));
    return _mm_cvtss_f32(_mm_add_ss(x, _mm_movehdup_ps(x)));
}

/* Row r's scores become its weights softmax(scale * s), zero from n_kv[r] up to n_zero (the keys
 * later rows of the tile read). Normalized here rather than the outputs later: the same order as
 * llama.cpp, whose quantized activations can round the other way on a last-bit difference. */
BN_AVX2_INLINE void softmax_row(const bn_attn_tile *t, int r, int n_zero) {
    float *s = t->s + (size_t)r * t->s_stride;
    const int n = t->n_kv[r], n8 = (n + 7) & ~7;
    for (int j = n; j < n8; j++) s[j] = -INFINITY;
    __m256 vmax = _mm256_set1_ps(-INFINITY);
    for (int j = 0; j < n8; j += 8) vmax = _mm256_max_ps(vmax, _mm256_loadu_ps(s + j));
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(vmax), _mm256_extractf128_ps(vmax, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    const __m256 max = _mm256_broadcastss_ps(m4), scale = _mm256_set1_ps(t->scale);
    __m256 sum = _mm256_setzero_ps();
    for (int j = 0; j < n8; j += 8) {
        const __m256 e = exp8(_mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(s + j), max), scale));
        _mm256_storeu_ps(s + j, e);
        sum = _mm256_add_ps(sum, e);
    }
    const __m256 inv = _mm256_set1_ps(1.0f / hsum8(sum));
    for (int j = 0; j < n8; j += 8) _mm256_storeu_ps(s + j, _mm256_mul_ps(_mm256_loadu_ps(s + j), inv));
    for (int j = n8; j < n_zero; j++) s[j] = 0.0f;
}

/* out_r[d .. d + 8D) += sum over keys j in [j0, j1) of w_r[j] v_j (from 0 when j0 is 0), key j at
 * row j - j0 of src, for R rows: one fused multiply-add per key in key order for every output,
 * whatever R, D and the key blocks. Reading the cache in place, it prefetches the same part of
 * the row one key block on: a block's sweeps over its outputs then bring in all of the next
 * block's rows, a block's work ahead of their use (a DRAM latency is several sweeps' work). */
BN_AVX2_INLINE void values_rxd(const bn_attn_tile *t, int r0, int R, int d, int D, const void *src, size_t stride,
                               int f16, int j0, int j1, int ahead) {
    const float *w = t->s + (size_t)r0 * t->s_stride;
    const size_t elem = f16 ? 2 : 4;
    __m256 acc[4][4];
    for (int r = 0; r < R; r++)
        for (int i = 0; i < D; i++) acc[r][i] = j0 ? _mm256_loadu_ps(t->out[r0 + r] + d + 8 * i) : _mm256_setzero_ps();
    for (int j = j0; j < j1; j++) {
        const void *row = kv_row(src, j - j0, stride, f16);
        if (j + BN_ATTN_KEY_BLOCK < j1 + ahead)
            for (size_t b = 0; b < 8 * (size_t)D * elem; b += 64)
                _mm_prefetch((const char *)kv_row(src, j + BN_ATTN_KEY_BLOCK - j0, stride, f16) + d * elem + b,
                             _MM_HINT_T0);
        __m256 v[4];
        for (int i = 0; i < D; i++) v[i] = load8(row, d + 8 * i, f16);
        for (int r = 0; r < R; r++) {
            const __m256 p = _mm256_broadcast_ss(w + r * t->s_stride + j);
            for (int i = 0; i < D; i++) acc[r][i] = _mm256_fmadd_ps(p, v[i], acc[r][i]);
        }
    }
    for (int r = 0; r < R; r++)
        for (int i = 0; i < D; i++) _mm256_storeu_ps(t->out[r0 + r] + d + 8 * i, acc[r][i]);
}

/* values_rxd with R and D as constants: R * D accumulators, at most 8 of the 16 registers. */
BN_AVX2_INLINE void values_chunk(const bn_attn_tile *t, int r0, int R, int d, int D, const void *src, size_t stride,
                                 int f16, int j0, int j1, int ahead) {
    if (R == 4 && D == 2) values_rxd(t, r0, 4, d, 2, src, stride, f16, j0, j1, ahead);
    else if (R == 4) values_rxd(t, r0, 4, d, 1, src, stride, f16, j0, j1, ahead);
    else if (R == 2 && D == 4) values_rxd(t, r0, 2, d, 4, src, stride, f16, j0, j1, ahead);
    else if (R == 2 && D == 2) values_rxd(t, r0, 2, d, 2, src, stride, f16, j0, j1, ahead);
    else if (R == 2) values_rxd(t, r0, 2, d, 1, src, stride, f16, j0, j1, ahead);
    else if (D == 4) values_rxd(t, r0, 1, d, 4, src, stride, f16, j0, j1, ahead);
    else if (D == 2) values_rxd(t, r0, 1, d, 2, src, stride, f16, j0, j1, ahead);
    else values_rxd(t, r0, 1, d, 1, src, stride, f16, j0, j1, ahead);
}

/* The outputs in sweeps over the keys of as many vectors as the accumulators allow (fewer sweeps:
 * fewer reloads of the weights and of each row's lines). */
BN_AVX2_INLINE void values(const bn_attn_tile *t, int r0, int R, const void *src, size_t stride, int f16, int j0,
                           int j1, int ahead) {
    const int widest = R == 4 ? 2 : 4;
    for (int d = 0; d < t->head_dim;) {
        const int left = (t->head_dim - d) / 8, D = left >= widest ? widest : left >= 2 ? 2 : 1;
        values_chunk(t, r0, R, d, D, src, stride, f16, j0, j1, ahead);
        d += 8 * D;
    }
}

/* Rows in blocks of 4 (then 2, 1) that share every K and V load. */
static int block_rows(int left) { return left >= 4 ? 4 : left >= 2 ? 2 : 1; }

/* Cache rows [j0, j1) as F32, contiguous in t->pack. */
BN_AVX2_INLINE void pack(const bn_attn_tile *t, const void *base, int f16, int j0, int j1) {
    for (int j = j0; j < j1; j++) {
        const void *row = kv_row(base, j, t->kv_stride, f16);
        float *dst = t->pack + (size_t)(j - j0) * t->head_dim;
        for (int d = 0; d < t->head_dim; d += 8) _mm256_storeu_ps(dst + d, load8(row, d, f16));
    }
}

/* scores() or values() of rows [r0, r0 + R) against keys [j0, j1) of src, `ahead` more keys after them. */
typedef void (*row_block_fn)(const bn_attn_tile *t, int r0, int R, const void *src, size_t stride, int f16, int j0,
                             int j1, int ahead);

/* One pass of fn over the cache rows src (K or V) in blocks of BN_ATTN_KEY_BLOCK keys, each used
 * by every row block that sees part of it while it is in L1: values() makes one sweep over a
 * block's keys per chunk of 16 or 32 outputs, which over a whole long context would fetch every
 * row from memory again on each sweep. `packed`: each block is first copied as F32 into t->pack (a prefill's many
 * row blocks then share one fp16 conversion); else read in place. */
BN_AVX2_INLINE void key_blocks(const bn_attn_tile *t, const void *src, int f16, int nk, row_block_fn fn,
                               int packed) {
    for (int b0 = 0; b0 < nk; b0 += BN_ATTN_KEY_BLOCK) {
        const int b1 = b0 + BN_ATTN_KEY_BLOCK < nk ? b0 + BN_ATTN_KEY_BLOCK : nk;
        if (packed) pack(t, src, f16, b0, b1);
        const void *block = packed ? (const void *)t->pack : kv_row(src, b0, t->kv_stride, f16);
        for (int r0 = 0; r0 < t->n_rows;) {
            const int R = block_rows(t->n_rows - r0), last = t->n_kv[r0 + R - 1], j1 = last < b1 ? last : b1;
            if (j1 > b0) {
                if (packed) fn(t, r0, R, block, t->head_dim, 0, b0, j1, 0);
                else fn(t, r0, R, block, t->kv_stride, f16, b0, j1, nk - j1);
            }
            r0 += R;
        }
    }
}

/* Decode (one or two row blocks) reads the cache in place; a prefill's row blocks share packed
 * blocks. */
BN_AVX2_INLINE void tile(const bn_attn_tile *t, int f16) {
    const int n = t->n_rows, nk = t->n_kv[n - 1], packed = n > 4;
    key_blocks(t, t->k, f16, nk, scores, packed);
    for (int r = 0; r < n; r++) softmax_row(t, r, nk);
    key_blocks(t, t->v, f16, nk, values, packed);
}

BN_AVX2 void bn_attn_tile_avx2(const bn_attn_tile *t) {
    if (t->kv_f16) tile(t, 1);
    else tile(t, 0);
}

#endif
