/* bn_matmul_group against one bn_matmul per matrix: the same products, bit for bit, on every
 * supported path and thread count, for groups whose row counts are not multiples of the row
 * split, groups with mixed weight types, and groups larger than one job takes. Also checks
 * that no output row outside the matrices' own is written, and that a layout packed into the
 * caller's memory (bn_matrix_prepare_into) equals the one a matrix allocates.
 * bn_matmul_group_then: the same products, and its step runs once on every row, on aligned
 * ranges whose products are already final. bn_matmul_converted of activations converted in
 * pieces (bn_act_convert) equals bn_matmul of the floats. */
#define _POSIX_C_SOURCE 200809L
#include <stdatomic.h>
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

/* What bn_matmul_group_then's step sees: the expected products, to check its rows against. */
typedef struct then_check {
    const bn_matrix *w[2];
    float *const *got;
    float *const *want;
    int n_tokens;
    int64_t align;
    atomic_int *calls; /* per row: how many steps covered it */
    atomic_int bad;
} then_check;

static void then_step(void *arg, int64_t r0, int64_t r1) {
    then_check *c = arg;
    if (r0 % c->align != 0 || r0 >= r1) atomic_fetch_add(&c->bad, 1);
    for (int64_t r = r0; r < r1; r++) {
        atomic_fetch_add(&c->calls[r], 1);
        for (int i = 0; i < 2; i++)
            for (int t = 0; t < c->n_tokens; t++) {
                const size_t k = (size_t)t * (size_t)c->w[i]->rows + (size_t)r;
                if (c->got[i][k] != c->want[i][k]) atomic_fetch_add(&c->bad, 1);
            }
    }
}

/* A pair of matrices through bn_matmul_group_then: outputs, coverage and what the step saw. */
static int check_then(const mat_spec *spec, bn_isa isa, bn_threadpool *pool, int n_tokens, int64_t align) {
    char err[256];
    bn_matrix m[2];
    uint8_t *blob[2];
    float *got[2], *want[2];
    const bn_matrix *mp[2] = {&m[0], &m[1]};
    bn_scratch scratch = {0};
    make_matrices(spec, 2, m, blob);
    const int64_t rows = spec[0].rows;
    float *x = malloc((size_t)n_tokens * COLS * sizeof(float));
    random_floats(x, (size_t)n_tokens * COLS);
    int bad = 0;
    for (int i = 0; i < 2; i++) {
        CHECK(bn_matrix_prepare(&m[i], isa, err, sizeof err) == 0, "%s", err);
        got[i] = malloc((size_t)n_tokens * rows * sizeof(float));
        want[i] = malloc((size_t)n_tokens * rows * sizeof(float));
        bad += bn_matmul(NULL, isa, &m[i], x, n_tokens, want[i], &scratch) != 0;
    }
    then_check c = {{&m[0], &m[1]}, got, want, n_tokens, align, calloc((size_t)rows, sizeof(atomic_int)), 0};
    const bn_rows_then then = {then_step, &c, align};
    bad += bn_matmul_group_then(pool, isa, mp, got, 2, x, n_tokens, &scratch, &then) != 0;
    for (int64_t r = 0; r < rows; r++) bad += atomic_load(&c.calls[r]) != 1;
    bad += atomic_load(&c.bad);
    for (int i = 0; i < 2; i++) {
        for (size_t k = 0; k < (size_t)n_tokens * rows; k++) bad += got[i][k] != want[i][k];
        free(got[i]);
        free(want[i]);
        bn_matrix_release(&m[i]);
        free(blob[i]);
    }
    free(c.calls);
    free(x);
    bn_scratch_free(&scratch);
    return bad;
}

/* bn_matmul_converted of rows converted in two pieces, split at a block boundary, against
 * bn_matmul of the floats. */
