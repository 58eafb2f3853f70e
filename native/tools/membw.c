/* Memory read bandwidth: every thread sums its own slice of one large buffer. Threads are started
 * per pass and the pass is timed from start to join: with buffers of hundreds of MB a pass takes
 * milliseconds, and thread start-up (tens of microseconds) stays far below the noise. */
#define _POSIX_C_SOURCE 200809L
#include "tools/membw.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"

#define BN_MEMBW_MAX_THREADS 256

typedef struct {
    const uint64_t *words;
    size_t n_words;
    uint64_t sum; /* kept so the compiler cannot drop the reads */
} membw_slice;

/* Four independent accumulators: the adds vectorise and never wait on each other. */
static void *sum_slice(void *arg) {
    membw_slice *s = arg;
    uint64_t a = 0, b = 0, c = 0, d = 0;
    for (size_t i = 0; i + 4 <= s->n_words; i += 4) {
        a += s->words[i];
        b += s->words[i + 1];
        c += s->words[i + 2];
        d += s->words[i + 3];
    }
    s->sum += a ^ b ^ c ^ d;
    return NULL;
}

/* One pass over all slices; thread 0's slice is summed by the caller. Returns elapsed ms, or -1. */
static double timed_pass(membw_slice *slices, pthread_t *tids, int threads) {
    const double t0 = bn_now_ms();
    int started = 1;
    while (started < threads && pthread_create(&tids[started], NULL, sum_slice, &slices[started]) == 0) started++;
    sum_slice(&slices[0]);
    for (int t = 1; t < started; t++) pthread_join(tids[t], NULL);
    return started == threads ? bn_now_ms() - t0 : -1;
}

int bn_membw_measure(size_t bytes, int threads, int reps, bn_membw_result *out, char *err, size_t errlen) {
    if (threads < 1 || threads > BN_MEMBW_MAX_THREADS) return bn_fail(err, errlen, "threads must be 1..%d", BN_MEMBW_MAX_THREADS);
    if (reps < 1) return bn_fail(err, errlen, "reps must be at least 1");
    const size_t slice = bytes / (size_t)threads / 64 * 64;
    if (slice == 0) return bn_fail(err, errlen, "a buffer of %zu bytes is too small for %d threads", bytes, threads);
    uint64_t *buf = malloc(slice * (size_t)threads);
    membw_slice *slices = calloc((size_t)threads, sizeof *slices);
    pthread_t *tids = calloc((size_t)threads, sizeof *tids);
    int rc = 0;
    if (!buf || !slices || !tids) {
        rc = bn_fail(err, errlen, "out of memory allocating a %zu-byte bandwidth buffer", slice * (size_t)threads);
    } else {
        /* Touch every page first so the passes measure reads, not page faults. */
        memset(buf, 1, slice * (size_t)threads);
        for (int t = 0; t < threads; t++) slices[t] = (membw_slice){buf + (size_t)t * (slice / 8), slice / 8, 0};
        double best = 0, sum = 0;
        /* Pass 0 warms up (caches, TLB, CPU clocks) and is not counted. */
        for (int p = 0; p <= reps && rc == 0; p++) {
            const double ms = timed_pass(slices, tids, threads);
            if (ms < 0) {
                rc = bn_fail(err, errlen, "could not start %d threads", threads);
            } else if (p > 0) {
                const double gbps = ms > 0 ? (double)slice * threads / (ms * 1e6) : 0;
                if (gbps > best) best = gbps;
                sum += gbps;
            }
        }
        out->best_gbps = best;
        out->mean_gbps = sum / reps;
    }
    free(buf);
    free(slices);
    free(tids);
    return rc;
}
