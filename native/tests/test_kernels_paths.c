/* Every instruction-set path this CPU supports against the scalar reference, for every weight
 * type, through bn_matmul (packing, activation quantization, threading) and through each
 * path's gemm directly on row ranges that start and end inside a 16-, 32- or 64-row tile, and on
 * a matrix left unprepared (no packed layout). A path this CPU lacks is skipped, and said so.
 *
 * The aarch64 paths (neon, dotprod, i8mm) and every Q1_0 gemm (lookup tables over packed tiles)
 * keep the reference's integer sums and float order, so they must equal it bit for bit; other
 * kernels may sum floats in another order and must be within 1e-5 of sum |w * a|. Shapes: one
 * block, fewer rows than threads, row counts that are not a multiple of any SIMD width or tile,
 * more columns than one pass of the lookup tables covers, token batches of 1 and many. Data: random values,
 * constant +-1 activations (Q8_0 extremes: |q| = 127 in every lane, the lookup tables' range
 * limits), zeros, and weight rows with every bit set or clear. No fixtures needed.
 * BONSAI_TEST_QUICK=1 trims the largest shapes (for runs under qemu). */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdlib.h>
#include "harness.h"
#include "kernel_oracles.h"
#include "kernels/kernels.h"
#include "kernels/kernels_impl.h"
#include "quants/quants.h"

static uint32_t rng = 2463534242u;
static float rand_unit(void) { return bn_test_rand_unit(&rng); }

/* Row r of a test matrix: mostly random, with rows of all-positive and all-negative values
 * (every weight bit set / clear) and a row with a large outlier. */
static void weight_row(float *out, int64_t r, int64_t cols) {
    for (int64_t c = 0; c < cols; c++) {
        switch (r % 7) {
        case 3: out[c] = 0.5f + 0.5f * (rand_unit() + 1.0f); break;
        case 5: out[c] = -0.5f - 0.5f * (rand_unit() + 1.0f); break;
        default: out[c] = rand_unit() * (c == r % cols ? 40.0f : 1.0f);
        }
    }
}

/* Token t of a batch: random with outliers, constant +1, constant -1, zeros in places, or tiny
 * values (scales that are fp16 subnormals). */
static void act_row(float *out, int t, int64_t cols) {
    for (int64_t c = 0; c < cols; c++) {
        switch (t % 6) {
        case 5: out[c] = rand_unit() * 1e-5f; break;
        case 1: out[c] = 1.0f; break;
        case 2: out[c] = -1.0f; break;
        case 3: out[c] = c % 64 < 32 ? 0.0f : rand_unit(); break;
        default: out[c] = rand_unit() * (c % 97 == 0 ? 30.0f : 1.0f);
        }
    }
}

static uint8_t *make_weights(uint32_t type, int64_t rows, int64_t cols) {
    const bn_type_traits *t = bn_type_get(type);
    size_t row_bytes = (size_t)bn_row_bytes(type, (uint64_t)cols);
    uint8_t *w = malloc(row_bytes * (size_t)rows);
    float *src = malloc((size_t)cols * sizeof(float));
    for (int64_t r = 0; r < rows; r++) {
        weight_row(src, r, cols);
        t->from_float(src, w + (size_t)r * row_bytes, cols);
    }
    free(src);
    return w;
}

static int path_is_exact(bn_isa isa) {
    return isa == BN_ISA_NEON || isa == BN_ISA_DOTPROD || isa == BN_ISA_I8MM;
}

/* Whether the gemm of `type` on `isa`, on a prepared matrix, must equal the reference bit for bit. */
static int gemm_is_exact(bn_isa isa, uint32_t type) {
    return path_is_exact(isa) || (type == BN_TYPE_Q1_0 && isa != BN_ISA_SCALAR);
}

/* y = W x by the scalar reference (each activation row quantized alone, one vec_dot per
 * output), and mag = sum |w * a| of each output: the scale of float rounding differences. */
