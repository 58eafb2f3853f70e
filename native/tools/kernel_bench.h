/* Timing of bn_matmul for `bonsai bench kernels`: one weight type, shape, batch, path and
 * thread count at a time, on random weights built in memory. */
#ifndef BN_KERNEL_BENCH_H
#define BN_KERNEL_BENCH_H

#include <stddef.h>
#include <stdint.h>
#include "kernels/kernels.h"

typedef struct bn_kernel_bench_spec {
    uint32_t type;
    int64_t rows, cols;
    int batch;          /* tokens per product: 1 = GEMV (decode), more = GEMM (prefill) */
    bn_isa isa;
    int threads;
    double min_ms;      /* keep repeating until this much time has been measured */
    size_t stream_bytes; /* GEMV: rotate over copies of the matrix totalling at least this, so the
                           weights come from memory as in a model, not from the cache */
} bn_kernel_bench_spec;

typedef struct bn_kernel_bench_result {
    double best_ms;     /* fastest single product */
    double gbps;        /* weight bytes x batch / best time, 1e9 per second */
    double ns_per_block; /* best time per 128 weights per token */
    double pack_ms;     /* load-time repacking of one copy (0 when the path reads the file layout) */
    size_t packed_bytes; /* extra memory of that repacking per copy */
    int iterations;
} bn_kernel_bench_result;

/* Uniform-sum pseudo-random value near a normal one (mean 0, sd ~0.58), from *state. */
float bn_bench_rand_normalish(uint32_t *state);
/* rows x cols of `type`, its rows tiled from a few quantized random rows: valid blocks of any type
 * (finite scales) without quantizing hundreds of MB. NULL when out of memory; free() it. */
uint8_t *bn_bench_random_matrix(uint32_t type, int64_t rows, int64_t cols, uint32_t *state);

/* Returns 0, or -1 with a message in err. */
int bn_kernel_bench(const bn_kernel_bench_spec *spec, bn_kernel_bench_result *out, char *err, size_t errlen);

#endif
