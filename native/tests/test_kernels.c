/* The kernel layer against ggml: scalar dot products versus ggml's generic and SIMD vec_dot
 * and the float64 dot of the dequantized operands; bn_matmul versus per-row dots on every
 * supported instruction set, thread count, batch size and awkward shape; ISA selection. */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdlib.h>
#include "harness.h"
#include "kernel_oracles.h"
#include "kernels/kernels.h"
#include "kernels/kernels_impl.h"
#include "quants/quants.h"

#define N_ACT 4 /* activation rows in ggml-kernels/act_nN.f32 */

/* sum |w_i a_i| in double: the scale float rounding errors of a dot are measured against. */
static double dot_magnitude(uint32_t type, const void *wrow, uint32_t act_type, const void *arow, int64_t n) {
    float *w = malloc((size_t)n * 4), *a = malloc((size_t)n * 4);
    bn_type_get(type)->to_float(wrow, w, n);
    act_to_float(act_type, arow, a, n);
    double m = 0;
    for (int64_t i = 0; i < n; i++) m += fabs((double)w[i] * a[i]);
    free(w);
    free(a);
    return m;
}

/* One ggml-kernels case on one path: vec_dot vs ggml generic (bit-exact required of scalar),
 * vs ggml SIMD and vs the exact dot (relative 1e-5 of the magnitude). */
static void check_ggml_case(bn_isa isa, uint32_t type, int n) {
    const bn_type_traits *t = bn_type_get(type);
    uint32_t act_type = t->vec_dot_type;
    char path[256];
    size_t wsize, asize, gsize, ssize, esize;
    snprintf(path, sizeof path, "ggml-kernels/%s.n%d.blocks.bin", t->name, n);
    uint8_t *w = bn_read_fixture(path, &wsize);
    snprintf(path, sizeof path, "ggml-kernels/%s.n%d.act_%s.blocks.bin", t->name, n, bn_type_get(act_type)->name);
    uint8_t *a = bn_read_fixture(path, &asize);
    snprintf(path, sizeof path, "ggml-kernels/%s.n%d.vec_dot_generic.f32", t->name, n);
    float *generic = bn_read_fixture(path, &gsize);
    snprintf(path, sizeof path, "ggml-kernels/%s.n%d.vec_dot.f32", t->name, n);
    float *simd = bn_read_fixture(path, &ssize);
    snprintf(path, sizeof path, "ggml-kernels/%s.n%d.dot_exact.f64", t->name, n);
    double *exact = bn_read_fixture(path, &esize);

    size_t wrow = (size_t)bn_row_bytes(type, (uint64_t)n), arow = (size_t)bn_row_bytes(act_type, (uint64_t)n);
    size_t rows = wsize / wrow;
    CHECK(asize == arow * N_ACT && gsize == rows * N_ACT * 4 && ssize == gsize && esize == 2 * gsize,
          "%s n%d fixture sizes", t->name, n);
    bn_kernel_ops ops;
    bn_kernel_ops_get(type, isa, &ops);
    int bit_exact = 0, simd_exact = 0, bad_generic = 0, bad_simd = 0, bad_exact = 0;
    double worst = 0;
    for (size_t r = 0; r < rows; r++) {
        for (int k = 0; k < N_ACT; k++) {
            float got;
            size_t i = r * N_ACT + (size_t)k;
            ops.vec_dot(n, &got, w + r * wrow, a + (size_t)k * arow);
            double tol = 1e-5 * dot_magnitude(type, w + r * wrow, act_type, a + (size_t)k * arow, n) + 1e-30;
            bit_exact += got == generic[i];
            simd_exact += got == simd[i];
            bad_generic += fabs(got - generic[i]) > tol;
            bad_simd += fabs(got - simd[i]) > tol;
            bad_exact += fabs(got - exact[i]) > tol;
            if (fabs(got - exact[i]) / tol * 1e-5 > worst) worst = fabs(got - exact[i]) / tol * 1e-5;
        }
    }
    int total = (int)rows * N_ACT;
    CHECK(bad_generic == 0 && bad_simd == 0 && bad_exact == 0, "%s n%d on %s: %d/%d/%d beyond 1e-5 vs "
          "generic/simd/exact", t->name, n, bn_isa_name(isa), bad_generic, bad_simd, bad_exact);
    /* the scalar reference reproduces ggml's generic code, except for the ternary types, whose
     * every path reproduces llama.cpp's x86 order (see kernels/kernels_scalar.c: the last bits decide
     * later roundings there) */
    int ternary = act_type == BN_TYPE_Q8_K;
    if (isa == BN_ISA_SCALAR || ternary)
        CHECK((ternary ? simd_exact : bit_exact) == total, "%s n%d: %d of %d bit-exact vs ggml %s", t->name, n,
              ternary ? simd_exact : bit_exact, total, ternary ? "x86 SIMD" : "generic");
    printf("  %-7s %-5s n=%-4d bit-exact vs ggml generic %3d/%d, vs ggml x86 SIMD %3d/%d; "
           "max |err| vs exact %.2e of sum|w*a|\n", bn_isa_name(isa), t->name, n, bit_exact, total, simd_exact,
           total, worst);
    free(w);
    free(a);
    free(generic);
    free(simd);
    free(exact);
}