static void reference(const bn_matrix *m, const float *x, int n_tokens, float *y, double *mag) {
    const uint32_t act_type = bn_type_get(m->type)->vec_dot_type;
    const size_t arow = (size_t)bn_row_bytes(act_type, (uint64_t)m->cols);
    uint8_t *a = malloc(arow);
    float *wf = malloc((size_t)m->cols * sizeof(float)), *af = malloc((size_t)m->cols * sizeof(float));
    bn_kernel_ops ops;
    bn_kernel_ops_get(m->type, BN_ISA_SCALAR, &ops);
    for (int t = 0; t < n_tokens; t++) {
        bn_type_get(act_type)->from_float(x + (size_t)t * m->cols, a, m->cols);
        act_to_float(act_type, a, af, m->cols);
        for (int64_t r = 0; r < m->rows; r++) {
            const size_t i = (size_t)t * m->rows + r;
            ops.vec_dot(m->cols, &y[i], m->data + (size_t)r * m->row_bytes, a);
            bn_matrix_get_row(m, r, wf);
            mag[i] = 0;
            for (int64_t c = 0; c < m->cols; c++) mag[i] += fabs((double)wf[c] * af[c]);
        }
    }
    free(wf);
    free(af);
    free(a);
}

/* Whether one output is right: equal, or within 1e-5 of its sum |w * a| when the path may
 * add floats in another order. */
static int output_ok(float got, float want, double mag, int exact) {
    return exact ? got == want : fabs((double)got - want) <= 1e-5 * mag + 1e-30;
}

/* ops.gemm (or vec_dot per output) on rows [r0, r1) of a prepared matrix, y prefilled with NaN
 * so that writes outside the range show. */
static int check_gemm_range(const bn_matrix *m, bn_isa isa, const uint8_t *act, size_t act_stride, int n_tokens,
                            const float *want, const double *mag, int64_t r0, int64_t r1) {
    bn_kernel_ops ops;
    bn_kernel_ops_get(m->type, isa, &ops);
    if (!ops.gemm) return 0;
    size_t ny = (size_t)m->rows * (size_t)n_tokens;
    float *got = malloc(ny * sizeof(float));
    for (size_t i = 0; i < ny; i++) got[i] = NAN;
    ops.gemm(m, r0, r1, act, act_stride, n_tokens, got, m->rows);
    int bad = 0;
    for (int t = 0; t < n_tokens; t++) {
        for (int64_t r = 0; r < m->rows; r++) {
            const size_t i = (size_t)t * m->rows + r;
            bad += r >= r0 && r < r1 ? !output_ok(got[i], want[i], mag[i], gemm_is_exact(isa, m->type)) : !isnan(got[i]);
        }
    }
    free(got);
    return bad;
}

/* One type, shape and batch on one path: bn_matmul with each pool, then the gemm alone on
 * ranges cutting through tiles. Returns the number of mismatching outputs. */
static int check_case(bn_isa isa, uint32_t type, int64_t rows, int64_t cols, int n_tokens, bn_threadpool **pools,
                      int n_pools) {
    char err[256];
    bn_matrix m;
    uint8_t *w = make_weights(type, rows, cols);
    float *x = malloc((size_t)n_tokens * (size_t)cols * sizeof(float));
    for (int t = 0; t < n_tokens; t++) act_row(x + (size_t)t * cols, t, cols);
    size_t ny = (size_t)rows * (size_t)n_tokens;
    float *want = malloc(ny * sizeof(float)), *got = malloc(ny * sizeof(float));
    double *mag = malloc(ny * sizeof(double));
    CHECK(bn_matrix_init(&m, type, rows, cols, w, err, sizeof err) == 0, "init: %s", err);
    CHECK(bn_matrix_prepare(&m, isa, err, sizeof err) == 0, "prepare: %s", err);
    reference(&m, x, n_tokens, want, mag);
    int bad = 0;
    bn_scratch scratch = {0};
    for (int p = 0; p < n_pools; p++) {
        for (size_t i = 0; i < ny; i++) got[i] = NAN;
        if (bn_matmul(pools[p], isa, &m, x, n_tokens, got, &scratch) != 0) bad++;
        for (size_t i = 0; i < ny; i++) bad += !output_ok(got[i], want[i], mag[i], gemm_is_exact(isa, type));
    }
    /* a matrix that was not prepared (no packed layout) must still be right */
    bn_matrix plain;
    bn_matrix_init(&plain, type, rows, cols, w, err, sizeof err);
    for (size_t i = 0; i < ny; i++) got[i] = NAN;
    if (bn_matmul(NULL, isa, &plain, x, n_tokens, got, &scratch) != 0) bad++;
    for (size_t i = 0; i < ny; i++) bad += !output_ok(got[i], want[i], mag[i], path_is_exact(isa));
    /* the activations exactly as bn_matmul quantized them, for direct gemm calls */
    const uint32_t act_type = bn_type_get(type)->vec_dot_type;
    const size_t arow = (size_t)bn_row_bytes(act_type, (uint64_t)cols);
    if (act_type != BN_TYPE_F32) {
        uint8_t *act = malloc(arow * (size_t)n_tokens);
        bn_type_get(act_type)->from_float(x, act, cols * n_tokens);
        const int64_t cuts[][2] = {{0, rows}, {rows / 3, rows - rows / 4}, {rows - 1, rows}, {5 % rows, rows}};
        for (size_t c = 0; c < sizeof cuts / sizeof cuts[0]; c++)
            if (cuts[c][0] < cuts[c][1]) bad += check_gemm_range(&m, isa, act, arow, n_tokens, want, mag, cuts[c][0],
                                                                   cuts[c][1]);
        free(act);
    }
    bn_scratch_free(&scratch);
    bn_matrix_release(&m);
    free(want);
    free(got);
    free(mag);
    free(x);
    free(w);
    return bad;
}

