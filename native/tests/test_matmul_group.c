/* bn_matmul_group against one bn_matmul per matrix: the same products, bit for bit, on every
 * supported path and thread count, for groups whose row counts are not multiples of the row
 * split, groups with mixed weight types, and groups larger than one job takes. Also checks
 * that no output row outside the matrices' own is written, and that a layout packed into the
 * caller's memory (bn_matrix_prepare_into) equals the one a matrix allocates. */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "harness.h"
#include "kernels/kernels.h"
#include "quants/quants.h"

#define COLS 2048 /* wide enough that most groups pass the parallel threshold of bn_matmul_group */
#define MAX_MATS 5
#define SENTINEL -12345.0f

static uint32_t rng = 88172645u;
static float rand_unit(void) { return bn_test_rand_unit(&rng); }

static void random_floats(float *out, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = rand_unit();
}

typedef struct {
    uint32_t type;
    int64_t rows;
} mat_spec;

/* Matrices of the given specs from random weights; *blob owns their data. */
static void make_matrices(const mat_spec *spec, int n, bn_matrix *m, uint8_t **blob) {
    char err[256];
    float *src = malloc(COLS * sizeof(float));
    for (int i = 0; i < n; i++) {
        size_t row_bytes = (size_t)bn_row_bytes(spec[i].type, COLS);
        blob[i] = malloc(row_bytes * (size_t)spec[i].rows);
        for (int64_t r = 0; r < spec[i].rows; r++) {
            random_floats(src, COLS);
            bn_type_get(spec[i].type)->from_float(src, blob[i] + (size_t)r * row_bytes, COLS);
        }
        CHECK(bn_matrix_init(&m[i], spec[i].type, spec[i].rows, COLS, blob[i], err, sizeof err) == 0, "%s", err);
    }
    free(src);
}

/* One group on one path and pool: mismatching outputs (bit-exact required), and writes past
 * each output. */
static int check_group(const mat_spec *spec, int n, bn_isa isa, bn_threadpool *pool, int n_tokens) {
    char err[256];
    bn_matrix m[MAX_MATS];
    uint8_t *blob[MAX_MATS];
    float *got[MAX_MATS], *want[MAX_MATS];
    const bn_matrix *mp[MAX_MATS];
    bn_scratch scratch = {0};
    make_matrices(spec, n, m, blob);
    float *x = malloc((size_t)n_tokens * COLS * sizeof(float));
    random_floats(x, (size_t)n_tokens * COLS);
    int bad = 0;
    for (int i = 0; i < n; i++) {
        const size_t outs = (size_t)n_tokens * (size_t)spec[i].rows;
        CHECK(bn_matrix_prepare(&m[i], isa, err, sizeof err) == 0, "%s", err);
        mp[i] = &m[i];
        got[i] = malloc((outs + 1) * sizeof(float));
        want[i] = malloc(outs * sizeof(float));
        for (size_t k = 0; k <= outs; k++) got[i][k] = SENTINEL;
        bad += bn_matmul(NULL, isa, &m[i], x, n_tokens, want[i], &scratch) != 0;
    }
    bad += bn_matmul_group(pool, isa, mp, got, n, x, n_tokens, &scratch) != 0;
    for (int i = 0; i < n; i++) {
        const size_t outs = (size_t)n_tokens * (size_t)spec[i].rows;
        for (size_t k = 0; k < outs; k++) bad += got[i][k] != want[i][k];
        bad += got[i][outs] != SENTINEL;
        free(got[i]);
        free(want[i]);
        bn_matrix_release(&m[i]);
        free(blob[i]);
    }
    free(x);
    bn_scratch_free(&scratch);
    return bad;
}

/* A layout packed into the caller's memory equals the one the matrix allocates for itself, and
 * release frees only the latter. */
static void test_prepare_into(void) {
    char err[256];
    static const mat_spec spec[] = {{BN_TYPE_Q1_0, 40}, {BN_TYPE_Q1_0, 40}};
    bn_matrix m[2];
    uint8_t *blob[2];
    make_matrices(spec, 2, m, blob);
    memcpy((void *)m[1].data, m[0].data, m[0].row_bytes * 40); /* the same weights */
    for (int isa = 0; isa < BN_ISA_COUNT; isa++) {
        if (!bn_isa_supported((bn_isa)isa)) continue;
        const size_t size = bn_matrix_packed_size(&m[1], (bn_isa)isa);
        void *buf = size ? aligned_alloc(64, (size + 63) & ~(size_t)63) : NULL;
        CHECK(bn_matrix_prepare(&m[0], (bn_isa)isa, err, sizeof err) == 0, "%s", err);
        CHECK(bn_matrix_prepare_into(&m[1], (bn_isa)isa, buf, err, sizeof err) == 0, "%s", err);
        CHECK(m[0].packed_bytes == size && (size == 0) == (m[1].packed == NULL), "%s: packed size %zu vs %zu",
              bn_isa_name((bn_isa)isa), m[0].packed_bytes, size);
        CHECK(!size || (m[1].packed == buf && !m[1].packed_owned && m[0].packed_owned &&
                        memcmp(m[0].packed, m[1].packed, size) == 0),
              "%s: layout in caller memory differs", bn_isa_name((bn_isa)isa));
        bn_matrix_release(&m[0]);
        bn_matrix_release(&m[1]);
        free(buf);
    }
    free(blob[0]);
    free(blob[1]);
}

int main(void) {
    test_prepare_into();
    /* q/k/v-like; rows off every split unit; a mixed-type group; more matrices than one job */
    static const mat_spec groups[][MAX_MATS] = {
        {{BN_TYPE_Q1_0, 128}, {BN_TYPE_Q1_0, 64}, {BN_TYPE_Q1_0, 64}},
        {{BN_TYPE_Q1_0, 50}, {BN_TYPE_Q1_0, 17}, {BN_TYPE_Q1_0, 100}},
        {{BN_TYPE_Q8_0, 33}, {BN_TYPE_Q8_0, 3}},
        {{BN_TYPE_Q1_0, 40}, {BN_TYPE_Q8_0, 40}, {BN_TYPE_Q1_0, 40}},
        {{BN_TYPE_Q1_0, 9}, {BN_TYPE_Q1_0, 70}, {BN_TYPE_Q1_0, 1}, {BN_TYPE_Q1_0, 33}, {BN_TYPE_Q1_0, 64}},
    };
    static const int group_size[] = {3, 3, 2, 3, 5};
    static const int tokens[] = {1, 5, 9};
    bn_threadpool *pools[] = {NULL, bn_threadpool_new(2), bn_threadpool_new(3)};
    const int n_pools = sizeof pools / sizeof pools[0];
    for (int isa = 0; isa < BN_ISA_COUNT; isa++) {
        if (!bn_isa_supported((bn_isa)isa)) continue;
        int bad = 0, cases = 0;
        for (size_t g = 0; g < sizeof groups / sizeof groups[0]; g++)
            for (int p = 0; p < n_pools; p++)
                for (size_t t = 0; t < sizeof tokens / sizeof tokens[0]; t++, cases++)
                    bad += check_group(groups[g], group_size[g], (bn_isa)isa, pools[p], tokens[t]);
        CHECK(bad == 0, "%s: %d mismatches", bn_isa_name((bn_isa)isa), bad);
        printf("  %-7s %d groups x pools x batches vs one bn_matmul per matrix: %s\n", bn_isa_name((bn_isa)isa),
               cases, bad ? "FAIL" : "bit-exact");
    }
    for (int p = 1; p < n_pools; p++) bn_threadpool_free(pools[p]);
    return bn_test_done("test_matmul_group");
}
