/* Kernel timing for `bonsai bench kernels`. A GEMV streams its weights from memory in a real
 * model (every layer's matrices are different and together far larger than the caches), so the
 * decode case rotates over enough copies of the matrix to defeat the caches and times whole
 * rotations; a GEMM reuses its weights across the batch and is timed one product at a time.
 * The best sample is reported: other processes on the machine only ever make a sample slower. */
#include "tools/kernel_bench.h"

#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "quants/quants.h"

/* Distinct weight rows, quantized from pseudo-random values and tiled over the matrix. */
#define SOURCE_ROWS 64
/* Products timed at least, however long they take. */
#define MIN_SAMPLES 3
/* A small matrix stays cached however many copies there are: cap them at a bounded setup cost. */
#define MAX_COPIES 1024

float bn_bench_rand_normalish(uint32_t *state) {
    float s = 0.0f;
    for (int i = 0; i < 4; i++) {
        *state = *state * 1664525u + 1013904223u;
        s += (float)(*state >> 8) / 16777216.0f - 0.5f;
    }
    return s;
}

uint8_t *bn_bench_random_matrix(uint32_t type, int64_t rows, int64_t cols, uint32_t *state) {
    const size_t row_bytes = (size_t)bn_row_bytes(type, (uint64_t)cols);
    uint8_t *w = malloc(row_bytes * (size_t)rows);
    float *src = malloc((size_t)cols * sizeof *src);
    if (!w || !src) {
        free(w);
        free(src);
        return NULL;
    }
    for (int64_t r = 0; r < rows; r++) {
        if (r < SOURCE_ROWS) {
            for (int64_t c = 0; c < cols; c++) src[c] = 0.02f * bn_bench_rand_normalish(state);
            bn_type_get(type)->from_float(src, w + (size_t)r * row_bytes, cols);
        } else {
            memcpy(w + (size_t)r * row_bytes, w + (size_t)(r % SOURCE_ROWS) * row_bytes, row_bytes);
        }
    }
    free(src);
    return w;
}

typedef struct {
    int copies;
    uint8_t **data;
    bn_matrix *m;
    float *x, *y;
    bn_scratch scratch;
    bn_threadpool *pool;
} bench_state;

static void bench_free(bench_state *b) {
    for (int i = 0; i < b->copies; i++) {
        if (b->m) bn_matrix_release(&b->m[i]);
        if (b->data) free(b->data[i]);
    }
    free(b->data);
    free(b->m);
    free(b->x);
    free(b->y);
    bn_scratch_free(&b->scratch);
    bn_threadpool_free(b->pool);
}

/* Weights (packed for the path, the first packing timed), activations, output and pool. */
static int bench_setup(const bn_kernel_bench_spec *s, bench_state *b, bn_kernel_bench_result *out, char *err,
                       size_t errlen) {
    const size_t bytes = (size_t)bn_row_bytes(s->type, (uint64_t)s->cols) * (size_t)s->rows;
    const size_t copies = s->batch == 1 && s->stream_bytes > bytes ? (s->stream_bytes + bytes - 1) / bytes : 1;
    b->copies = copies < MAX_COPIES ? (int)copies : MAX_COPIES;
    b->data = calloc((size_t)b->copies, sizeof *b->data);
    b->m = calloc((size_t)b->copies, sizeof *b->m);
    b->x = malloc((size_t)s->batch * (size_t)s->cols * sizeof *b->x);
    b->y = malloc((size_t)s->batch * (size_t)s->rows * sizeof *b->y);
    b->pool = bn_threadpool_new(s->threads);
    if (!b->data || !b->m || !b->x || !b->y || !b->pool) return bn_fail(err, errlen, "out of memory");
    uint32_t state = 12345u;
    for (int i = 0; i < b->copies; i++) {
        if (!(b->data[i] = bn_bench_random_matrix(s->type, s->rows, s->cols, &state)))
            return bn_fail(err, errlen, "out of memory for %d copies of a %zu-byte matrix", b->copies, bytes);
        if (bn_matrix_init(&b->m[i], s->type, s->rows, s->cols, b->data[i], err, errlen) != 0) return -1;
        const double t0 = bn_now_ms();
        if (bn_matrix_prepare(&b->m[i], s->isa, err, errlen) != 0) return -1;
        if (i == 0) {
            out->pack_ms = b->m[0].packed ? bn_now_ms() - t0 : 0;
            out->packed_bytes = b->m[0].packed_bytes;
        }
    }
    for (size_t i = 0; i < (size_t)s->batch * (size_t)s->cols; i++) b->x[i] = bn_bench_rand_normalish(&state);
    return 0;
}

/* One pass over every copy; ms per product, or -1 on failure. */
static double timed_rotation(const bn_kernel_bench_spec *s, bench_state *b) {
    const double t0 = bn_now_ms();
    for (int i = 0; i < b->copies; i++)
        if (bn_matmul(b->pool, s->isa, &b->m[i], b->x, s->batch, b->y, &b->scratch) != 0) return -1;
    return (bn_now_ms() - t0) / b->copies;
}

int bn_kernel_bench(const bn_kernel_bench_spec *s, bn_kernel_bench_result *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    if (s->rows <= 0 || s->cols <= 0 || s->batch < 1 || s->threads < 1)
        return bn_fail(err, errlen, "rows, cols, batch and threads must be positive");
    if (!bn_type_get(s->type)) return bn_fail(err, errlen, "unknown weight type %u", (unsigned)s->type);
    if (!bn_isa_supported(s->isa)) return bn_fail(err, errlen, "this CPU does not support %s", bn_isa_name(s->isa));
    bench_state b = {0};
    int rc = bench_setup(s, &b, out, err, errlen);
    /* one untimed product first: scratch, pool threads and clocks warm up */
    if (rc == 0 && bn_matmul(b.pool, s->isa, &b.m[0], b.x, s->batch, b.y, &b.scratch) != 0)
        rc = bn_fail(err, errlen, "out of memory in bn_matmul");
    double best = -1, spent = 0;
    while (rc == 0 && (out->iterations < MIN_SAMPLES || spent < s->min_ms)) {
        const double ms = timed_rotation(s, &b);
        if (ms < 0) rc = bn_fail(err, errlen, "out of memory in bn_matmul");
        spent += ms * b.copies;
        if (best < 0 || ms < best) best = ms;
        out->iterations += b.copies;
    }
    if (rc == 0) {
        const double blocks = (double)s->rows * (double)s->cols / 128.0 * s->batch;
        const double bytes = (double)bn_row_bytes(s->type, (uint64_t)s->cols) * (double)s->rows * s->batch;
        out->best_ms = best;
        out->gbps = bytes / (best * 1e6);
        out->ns_per_block = best * 1e6 / blocks;
    }
    bench_free(&b);
    return rc;
}
