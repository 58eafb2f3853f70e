/* Memory read bandwidth probe: how fast this machine streams a buffer far larger than its caches
 * into the cores. `bonsai bench` reports each result as a fraction of this roofline, measured in
 * the same run so a busy or throttled machine shows up in both numbers. */
#ifndef BN_MEMBW_H
#define BN_MEMBW_H

#include <stddef.h>

typedef struct {
    double best_gbps; /* 1e9 bytes per second, fastest pass */
    double mean_gbps;
} bn_membw_result;

/* Sums `bytes` of memory (rounded down to a multiple of 64 per thread) with `threads` threads,
 * `reps` times after one warm-up pass. Returns 0, or -1 with a message in err. */
int bn_membw_measure(size_t bytes, int threads, int reps, bn_membw_result *out, char *err, size_t errlen);

#endif
