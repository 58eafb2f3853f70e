/* Standalone kernel benchmark: one weight matrix, `iters` products through bn_matmul on the
 * calling thread (activation quantization included), on the path bn_isa_select picks (set
 * BONSAI_KERNELS to force one).
 *
 *   bench_kernels <type> <gemv|gemm> <iters> [batch] [rows] [cols]
 *
 * Defaults: batch 16 for gemm, a 2048 x 6144 (rows x cols) matrix. Everything before the
 * timed loop (weights, packing, activations) is identical for any `iters`, so the difference
 * between the instruction counts of a run with N iterations and one with 0 is N products:
 * scripts/bench-arm.sh counts them under qemu that way. Prints one JSON line. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "kernels.h"
#include "quants.h"

/* Distinct weight rows quantized from pseudo-random values, tiled over the matrix. */
#define SOURCE_ROWS 64

static uint32_t rng_state = 12345u;
static float rng_normalish(void) {
    float s = 0.0f;
    for (int i = 0; i < 4; i++) {
        rng_state = rng_state * 1664525u + 1013904223u;
        s += (float)(rng_state >> 8) / 16777216.0f - 0.5f;
    }
    return s;
}

static uint32_t type_by_name(const char *name) {
    static const uint32_t types[] = {BN_TYPE_Q1_0, BN_TYPE_TQ2_0, BN_TYPE_TQ1_0, BN_TYPE_Q8_0, BN_TYPE_Q4_0,
                                     BN_TYPE_F16, BN_TYPE_F32};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (strcmp(bn_type_get(types[i])->name, name) == 0) return types[i];
    fprintf(stderr, "bench_kernels: unknown type %s\n", name);
    exit(2);
}

static uint8_t *make_weights(uint32_t type, int64_t rows, int64_t cols, size_t *row_bytes) {
    *row_bytes = (size_t)bn_row_bytes(type, (uint64_t)cols);
    uint8_t *w = malloc(*row_bytes * (size_t)rows);
    float *src = malloc((size_t)cols * sizeof(float));
    if (!w || !src) exit(3);
    for (int64_t r = 0; r < rows && r < SOURCE_ROWS; r++) {
        for (int64_t c = 0; c < cols; c++) src[c] = rng_normalish();
        bn_type_get(type)->from_float(src, w + (size_t)r * *row_bytes, cols);
    }
    for (int64_t r = SOURCE_ROWS; r < rows; r++)
        memcpy(w + (size_t)r * *row_bytes, w + (size_t)(r % SOURCE_ROWS) * *row_bytes, *row_bytes);
    free(src);
    return w;
}

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: bench_kernels <type> <gemv|gemm> <iters> [batch] [rows] [cols]\n");
        return 2;
    }
    const uint32_t type = type_by_name(argv[1]);
    const int gemm = strcmp(argv[2], "gemm") == 0, iters = atoi(argv[3]);
    const int batch = gemm ? (argc > 4 ? atoi(argv[4]) : 16) : 1;
    const int64_t rows = argc > 5 ? atoll(argv[5]) : 2048, cols = argc > 6 ? atoll(argv[6]) : 6144;
    char err[256];
    bn_isa isa;
    bn_matrix m;
    size_t row_bytes;
    if (bn_isa_select(&isa, err, sizeof err) != 0) {
        fprintf(stderr, "bench_kernels: %s\n", err);
        return 1;
    }
    uint8_t *w = make_weights(type, rows, cols, &row_bytes);
    if (bn_matrix_init(&m, type, rows, cols, w, err, sizeof err) || bn_matrix_prepare(&m, isa, err, sizeof err)) {
        fprintf(stderr, "bench_kernels: %s\n", err);
        return 1;
    }
    float *x = malloc((size_t)batch * (size_t)cols * sizeof(float));
    float *y = malloc((size_t)batch * (size_t)rows * sizeof(float));
    if (!x || !y) return 3;
    for (size_t i = 0; i < (size_t)batch * (size_t)cols; i++) x[i] = rng_normalish();
    bn_scratch scratch = {0};

    const double t0 = now_ns();
    for (int it = 0; it < iters; it++)
        if (bn_matmul(NULL, isa, &m, x, batch, y, &scratch) != 0) return 3;
    const double ns = now_ns() - t0;

    const double blocks = (double)rows * (double)cols / 128.0 * batch; /* 128-weight blocks x tokens */
    printf("{\"type\": \"%s\", \"op\": \"%s\", \"path\": \"%s\", \"rows\": %lld, \"cols\": %lld, \"batch\": %d, "
           "\"iters\": %d, \"ns_per_block\": %.3f, \"packed_bytes\": %zu, \"checksum\": %.6g}\n",
           bn_type_get(type)->name, gemm ? "gemm" : "gemv", bn_isa_name(isa), (long long)rows, (long long)cols, batch,
           iters, iters ? ns / iters / blocks : 0.0, m.packed_bytes, iters ? (double)y[0] + y[rows - 1] : 0.0);
    bn_scratch_free(&scratch);
    bn_matrix_release(&m);
    free(x);
    free(y);
    free(w);
    return 0;
}