/* Every supported path whose dot differs from the scalar one is checked too. */
static void test_ggml_vectors(void) {
    static const int sizes[] = {128, 256, 512, 2048};
    static const uint32_t types[] = {BN_TYPE_Q1_0, BN_TYPE_Q8_0, BN_TYPE_TQ1_0, BN_TYPE_TQ2_0};
    for (size_t i = 0; i < 4; i++) {
        bn_kernel_ops scalar, ops;
        bn_kernel_ops_get(types[i], BN_ISA_SCALAR, &scalar);
        for (int isa = 0; isa < BN_ISA_COUNT; isa++) {
            bn_kernel_ops_get(types[i], (bn_isa)isa, &ops);
            if (!bn_isa_supported((bn_isa)isa) || (isa != BN_ISA_SCALAR && ops.vec_dot == scalar.vec_dot)) continue;
            for (size_t s = 0; s < 4; s++)
                if (sizes[s] % (int)bn_type_get(types[i])->block_size == 0) check_ggml_case((bn_isa)isa, types[i], sizes[s]);
        }
    }
}

/* ---- bn_matmul ---- */

/* A weight matrix of `type` quantized from real values (input_nN.f32 rows, repeated). */
static uint8_t *make_weights(uint32_t type, int64_t rows, int64_t cols) {
    char path[128];
    size_t size;
    int64_t src_cols = cols < 128 ? 128 : cols;
    snprintf(path, sizeof path, "ggml-kernels/input_n%lld.f32", (long long)src_cols);
    float *src = bn_read_fixture(path, &size);
    int64_t src_rows = (int64_t)(size / 4 / (size_t)src_cols);
    size_t row_bytes = (size_t)bn_row_bytes(type, (uint64_t)cols);
    uint8_t *w = malloc(row_bytes * (size_t)rows);
    for (int64_t r = 0; r < rows; r++)
        bn_type_get(type)->from_float(src + (r % src_rows) * src_cols, w + (size_t)r * row_bytes, cols);
    free(src);
    return w;
}

/* Activations [n_tokens][cols]: act_nN.f32 rows (seeded normals, scaled, outliers, real). */
static float *make_acts(int n_tokens, int64_t cols) {
    char path[128];
    size_t size;
    int64_t src_cols = cols < 128 ? 128 : cols;
    snprintf(path, sizeof path, "ggml-kernels/act_n%lld.f32", (long long)src_cols);
    float *src = bn_read_fixture(path, &size);
    float *x = malloc((size_t)n_tokens * (size_t)cols * 4);
    for (int t = 0; t < n_tokens; t++)
        memcpy(x + (size_t)t * cols, src + (size_t)(t % N_ACT) * src_cols, (size_t)cols * 4);
    free(src);
    return x;
}

/* y[t][r] by the scalar reference: activation row converted alone, one vec_dot per output. */
static void reference_matmul(const bn_matrix *m, const float *x, int n_tokens, float *y) {
    uint32_t act_type = bn_type_get(m->type)->vec_dot_type;
    size_t arow = (size_t)bn_row_bytes(act_type, (uint64_t)m->cols);
    uint8_t *a = malloc(arow);
    bn_kernel_ops ops;
    bn_kernel_ops_get(m->type, BN_ISA_SCALAR, &ops);
    for (int t = 0; t < n_tokens; t++) {
        bn_type_get(act_type)->from_float(x + (size_t)t * m->cols, a, m->cols);
        for (int64_t r = 0; r < m->rows; r++)
            ops.vec_dot(m->cols, &y[(size_t)t * m->rows + r], m->data + (size_t)r * m->row_bytes, a);
    }
    free(a);
}

static const uint32_t all_types[] = {BN_TYPE_F32,  BN_TYPE_F16,   BN_TYPE_BF16,  BN_TYPE_Q4_0,
                                     BN_TYPE_Q8_0, BN_TYPE_Q1_0, BN_TYPE_TQ1_0, BN_TYPE_TQ2_0};

