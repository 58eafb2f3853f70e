#define _DEFAULT_SOURCE /* madvise */
#include "core/mapped_file.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/common.h"

/* Checks that fd is a regular file that fits in the address space, and returns its size. */
static int regular_file_size(int fd, const char *path, uint64_t *size, char *err, size_t errlen) {
    struct stat st;
    if (fstat(fd, &st) != 0) return bn_fail(err, errlen, "cannot stat '%s': %s", path, strerror(errno));
    if (S_ISDIR(st.st_mode)) return bn_fail(err, errlen, "cannot map '%s': it is a directory", path);
    if (!S_ISREG(st.st_mode)) return bn_fail(err, errlen, "cannot map '%s': not a regular file", path);
    uint64_t n = (uint64_t)st.st_size;
    /* On a 32-bit userland a multi-GB model cannot be mapped whole; say so instead of truncating. */
    if (n > (uint64_t)SIZE_MAX)
        return bn_fail(err, errlen, "cannot map '%s': %" PRIu64 " bytes do not fit in this process's address space",
                       path, n);
    *size = n;
    return 0;
}

int bn_mapped_file_open(const char *path, bn_mapped_file **out, char *err, size_t errlen) {
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return bn_fail(err, errlen, "cannot open '%s': %s", path, strerror(errno));
    uint64_t size = 0;
    if (regular_file_size(fd, path, &size, err, errlen) != 0) {
        close(fd);
        return -1;
    }
    const uint8_t *data = NULL;
    /* mmap of length 0 is an error, so an empty file is represented by data == NULL. */
    if (size > 0) {
        void *m = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            int e = errno;
            close(fd);
            return bn_fail(err, errlen, "cannot map '%s' (%" PRIu64 " bytes): %s", path, size, strerror(e));
        }
        data = m;
    }
    close(fd); /* the mapping keeps the file referenced */
    bn_mapped_file *f = malloc(sizeof *f);
    if (!f) {
        if (data) munmap((void *)data, (size_t)size);
        return bn_fail(err, errlen, "out of memory mapping '%s'", path);
    }
    f->data = data;
    f->size = size;
    *out = f;
    return 0;
}

void bn_mapped_file_close(bn_mapped_file *f) {
    if (!f) return;
    if (f->data) munmap((void *)f->data, (size_t)f->size);
    free(f);
}

void bn_mapped_file_drop(const bn_mapped_file *f, const void *p, size_t n) {
    const uintptr_t page = bn_page_size();
    uintptr_t begin = ((uintptr_t)p + page - 1) & ~(page - 1), end = ((uintptr_t)p + n) & ~(page - 1);
    if (!f || !f->data || (const uint8_t *)p < f->data || (const uint8_t *)p + n > f->data + f->size) return;
    /* the mapping is private and never written: dropped pages read back from the file if used */
    if (begin < end) madvise((void *)begin, end - begin, MADV_DONTNEED);
}