static int check_converted(uint32_t type, bn_isa isa, bn_threadpool *pool, int n_tokens) {
    char err[256];
    const mat_spec spec = {type, 96};
    bn_matrix m;
    uint8_t *blob;
    bn_scratch scratch = {0};
    make_matrices(&spec, 1, &m, &blob);
    CHECK(bn_matrix_prepare(&m, isa, err, sizeof err) == 0, "%s", err);
    float *x = malloc((size_t)n_tokens * COLS * sizeof(float));
    float *got = malloc((size_t)n_tokens * 96 * sizeof(float)), *want = malloc((size_t)n_tokens * 96 * sizeof(float));
    random_floats(x, (size_t)n_tokens * COLS);
    bn_act_form form;
    int bad = bn_act_form_get(&m, isa, &form) != 0;
    uint8_t *act = malloc(form.row_bytes * (size_t)n_tokens);
    const int64_t cut = COLS / form.block / 3 * form.block;
    for (int t = 0; t < n_tokens; t++) {
        bn_act_convert(&form, x + (size_t)t * COLS, cut, COLS, act + (size_t)t * form.row_bytes);
        bn_act_convert(&form, x + (size_t)t * COLS, 0, cut, act + (size_t)t * form.row_bytes);
    }
    bad += bn_matmul(NULL, isa, &m, x, n_tokens, want, &scratch) != 0;
    bad += bn_matmul_converted(pool, isa, &m, act, n_tokens, got) != 0;
    for (size_t k = 0; k < (size_t)n_tokens * 96; k++) bad += got[k] != want[k];
    free(act);
    free(got);
    free(want);
    free(x);
    bn_matrix_release(&m);
    free(blob);
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
        /* gate/up-like pairs: rows off the split unit, a mixed pair (one job each), a step
         * aligned to more than the split unit */
        static const mat_spec pairs[][2] = {{{BN_TYPE_Q1_0, 256}, {BN_TYPE_Q1_0, 256}},
                                            {{BN_TYPE_Q1_0, 100}, {BN_TYPE_Q1_0, 100}},
                                            {{BN_TYPE_Q1_0, 96}, {BN_TYPE_Q8_0, 96}}};
        static const int64_t aligns[] = {1, 32, 128};
        int then_bad = 0, conv_bad = 0;
        for (size_t g = 0; g < sizeof pairs / sizeof pairs[0]; g++)
            for (int p = 0; p < n_pools; p++)
                for (size_t t = 0; t < sizeof tokens / sizeof tokens[0]; t++)
                    then_bad += check_then(pairs[g], (bn_isa)isa, pools[p], tokens[t], aligns[g]);
        static const uint32_t conv_types[] = {BN_TYPE_Q1_0, BN_TYPE_Q8_0, BN_TYPE_TQ2_0, BN_TYPE_F16, BN_TYPE_F32};
        for (size_t k = 0; k < sizeof conv_types / sizeof conv_types[0]; k++)
            for (int p = 0; p < n_pools; p++)
                for (size_t t = 0; t < sizeof tokens / sizeof tokens[0]; t++)
                    conv_bad += check_converted(conv_types[k], (bn_isa)isa, pools[p], tokens[t]);
        CHECK(then_bad == 0, "%s: bn_matmul_group_then: %d mismatches", bn_isa_name((bn_isa)isa), then_bad);
        CHECK(conv_bad == 0, "%s: bn_matmul_converted: %d mismatches", bn_isa_name((bn_isa)isa), conv_bad);
    }
    {
        /* rows that differ: refused */
        static const mat_spec spec[] = {{BN_TYPE_Q1_0, 64}, {BN_TYPE_Q1_0, 32}};
        bn_matrix m[2];
        uint8_t *blob[2];
        make_matrices(spec, 2, m, blob);
        const bn_matrix *mp[] = {&m[0], &m[1]};
        float y0[64], y1[32], x[COLS] = {0};
        float *const y[] = {y0, y1};
        bn_scratch scratch = {0};
        then_check c = {{&m[0], &m[1]}, y, y, 1, 1, NULL, 0};
        const bn_rows_then then = {then_step, &c, 1};
        CHECK(bn_matmul_group_then(NULL, BN_ISA_SCALAR, mp, y, 2, x, 1, &scratch, &then) != 0,
              "a pair with different row counts accepted");
        bn_scratch_free(&scratch);
        free(blob[0]);
        free(blob[1]);
    }
    for (int p = 1; p < n_pools; p++) bn_threadpool_free(pools[p]);
    return bn_test_done("test_matmul_group");
}