/* bn_matmul on `isa` with each pool against the reference: bit-exact on scalar and for Q1_0
 * everywhere (its lookup-table gemms keep the reference's integer sums and float order), within
 * 1e-5 of sum|w*a| elsewhere (SIMD may sum in another order). Returns the number of mismatches. */
static int check_matmul(bn_isa isa, uint32_t type, int64_t rows, int64_t cols, int n_tokens,
                        bn_threadpool **pools, int n_pools) {
    char err[256];
    bn_matrix m;
    uint8_t *w = make_weights(type, rows, cols);
    float *x = make_acts(n_tokens, cols);
    size_t ny = (size_t)rows * (size_t)n_tokens;
    float *want = malloc(ny * 4), *got = malloc(ny * 4);
    int bad = 0;
    CHECK(bn_matrix_init(&m, type, rows, cols, w, err, sizeof err) == 0, "init: %s", err);
    CHECK(bn_matrix_prepare(&m, isa, err, sizeof err) == 0, "prepare: %s", err);
    reference_matmul(&m, x, n_tokens, want);
    bn_scratch scratch = {0};
    for (int p = 0; p < n_pools; p++) {
        for (size_t i = 0; i < ny; i++) got[i] = NAN;
        if (bn_matmul(pools[p], isa, &m, x, n_tokens, got, &scratch) != 0) bad++;
        for (size_t i = 0; i < ny; i++) {
            double tol = isa == BN_ISA_SCALAR || type == BN_TYPE_Q1_0 ? 0 : 1e-5 * (fabs(want[i]) + 1.0);
            if (!(fabs(got[i] - want[i]) <= tol)) bad++;
        }
    }
    bn_scratch_free(&scratch);
    bn_matrix_release(&m);
    free(want);
    free(got);
    free(x);
    free(w);
    return bad;
}

static void test_matmul(void) {
    bn_threadpool *pools[4] = {NULL, bn_threadpool_new(1), bn_threadpool_new(2), bn_threadpool_new(3)};
    static const int tokens[] = {1, 3, 4, 9};
    for (int isa = 0; isa < BN_ISA_COUNT; isa++) {
        if (!bn_isa_supported((bn_isa)isa)) continue;
        for (size_t i = 0; i < sizeof all_types / sizeof all_types[0]; i++) {
            uint32_t type = all_types[i];
            int64_t blk = bn_type_get(type)->block_size < 32 ? 32 : bn_type_get(type)->block_size;
            /* one block; fewer rows than threads; odd row counts; a realistic width */
            const int64_t shapes[][2] = {{1, blk}, {2, blk}, {17, 2 * blk}, {33, 512}, {50, 2048}};
            int bad = 0;
            for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
                if (shapes[s][1] % (int64_t)bn_type_get(type)->block_size) continue;
                for (size_t t = 0; t < sizeof tokens / sizeof tokens[0]; t++)
                    bad += check_matmul((bn_isa)isa, type, shapes[s][0], shapes[s][1], tokens[t], pools, 4);
            }
            CHECK(bad == 0, "%s matmul on %s: %d mismatches", bn_type_get(type)->name, bn_isa_name((bn_isa)isa), bad);
        }
    }
    for (int p = 1; p < 4; p++) bn_threadpool_free(pools[p]);
}

/* Quantized matmul equals the float64 dot of dequant(W) and dequant(Q(x)): llama.cpp's math. */
static void test_matmul_semantics(void) {
    const int64_t rows = 8, cols = 512;
    for (size_t i = 0; i < sizeof all_types / sizeof all_types[0]; i++) {
        uint32_t type = all_types[i], act_type = bn_type_get(type)->vec_dot_type;
        char err[256];
        bn_matrix m;
        uint8_t *w = make_weights(type, rows, cols);
        float *x = make_acts(1, cols), y[8], wr[512], xr[512];
        uint8_t a[512 * 4]; /* the largest activation row: F32 */
        bn_scratch scratch = {0};
        bn_matrix_init(&m, type, rows, cols, w, err, sizeof err);
        bn_matmul(NULL, BN_ISA_SCALAR, &m, x, 1, y, &scratch);
        bn_type_get(act_type)->from_float(x, a, cols);
        act_to_float(act_type, a, xr, cols);
        int bad = 0;
        for (int64_t r = 0; r < rows; r++) {
            bn_matrix_get_row(&m, r, wr);
            double dot = 0, mag = 0;
            for (int64_t c = 0; c < cols; c++) {
                dot += (double)wr[c] * xr[c];
                mag += fabs((double)wr[c] * xr[c]);
            }
            bad += fabs(y[r] - dot) > 1e-5 * mag;
        }
        CHECK(bad == 0, "%s: %d rows differ from dequant(W) . dequant(Q(x))", bn_type_get(type)->name, bad);
        bn_scratch_free(&scratch);
        free(x);
        free(w);
    }
}

