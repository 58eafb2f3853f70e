#define _DEFAULT_SOURCE
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include "core/common.h"

double bn_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

void bn_join_names(char *buf, size_t len, const char *const *names, int n) {
    size_t off = 0;
    if (len) buf[0] = '\0';
    for (int i = 0; i < n && off < len; i++) {
        const char *sep = i == 0 ? "" : i == n - 1 ? " or " : ", ";
        off += (size_t)snprintf(buf + off, len - off, "%s%s", sep, names[i]);
    }
}

/* The usual transparent huge page size of x86-64 and arm64 with 4 KiB base pages. Elsewhere (a
 * 16 KiB-page arm64 kernel) the advice covers fewer whole huge pages or none, which costs nothing. */
#define BN_HUGE_PAGE ((size_t)2 << 20)

void *bn_alloc_streamed(size_t bytes) {
    if (bytes < BN_HUGE_PAGE) return aligned_alloc(64, (bytes + 63) & ~(size_t)63);
    return aligned_alloc(BN_HUGE_PAGE, (bytes + BN_HUGE_PAGE - 1) & ~(BN_HUGE_PAGE - 1));
}

void bn_advise_huge(void *p, size_t bytes) {
    const uintptr_t begin = ((uintptr_t)p + BN_HUGE_PAGE - 1) & ~(uintptr_t)(BN_HUGE_PAGE - 1);
    const uintptr_t end = ((uintptr_t)p + bytes) & ~(uintptr_t)(BN_HUGE_PAGE - 1);
#if defined(MADV_HUGEPAGE)
    if (end > begin) madvise((void *)begin, end - begin, MADV_HUGEPAGE);
#endif
}
