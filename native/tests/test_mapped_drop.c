/* bn_mapped_file_drop: released pages of a mapped file read back unchanged, ranges outside the
 * mapping are ignored, and every range the engine hands to madvise (dropping a mapped file's pages,
 * and a model load's drops and huge-page advice) is whole pages of bn_page_size(). ctest runs this
 * twice: with the machine's pages, and with BONSAI_TEST_PAGE_SIZE=16384 as a Raspberry Pi 5's
 * 16 KiB-page kernel has them. */
#define _GNU_SOURCE
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "core/common.h"
#include "core/mapped_file.h"
#include "harness.h"
#include "model/engine.h"

#define MAX_CALLS 4096

typedef struct advice_call {
    uintptr_t addr;
    size_t len;
    int advice;
} advice_call;
static advice_call calls[MAX_CALLS];
static atomic_int n_calls;

/* Takes the place of libc's madvise for the engine linked into this test (the load drops pages
 * from several threads): each range is recorded, then given to the kernel as usual. */
int madvise(void *addr, size_t len, int advice) {
    const int i = atomic_fetch_add(&n_calls, 1);
    if (i < MAX_CALLS) calls[i] = (advice_call){(uintptr_t)addr, len, advice};
    return (int)syscall(SYS_madvise, addr, len, advice);
}

/* Every call recorded since `from` covers whole pages of `page`. */
static void check_aligned(int from, size_t page, const char *what) {
    CHECK(n_calls <= MAX_CALLS, "%d calls, more than recorded", (int)n_calls);
    for (int i = from; i < n_calls && i < MAX_CALLS; i++) {
        CHECK(calls[i].addr % page == 0 && calls[i].len % page == 0 && calls[i].len > 0,
              "%s: madvise(%#lx, %zu, %d) is not whole %zu-byte pages", what, (unsigned long)calls[i].addr,
              calls[i].len, calls[i].advice, page);
    }
}

int main(void) {
    const size_t page = bn_page_size();
    const char *test_page = getenv("BONSAI_TEST_PAGE_SIZE");
    if (test_page) CHECK(page == (size_t)strtoull(test_page, NULL, 10), "BONSAI_TEST_PAGE_SIZE=%s ignored: %zu", test_page, page);
    CHECK(page >= (size_t)sysconf(_SC_PAGESIZE) && (page & (page - 1)) == 0, "page size %zu", page);
    printf("page size %zu, huge pages %zu\n", page, bn_huge_page_size());

    char err[256];
    bn_mapped_file *f;
    if (bn_mapped_file_open(bn_fixture("qwen3-tiny/models/tiny-qwen3-q1_0.gguf"), &f, err, sizeof err) != 0) {
        printf("skip: %s\n", err);
        return 77;
    }
    uint8_t *copy = malloc((size_t)f->size);
    memcpy(copy, f->data, (size_t)f->size);

    /* Unaligned ends: only the whole pages inside, exactly those. */
    const uintptr_t p = (uintptr_t)f->data + 100, n = (uintptr_t)f->size - 200;
    bn_mapped_file_drop(f, (const void *)p, n);
    CHECK(n_calls == 1, "one madvise for one range, got %d", (int)n_calls);
    CHECK(calls[0].advice == MADV_DONTNEED, "advice %d", calls[0].advice);
    CHECK(calls[0].addr == ((p + page - 1) & ~(page - 1)), "first whole page %#lx", (unsigned long)calls[0].addr);
    CHECK(calls[0].addr + calls[0].len == ((p + n) & ~(page - 1)), "last whole page ends at %#lx",
          (unsigned long)(calls[0].addr + calls[0].len));
    check_aligned(0, page, "drop");

    /* A page's length that starts past a page boundary holds no whole page: nothing to release. */
    const uintptr_t boundary = ((uintptr_t)f->data + page - 1) & ~(page - 1);
    bn_mapped_file_drop(f, (const void *)(boundary + 1), page);
    CHECK(n_calls == 1, "a range within two pages reached madvise");
    bn_mapped_file_drop(f, copy, 4096); /* not inside the mapping: ignored */
    CHECK(n_calls == 1, "a range outside the mapping reached madvise");
    CHECK(memcmp(copy, f->data, (size_t)f->size) == 0, "dropped pages read back differently");
    free(copy);
    bn_mapped_file_close(f);

    /* A model load repacks its matrices and drops their file pages, then advises huge pages. */
    const int before = n_calls;
    bn_model *m = NULL;
    CHECK(bn_model_load(bn_fixture("qwen3-tiny/models/tiny-qwen3-q1_0.gguf"), NULL, &m, err, sizeof err) == 0, "load: %s", err);
    int drops = 0;
    for (int i = before; i < n_calls && i < MAX_CALLS; i++) drops += calls[i].advice == MADV_DONTNEED;
    CHECK(drops > 0, "the load dropped no file pages");
    check_aligned(before, page, "model load");
    bn_model_free(m);
    return bn_test_done("test_mapped_drop");
}
