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
#include "tools/kernel_bench.h"
#include "kernels/kernels.h"
#include "quants/quants.h"

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
    uint32_t type;
    if (bn_type_from_name(argv[1], &type) != 0) {
        fprintf(stderr, "bench_kernels: unknown type %s\n", argv[1]);
        return 2;
    }
    const int gemm = strcmp(argv[2], "gemm") == 0, iters = atoi(argv[3]);
    const int batch = gemm ? (argc > 4 ? atoi(argv[4]) : 16) : 1;
    const int64_t rows = argc > 5 ? atoll(argv[5]) : 2048, cols = argc > 6 ? atoll(argv[6]) : 6144;
    char err[256];
    bn_isa isa;
    bn_matrix m;
    if (bn_isa_select(&isa, err, sizeof err) != 0) {
        fprintf(stderr, "bench_kernels: %s\n", err);
        return 1;
    }
    uint32_t state = 12345u;
    uint8_t *w = bn_bench_random_matrix(type, rows, cols, &state);
    if (!w) return 3;
    if (bn_matrix_init(&m, type, rows, cols, w, err, sizeof err) || bn_matrix_prepare(&m, isa, err, sizeof err)) {
        fprintf(stderr, "bench_kernels: %s\n", err);
        return 1;
    }
    float *x = malloc((size_t)batch * (size_t)cols * sizeof(float));
    float *y = malloc((size_t)batch * (size_t)rows * sizeof(float));
    if (!x || !y) return 3;
    for (size_t i = 0; i < (size_t)batch * (size_t)cols; i++) x[i] = bn_bench_rand_normalish(&state);
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
