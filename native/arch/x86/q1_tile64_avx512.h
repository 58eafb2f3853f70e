/* The AVX-512 Q1_0 tile loop, included by kernels_avx512.c once per way of looking the tables up
 * (no include guard): Q1_TARGET is the target attribute, Q1_VARIANT(name) names this variant's
 * functions, and Q1_VARIANT(q1_index) / Q1_VARIANT(q1_lookup), defined before the include, are
 * its lookups. Everything else (the design, the arithmetic) is kernels_avx512.c's. */

/* One tile's 64 rows against nt tokens (1 to Q1_PASS_TOKENS; a constant where this is inlined)
 * over nblk block columns, continuing acc (token t at acc + 64 t, rows in bn_q1_tile64_slot
 * order; its tables at tab + t * tab_stride, scales at d8 + t * d8_stride). The reference
 * starts partial at 0.0f; starting it at the first product differs only in the sign of a zero
 * partial, and acc + (+-0) is the same either way since acc never is -0. `skip` is the distance
 * from the end of this chunk of the tile to the start of the next tile's chunk, for the
 * prefetches. */
static inline __attribute__((always_inline)) Q1_TARGET void Q1_VARIANT(q1_tile64)(
    const uint8_t *tb, int64_t nblk, size_t skip, const uint8_t *tab, size_t tab_stride, const float *d8,
    size_t d8_stride, float *acc, int nt) {
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
                const __m512i idx = Q1_VARIANT(q1_index)(p, g);
                for (int t = 0; t < nt; t++) {
                    __m512i l, h;
                    Q1_VARIANT(q1_lookup)(tab + t * tab_stride, g, idx, &l, &h);
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

/* Rows [r0, r1) for nt tokens over blocks [i0, i0 + nblk), the sums so far carried in y (when
 * i0 > 0); token t's tables at tab + t * nblk blocks. A range that cuts a tile computes the
 * whole tile and writes only its own rows. Each tile runs once per Q1_PASS_TOKENS tokens (the
 * rest one at a time) while its weights stay in L1. */
static Q1_TARGET void Q1_VARIANT(q1_rows_chunk64)(const bn_matrix *w, int64_t r0, int64_t r1, int64_t i0,
                                                  int64_t nblk, const uint8_t *tab, const float *d8, int nt, float *y,
                                                  int64_t y_stride) {
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
            Q1_VARIANT(q1_tile64)(tb, nblk, skip, tab + t * tab_stride, tab_stride, d8 + t * d8_stride, d8_stride,
                                  acc[t], Q1_PASS_TOKENS);
        switch (nt - t) {
        case 3: Q1_VARIANT(q1_tile64)(tb, nblk, skip, tab + t * tab_stride, tab_stride, d8 + t * d8_stride, d8_stride, acc[t], 3); break;
        case 2: Q1_VARIANT(q1_tile64)(tb, nblk, skip, tab + t * tab_stride, tab_stride, d8 + t * d8_stride, d8_stride, acc[t], 2); break;
        case 1: Q1_VARIANT(q1_tile64)(tb, nblk, skip, tab + t * tab_stride, tab_stride, d8 + t * d8_stride, d8_stride, acc[t], 1); break;
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