static const uint32_t all_types[] = {BN_TYPE_F32,  BN_TYPE_F16,  BN_TYPE_BF16,  BN_TYPE_Q4_0,
                                     BN_TYPE_Q8_0, BN_TYPE_Q1_0, BN_TYPE_TQ1_0, BN_TYPE_TQ2_0};

static void test_paths(int quick) {
    bn_threadpool *pools[4] = {NULL, bn_threadpool_new(2), bn_threadpool_new(3), bn_threadpool_new(4)};
    const int n_pools = quick ? 2 : 4;
    static const int tokens[] = {1, 2, 5, 17};
    for (int isa = BN_ISA_SCALAR + 1; isa < BN_ISA_COUNT; isa++) {
        if (!bn_isa_supported((bn_isa)isa)) {
            printf("  %-7s SKIPPED: this CPU does not support it, its kernels are not tested here\n",
                   bn_isa_name((bn_isa)isa));
            continue;
        }
        for (size_t i = 0; i < sizeof all_types / sizeof all_types[0]; i++) {
            const uint32_t type = all_types[i];
            const int64_t blk = bn_type_get(type)->block_size < 32 ? 32 : bn_type_get(type)->block_size;
            /* one block; fewer rows than threads; one row short of / past a 16-, a 32- and a
             * 64-row tile and of an 8- and 4-row interleave; a realistic width; more than 64
             * blocks (lookup tables built in several passes, sums carried between them) */
            const int64_t shapes[][2] = {{1, blk}, {3, blk}, {15, 2 * blk}, {17, 512}, {33, 256},
                                         {41, 768}, {64, 1024}, {95, 384}, {50, quick ? 1024 : 2048},
                                         {37, quick ? 1024 : 8448}, {63, 256}, {65, 640}, {129, 1024},
                                         {191, quick ? 1024 : 2560}};
            int bad = 0, cases = 0;
            for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
                if (shapes[s][1] % (int64_t)bn_type_get(type)->block_size) continue;
                for (size_t t = 0; t < sizeof tokens / sizeof tokens[0]; t++, cases++)
                    bad += check_case((bn_isa)isa, type, shapes[s][0], shapes[s][1], tokens[t], pools, n_pools);
            }
            CHECK(bad == 0, "%s on %s: %d mismatches", bn_type_get(type)->name, bn_isa_name((bn_isa)isa), bad);
            printf("  %-7s %-5s %2d shapes x batches, %s vs scalar: %s\n", bn_isa_name((bn_isa)isa),
                   bn_type_get(type)->name, cases, gemm_is_exact((bn_isa)isa, type) ? "bit-exact" : "1e-5",
                   bad ? "FAIL" : "ok");
        }
    }
    for (int p = 1; p < 4; p++) bn_threadpool_free(pools[p]);
}

/* Q1_0 gemms on raw blocks (kernel_oracles.h), every path bit for bit. The AVX2 tables hold
 * sub-block sums modulo 8192, exact for |q| <= 127 as every Q8_0 quantizer makes them (the sum
 * 4096 of 32 q = -128 would read as -4096): there the extreme is -127 (sums 4064). */
