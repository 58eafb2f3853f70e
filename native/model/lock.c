/* The weights locked in memory (bn_model_lock). What is locked is what the forward pass reads:
 * each matrix's repacked copy (in the model's allocation or the runtime image's mapping) and each
 * tensor read in place (in the GGUF mapping, a pack's decoded tensors or the image). Not the
 * whole file mapping: the file pages of repacked matrices were released at load
 * (bn_mapped_file_drop), and locking them would read them back and hold those weights twice. */
#define _DEFAULT_SOURCE /* mlock, getrlimit */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>

#include "core/common.h"
#include "model/engine_internal.h"

typedef int (*range_op)(const void *p, size_t n);

/* op on every range of weights, in order, up to the first that fails (-1, errno from op); *bytes
 * gets the bytes of the ranges done. */
static int each_range(const bn_model *m, range_op op, uint64_t *bytes) {
    *bytes = 0;
    for (int i = 0; i < m->n_sources; i++) {
        const bn_matrix *w = m->sources[i].w;
        if (!w->packed || !w->packed_bytes) continue;
        if (op(w->packed, w->packed_bytes) != 0) return -1;
        *bytes += w->packed_bytes;
    }
    const bn_gguf *g = m->gguf;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const bn_gguf_tensor *t = &g->tensors[i];
        if (!t->data || !t->n_bytes || !bn_model_reads_in_place(t, m->isa)) continue;
        if (op(t->data, t->n_bytes) != 0) return -1;
        *bytes += t->n_bytes;
    }
    return 0;
}

/* "8 MiB", or "unlimited". */
static void memlock_limit(char *buf, size_t len) {
    struct rlimit limit;
    if (getrlimit(RLIMIT_MEMLOCK, &limit) != 0)
        snprintf(buf, len, "unknown");
    else if (limit.rlim_cur == RLIM_INFINITY)
        snprintf(buf, len, "unlimited");
    else
        snprintf(buf, len, "%.1f MiB", (double)limit.rlim_cur / (1 << 20));
}

/* An op that only counts: how many bytes the weights are. */
static int count(const void *p, size_t n) {
    (void)p;
    (void)n;
    return 0;
}

int bn_model_lock(bn_model *m, uint64_t *bytes, char *err, size_t errlen) {
    if (each_range(m, mlock, bytes) == 0) {
        m->locked = 1;
        return 0;
    }
    const int e = errno;
    /* all or nothing: a part locked would hold memory for no promise */
    if (!m->locked) each_range(m, munlock, bytes);
    each_range(m, count, bytes);
    char limit[32];
    memlock_limit(limit, sizeof limit);
    return bn_fail(err, errlen, "locking %.1f MiB of weights in memory: %s (the memory-lock limit, RLIMIT_MEMLOCK, is %s)",
                   (double)*bytes / (1 << 20), strerror(e), limit);
}

void bn_model_unlock(bn_model *m) {
    uint64_t bytes;
    each_range(m, munlock, &bytes);
    m->locked = 0;
}