/* Every path's activation quantizer equals the reference from_float bit for bit: random rows,
 * exact halves (amax 127 makes 1/d = 1, so k + 0.5 must round away from zero), zeros, -0, and
 * scales that are subnormal or overflow as fp16. */
static void test_quantizers(void) {
    enum { N = 32 * 64 };
    static float x[N];
    static uint8_t want[N * 2], got[N * 2];
    uint32_t rng = 7;
    for (int i = 0; i < N; i++) {
        rng = rng * 1664525u + 1013904223u;
        const int block = i / 32, j = i % 32;
        static const float scale[6] = {0, 0, 3.0f, 1000.0f, 2e-5f, 2e7f};
        if (block % 6 == 0) x[i] = j == 0 ? 127.0f : (float)((int)(rng >> 25) - 64) + 0.5f;
        else if (block % 6 == 1) x[i] = j % 2 ? 0.0f : -0.0f;
        else x[i] = ((float)(rng >> 8) / 16777216.0f - 0.5f) * scale[block % 6];
    }
    const uint32_t types[] = {BN_TYPE_Q8_0, BN_TYPE_Q1_0};
    for (size_t t = 0; t < 2; t++) {
        const bn_type_traits *at = bn_type_get(bn_type_get(types[t])->vec_dot_type);
        at->from_float(x, want, N);
        for (int isa = 0; isa < BN_ISA_COUNT; isa++) {
            bn_kernel_ops ops;
            bn_kernel_ops_get(types[t], (bn_isa)isa, &ops);
            if (!bn_isa_supported((bn_isa)isa) || !ops.quantize) continue;
            ops.quantize(x, got, N);
            CHECK(memcmp(want, got, (size_t)(N / 32) * at->block_bytes) == 0, "%s activations on %s differ from "
                  "the reference quantizer", bn_type_get(types[t])->name, bn_isa_name((bn_isa)isa));
        }
    }
}

static void test_matrix_errors(void) {
    char err[256] = "";
    bn_matrix m;
    static const uint8_t data[64];
    CHECK(bn_matrix_init(&m, BN_TYPE_Q1_0, 2, 100, data, err, sizeof err) != 0, "partial block accepted");
    CHECK(strstr(err, "q1_0") != NULL, "message: %s", err);
    CHECK(bn_matrix_init(&m, 40, 2, 128, data, err, sizeof err) != 0, "unknown type accepted");
    CHECK(bn_matrix_init(&m, BN_TYPE_Q8_K, 1, 256, data, err, sizeof err) != 0, "q8_K weights accepted");
    CHECK(bn_matrix_init(&m, BN_TYPE_Q1_0, 0, 128, data, err, sizeof err) != 0, "zero rows accepted");
    CHECK(bn_matrix_init(&m, BN_TYPE_Q1_0, 1, 128, NULL, err, sizeof err) != 0, "no data accepted");
    CHECK(bn_matrix_init(&m, BN_TYPE_Q1_0, 3, 256, data, err, sizeof err) == 0 && m.row_bytes == 36, "q1_0 init");
}