static void test_q1_raw_blocks(void) {
    for (int isa = BN_ISA_SCALAR + 1; isa < BN_ISA_COUNT; isa++) {
        if (!bn_isa_supported((bn_isa)isa)) continue;
        bn_kernel_ops ops;
        bn_kernel_ops_get(BN_TYPE_Q1_0, (bn_isa)isa, &ops);
        int cases = 0;
        const int bad = q1_raw_block_mismatches(ops.gemm, (bn_isa)isa, path_is_exact((bn_isa)isa) ? -128 : -127, &rng, &cases);
        CHECK(bad == 0, "q1_0 raw blocks on %s: %d mismatches", bn_isa_name((bn_isa)isa), bad);
        printf("  %-7s q1_0  %d raw-block ranges x batches, bit-exact vs scalar: %s\n", bn_isa_name((bn_isa)isa),
               cases, bad ? "FAIL" : "ok");
    }
}

/* A matrix packed for one x86 path multiplied on another: the AVX-512 gemms read the AVX2 tiles
 * by handing them to the AVX2 gemm, so they stay bit-identical to the reference. */
static void test_q1_foreign_layout(void) {
#if defined(__x86_64__)
    static const bn_isa wide[] = {BN_ISA_AVX512, BN_ISA_AVX512VBMI};
    const int64_t rows = 77, cols = 1024;
    static const int tokens[] = {1, 6};
    uint8_t *w = make_weights(BN_TYPE_Q1_0, rows, cols);
    char err[256];
    bn_matrix m;
    CHECK(bn_matrix_init(&m, BN_TYPE_Q1_0, rows, cols, w, err, sizeof err) == 0, "init: %s", err);
    CHECK(bn_matrix_prepare(&m, BN_ISA_AVX2, err, sizeof err) == 0, "prepare: %s", err);
    for (size_t i = 0; i < sizeof wide / sizeof wide[0]; i++) {
        const char *name = bn_isa_name(wide[i]);
        if (!bn_isa_supported(wide[i])) {
            printf("  %-7s SKIPPED: this CPU does not support it (foreign-layout check)\n", name);
            continue;
        }
        bn_kernel_ops ops;
        bn_kernel_ops_get(BN_TYPE_Q1_0, wide[i], &ops);
        int bad = 0;
        for (size_t k = 0; k < sizeof tokens / sizeof tokens[0]; k++) {
            const int nt = tokens[k];
            float *x = malloc((size_t)(nt * cols) * sizeof(float)), *want = malloc((size_t)(nt * rows) * sizeof(float));
            float *got = malloc((size_t)(nt * rows) * sizeof(float));
            double *mag = malloc((size_t)(nt * rows) * sizeof(double));
            for (int t = 0; t < nt; t++) act_row(x + (size_t)t * cols, t, cols);
            reference(&m, x, nt, want, mag);
            const size_t arow = (size_t)bn_row_bytes(BN_TYPE_Q8_0, (uint64_t)cols);
            uint8_t *act = malloc(arow * (size_t)nt);
            bn_type_get(BN_TYPE_Q8_0)->from_float(x, act, cols * nt);
            ops.gemm(&m, 0, rows, act, arow, nt, got, rows);
            for (int64_t j = 0; j < rows * nt; j++) bad += memcmp(&got[j], &want[j], sizeof got[j]) != 0;
            free(act);
            free(mag);
            free(got);
            free(want);
            free(x);
        }
        CHECK(bad == 0, "%s gemm on avx2 tiles: %d mismatches", name, bad);
        printf("  %-7s q1_0  on a matrix packed for avx2, bit-exact vs scalar: %s\n", name, bad ? "FAIL" : "ok");
    }
    bn_matrix_release(&m);
    free(w);
#endif
}

/* The path bn_isa_select picks here. */
static void test_selection(void) {
    char err[256];
    bn_isa isa;
    unsetenv("BONSAI_KERNELS");
    CHECK(bn_isa_select(&isa, err, sizeof err) == 0, "select: %s", err);
    printf("selected path: %s\n", bn_isa_name(isa));
    for (int i = 0; i < BN_ISA_COUNT; i++)
        if (bn_isa_supported((bn_isa)i)) printf("supported path: %s\n", bn_isa_name((bn_isa)i));
}

int main(int argc, char **argv) {
    const char *quick = getenv("BONSAI_TEST_QUICK");
    bn_isa isa;
    char err[256];
    if (argc > 1 && strcmp(argv[1], "--selected-path") == 0) { /* for scripts/test-arm64.sh */
        unsetenv("BONSAI_KERNELS");
        if (bn_isa_select(&isa, err, sizeof err) != 0) return 1;
        puts(bn_isa_name(isa));
        return 0;
    }
    test_selection();
    test_paths(quick && *quick && *quick != '0');
    test_q1_raw_blocks();
    test_q1_foreign_layout();
    return bn_test_done("test_kernels_paths");
}
