#define _DEFAULT_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
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

/* Above this a test's page size is no page size any kernel has: the hook is ignored. */
#define BN_MAX_TEST_PAGE ((size_t)1 << 20)

static size_t page_size;
static pthread_once_t page_size_once = PTHREAD_ONCE_INIT;

static void read_page_size(void) {
    const long real = sysconf(_SC_PAGESIZE);
    page_size = real > 0 ? (size_t)real : 4096;
    const char *test = getenv("BONSAI_TEST_PAGE_SIZE");
    if (!test || !*test) return;
    char *end;
    const unsigned long long n = strtoull(test, &end, 10);
    const int power_of_two = n != 0 && (n & (n - 1)) == 0;
    if (*end == '\0' && power_of_two && n > page_size && n <= BN_MAX_TEST_PAGE) page_size = (size_t)n;
}

size_t bn_page_size(void) {
    pthread_once(&page_size_once, read_page_size);
    return page_size;
}

size_t bn_huge_page_size(void) {
    const size_t page = bn_page_size();
    return page * (page / 8);
}

void *bn_alloc_streamed(size_t bytes) {
    const size_t huge = bn_huge_page_size();
    if (bytes < huge) return aligned_alloc(64, (bytes + 63) & ~(size_t)63);
    return aligned_alloc(huge, (bytes + huge - 1) & ~(huge - 1));
}

void bn_advise_huge(void *p, size_t bytes) {
    const uintptr_t huge = bn_huge_page_size();
    const uintptr_t begin = ((uintptr_t)p + huge - 1) & ~(huge - 1);
    const uintptr_t end = ((uintptr_t)p + bytes) & ~(huge - 1);
#if defined(MADV_HUGEPAGE)
    if (end > begin) madvise((void *)begin, end - begin, MADV_HUGEPAGE);
#endif
}
