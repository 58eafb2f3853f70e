/* Whole-or-nothing file writes (replace_file.h). */
#define _POSIX_C_SOURCE 200809L
#include "core/replace_file.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "core/common.h"

static int fail_errno(const char *file, char *err, size_t errlen) {
    return bn_fail(err, errlen, "%s: %s", file, strerror(errno));
}

int bn_replace_open(bn_replace_file *o, const char *path, char *err, size_t errlen) {
    o->path = path;
    if ((size_t)snprintf(o->tmp, sizeof o->tmp, "%s.tmp-%ld", path, (long)getpid()) >= sizeof o->tmp)
        return bn_fail(err, errlen, "%s: path too long", path);
    o->f = fopen(o->tmp, "wb");
    return o->f ? 0 : fail_errno(o->tmp, err, errlen);
}

int bn_replace_write(bn_replace_file *o, const void *p, size_t n, char *err, size_t errlen) {
    return n == 0 || fwrite(p, 1, n, o->f) == n ? 0 : fail_errno(o->tmp, err, errlen);
}

int bn_replace_zeros(bn_replace_file *o, uint64_t n, char *err, size_t errlen) {
    static const uint8_t zeros[4096];
    for (; n > 0; n -= n < sizeof zeros ? n : sizeof zeros)
        if (bn_replace_write(o, zeros, n < sizeof zeros ? (size_t)n : sizeof zeros, err, errlen)) return -1;
    return 0;
}

int bn_replace_seek(bn_replace_file *o, uint64_t offset, char *err, size_t errlen) {
    return fseeko(o->f, (off_t)offset, SEEK_SET) == 0 ? 0 : fail_errno(o->tmp, err, errlen);
}

int bn_replace_close(bn_replace_file *o, int rc, int sync, char *err, size_t errlen) {
    if (rc == 0 && (fflush(o->f) != 0 || (sync && fsync(fileno(o->f)) != 0))) rc = fail_errno(o->tmp, err, errlen);
    if (fclose(o->f) != 0 && rc == 0) rc = fail_errno(o->tmp, err, errlen);
    if (rc == 0 && rename(o->tmp, o->path) != 0) rc = fail_errno(o->path, err, errlen);
    if (rc != 0) unlink(o->tmp);
    return rc;
}