static void test_isa(void) {
    char err[256];
    bn_isa isa;
    CHECK(strcmp(bn_isa_name(BN_ISA_SCALAR), "scalar") == 0 && strcmp(bn_isa_name(BN_ISA_AVX512), "avx512") == 0,
          "isa names");
    CHECK(bn_isa_supported(BN_ISA_SCALAR), "scalar always supported");
    unsetenv("BONSAI_KERNELS");
    CHECK(bn_isa_select(&isa, err, sizeof err) == 0 && bn_isa_supported(isa), "auto select: %s", err);
    printf("  auto-selected kernels: %s\n", bn_isa_name(isa));
    setenv("BONSAI_KERNELS", "scalar", 1);
    CHECK(bn_isa_select(&isa, err, sizeof err) == 0 && isa == BN_ISA_SCALAR, "forced scalar");
    setenv("BONSAI_KERNELS", "sse9", 1);
    CHECK(bn_isa_select(&isa, err, sizeof err) != 0 && strstr(err, "unknown"), "bogus name: %s", err);
    for (int i = 0; i < BN_ISA_COUNT; i++) {
        setenv("BONSAI_KERNELS", bn_isa_name((bn_isa)i), 1);
        int rc = bn_isa_select(&isa, err, sizeof err);
        CHECK(rc == (bn_isa_supported((bn_isa)i) ? 0 : -1), "forcing %s", bn_isa_name((bn_isa)i));
        if (rc != 0) CHECK(strstr(err, "does not support") != NULL, "message: %s", err);
    }
    unsetenv("BONSAI_KERNELS");
    for (int i = 0; i < BN_ISA_COUNT; i++) {
        bn_isa named;
        CHECK(bn_isa_from_name(bn_isa_name((bn_isa)i), &named) == 0 && named == (bn_isa)i, "name of %d", i);
    }
    CHECK(bn_isa_from_name("sse9", &isa) != 0 && bn_isa_from_name("", &isa) != 0, "unknown names");
    CHECK(bn_isa_parent(BN_ISA_AVX512VBMI) == BN_ISA_AVX512 && bn_isa_parent(BN_ISA_AVX512) == BN_ISA_AVX2 &&
              bn_isa_parent(BN_ISA_AVX2) == BN_ISA_SCALAR &&
              bn_isa_parent(BN_ISA_I8MM) == BN_ISA_DOTPROD && bn_isa_parent(BN_ISA_DOTPROD) == BN_ISA_NEON &&
              bn_isa_parent(BN_ISA_NEON) == BN_ISA_SCALAR && bn_isa_parent(BN_ISA_SCALAR) == BN_ISA_SCALAR,
          "parents");
    for (int i = 0; i < BN_ISA_COUNT; i++) {
        for (size_t t = 0; t < sizeof all_types / sizeof all_types[0]; t++) {
            bn_kernel_ops ops;
            CHECK(bn_kernel_ops_get(all_types[t], (bn_isa)i, &ops) == 0 && ops.vec_dot, "ops for %u on %s",
                  all_types[t], bn_isa_name((bn_isa)i));
        }
    }
}

/* Which path's kernels run, and the label that says so, in the builds that have the paths. */
static void test_kernels_label(void) {
    char label[64];
    bn_kernels_label(BN_TYPE_Q1_0, BN_ISA_SCALAR, label, sizeof label);
    CHECK(strcmp(label, "scalar") == 0, "%s", label);
    CHECK(bn_kernels_isa(BN_TYPE_F32, BN_ISA_AVX512) == BN_ISA_SCALAR, "f32 has only scalar kernels");
#if defined(__x86_64__)
    CHECK(bn_kernels_isa(BN_TYPE_Q1_0, BN_ISA_AVX2) == BN_ISA_AVX2, "q1_0 on avx2");
    CHECK(bn_kernels_isa(BN_TYPE_Q1_0, BN_ISA_AVX512) == BN_ISA_AVX512, "q1_0 on avx512");
    bn_kernels_label(BN_TYPE_Q1_0, BN_ISA_AVX512, label, sizeof label);
    CHECK(strcmp(label, "avx512") == 0, "%s", label);
    bn_kernels_label(BN_TYPE_Q8_0, BN_ISA_AVX512, label, sizeof label);
    CHECK(strcmp(label, "avx512 (avx2 kernels)") == 0, "%s", label);
    CHECK(bn_kernels_isa(BN_TYPE_Q1_0, BN_ISA_AVX512VBMI) == BN_ISA_AVX512VBMI, "q1_0 on avx512vbmi");
    bn_kernels_label(BN_TYPE_Q8_0, BN_ISA_AVX512VBMI, label, sizeof label);
    CHECK(strcmp(label, "avx512vbmi (avx2 kernels)") == 0, "%s", label);
    bn_kernels_label(BN_TYPE_TQ1_0, BN_ISA_AVX2, label, sizeof label);
    CHECK(strcmp(label, "avx2 (scalar kernels)") == 0, "%s", label);
#elif defined(__aarch64__)
    CHECK(bn_kernels_isa(BN_TYPE_Q1_0, BN_ISA_NEON) == BN_ISA_NEON, "q1_0 on neon");
    CHECK(bn_kernels_isa(BN_TYPE_TQ2_0, BN_ISA_I8MM) == BN_ISA_DOTPROD, "tq2_0 on i8mm");
    bn_kernels_label(BN_TYPE_Q1_0, BN_ISA_DOTPROD, label, sizeof label);
    CHECK(strcmp(label, "dotprod (neon kernels)") == 0, "%s", label);
#endif
}

int main(void) {
    test_isa();
    test_kernels_label();
    test_matrix_errors();
    test_quantizers();
    test_ggml_vectors();
    test_matmul_semantics();
    test_matmul();
    return bn_test_done("test_kernels");
}
