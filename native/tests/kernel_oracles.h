/* Helpers shared by the kernel tests. */
#ifndef BN_TEST_KERNEL_ORACLES_H
#define BN_TEST_KERNEL_ORACLES_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "harness.h"
#include "kernels/kernels.h"
#include "kernels/kernels_impl.h"
#include "quants/quants.h"

/* Dequantized activation row (Q8_K has no to_float: it is d * q). */
static inline void act_to_float(uint32_t act_type, const void *blocks, float *out, int64_t n) {
    if (act_type != BN_TYPE_Q8_K) {
        bn_type_get(act_type)->to_float(blocks, out, n);
        return;
    }
    const bn_block_q8_K *b = blocks;
    for (int64_t i = 0; i < n; i++) out[i] = b[i / BN_QK_K].d * b[i / BN_QK_K].qs[i % BN_QK_K];
}

/* A Q1_0 gemm as the kernel table holds it. */
typedef void (*bn_q1_gemm_fn)(const bn_matrix *w, int64_t r0, int64_t r1, const void *act, size_t act_stride,
                              int n_tokens, float *y, int64_t y_stride);

/* Q1_0 gemm on raw blocks, past what the quantizers produce, against the scalar reference bit for
 * bit: every fp16 scale class (full 11-bit mantissas, subnormals, zero, the largest finite),
 * activations at q_min and 127 matched to the weight signs (|sub-block sum| = 32 * |q_min| and
 * 4064, the bounds the exactness of the fused d8 step rests on), random bits and values, on
 * tile-cutting row ranges, batches around the token tiles, and more columns than one pass of the
 * lookup tables covers at the larger batches. The matrix is packed for pack_isa. Returns the
 * outputs that differ (or that were written outside the range); *cases counts ranges x batches. */
static inline int q1_raw_block_mismatches(bn_q1_gemm_fn gemm, bn_isa pack_isa, int q_min, uint32_t *rng, int *cases) {
    static const uint16_t scales[] = {0x3bff, 0x07ff, 0x03ff, 0x0001, 0x0000, 0x7bff, 0x2e66, 0x1c01};
    static const int tokens[] = {1, 2, 3, 15, 16, 17, 33};
    static const int64_t shapes[][2] = {{1, 128}, {16, 128}, {31, 256}, {48, 384}, {70, 512}, {130, 256}, {37, 2560}};
    int bad = 0;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int64_t rows = shapes[s][0], cols = shapes[s][1], nb = cols / BN_QK1_0;
        const int max_t = tokens[sizeof tokens / sizeof tokens[0] - 1];
        bn_block_q1_0 *w = malloc((size_t)(rows * nb) * sizeof *w);
        bn_block_q8_0 *a = malloc((size_t)(max_t * nb * 4) * sizeof *a);
        for (int64_t i = 0; i < rows * nb; i++) {
            w[i].d = scales[(*rng >> 3) % 8];
            for (int j = 0; j < 16; j++) w[i].qs[j] = (uint8_t)((bn_test_rand_unit(rng) + 1.0f) * 127.5f);
            if (i % 5 == 0) memset(w[i].qs, i % 10 ? 0xff : 0x00, 16);
        }
        /* token t: random q, or every q at the extreme whose sign matches row 0's weights */
        for (int t = 0; t < max_t; t++) {
            for (int64_t b = 0; b < 4 * nb; b++) {
                bn_block_q8_0 *ab = &a[t * 4 * nb + b];
                ab->d = scales[(t + b) % 8];
                for (int j = 0; j < 32; j++) {
                    const int bit = w[b / 4].qs[(b % 4) * 4 + j / 8] >> (j % 8) & 1;
                    ab->qs[j] = t % 3 == 1 ? (bit ? 127 : q_min) : (int8_t)(bn_test_rand_unit(rng) * -q_min);
                }
            }
        }
        char err[256];
        bn_matrix m;
        CHECK(bn_matrix_init(&m, BN_TYPE_Q1_0, rows, cols, w, err, sizeof err) == 0, "init: %s", err);
        CHECK(bn_matrix_prepare(&m, pack_isa, err, sizeof err) == 0, "prepare: %s", err);
        const size_t arow = (size_t)nb * 4 * sizeof *a;
        float *got = malloc((size_t)(rows * max_t) * sizeof(float));
        const int64_t cuts[][2] = {{0, rows}, {rows / 3, rows - rows / 4}, {rows - 1, rows}, {17 % rows, rows}};
        for (size_t c = 0; c < sizeof cuts / sizeof cuts[0]; c++) {
            const int64_t r0 = cuts[c][0], r1 = cuts[c][1];
            if (r0 >= r1) continue;
            for (size_t k = 0; k < sizeof tokens / sizeof tokens[0]; k++, (*cases)++) {
                const int nt = tokens[k];
                for (int64_t i = 0; i < rows * nt; i++) got[i] = NAN;
                gemm(&m, r0, r1, a, arow, nt, got, rows);
                for (int t = 0; t < nt; t++) {
                    for (int64_t r = 0; r < rows; r++) {
                        float want;
                        bn_vec_dot_q1_0_q8_0_scalar(cols, &want, w + r * nb, (const uint8_t *)a + t * arow);
                        const float g = got[t * rows + r];
                        bad += r >= r0 && r < r1 ? memcmp(&g, &want, sizeof g) != 0 : !isnan(g);
                    }
                }
            }
        }
        bn_matrix_release(&m);
        free(got);
        free(a);
        free(w);
    }
    return bad;
}

#endif
