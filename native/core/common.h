/* Shared helpers for the C engine: error messages and overflow-safe size arithmetic.
 * Every function that can fail takes (char *err, size_t errlen) and returns 0 on success,
 * -1 on failure with a one-line human message in err (no trailing newline). */
#ifndef BN_COMMON_H
#define BN_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdarg.h>

#if defined(__GNUC__)
#define BN_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define BN_PRINTF(a, b)
#endif

/* Writes a formatted message into err (if err is non-NULL) and returns -1, so callers can
 * `return bn_fail(err, errlen, "...")`. */
static inline BN_PRINTF(3, 4) int bn_fail(char *err, size_t errlen, const char *fmt, ...) {
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* n (1..8) bytes little-endian, byte by byte: independent of the host's endianness and alignment
 * (file formats). */
static inline uint64_t bn_load_le(const uint8_t *p, unsigned n) {
    uint64_t v = 0;
    for (unsigned i = n; i-- > 0;) v = (v << 8) | p[i];
    return v;
}
static inline void bn_store_le(uint8_t *p, uint64_t v, unsigned n) {
    for (unsigned i = 0; i < n; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* a + b and a * b on uint64_t; return 0 on overflow (result untouched), 1 otherwise. */
static inline int bn_add_u64(uint64_t a, uint64_t b, uint64_t *out) {
    if (a > UINT64_MAX - b) return 0;
    *out = a + b;
    return 1;
}
static inline int bn_mul_u64(uint64_t a, uint64_t b, uint64_t *out) {
    if (a != 0 && b > UINT64_MAX / a) return 0;
    *out = a * b;
    return 1;
}

/* Writes the n names into buf as "a, b, c or d" (truncated to len), for messages that list the
 * accepted values from the table that defines them. */
void bn_join_names(char *buf, size_t len, const char *const *names, int n);

/* Monotonic clock in milliseconds (for timings reported to users). */
double bn_now_ms(void);

/* The page size that every mapping, madvise and alignment rule in the engine takes: the kernel's
 * (sysconf), which is 16 KiB under the Raspberry Pi 5's kernel and 64 KiB under some others, so
 * nothing may assume 4 KiB. A test may raise it with the environment variable
 * BONSAI_TEST_PAGE_SIZE to a larger power of two (at most 1 MiB): a range aligned to 16 KiB is
 * aligned to 4 KiB pages too, so a 4 KiB machine runs the engine as a 16 KiB one would. Any other
 * value is ignored. Read once; safe from any thread. */
size_t bn_page_size(void);
/* The transparent huge page that goes with it: what one page of page-table entries (8 bytes each)
 * maps, 2 MiB with 4 KiB pages, 32 MiB with 16 KiB, 512 MiB with 64 KiB. */
size_t bn_huge_page_size(void);

/* Memory for data streamed through again and again (packed weights): 64-byte aligned, and when
 * large, aligned to huge pages so that bn_advise_huge can put it on them. Free with free(). NULL
 * when out of memory. */
void *bn_alloc_streamed(size_t bytes);
/* Asks for transparent huge pages for the whole huge pages inside [p, p + bytes): with small
 * pages every page streamed is a TLB miss. Advice only (nothing happens where the system has no
 * THP): memory not yet touched then faults in huge pages; pages already there are merged by the
 * kernel's khugepaged in the background. */
void bn_advise_huge(void *p, size_t bytes);

#endif
