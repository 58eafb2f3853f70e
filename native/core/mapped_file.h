/* A read-only memory mapping of a whole file. Tensor data is read in place, except the matrices the
 * kernels repack at load, whose file pages are then released (bn_mapped_file_drop). */
#ifndef BN_MAPPED_FILE_H
#define BN_MAPPED_FILE_H

#include <stddef.h>
#include <stdint.h>

typedef struct bn_mapped_file {
    const uint8_t *data; /* NULL for an empty file */
    uint64_t size;
} bn_mapped_file;

/* Maps path read-only (MAP_PRIVATE, PROT_READ). Errors name the path and errno text. */
int bn_mapped_file_open(const char *path, bn_mapped_file **out, char *err, size_t errlen);
void bn_mapped_file_close(bn_mapped_file *f);
/* Releases the whole pages of [p, p + n) (inside f) from this process's memory, e.g. weights
 * that were repacked; a later read maps them in again from the file. */
void bn_mapped_file_drop(const bn_mapped_file *f, const void *p, size_t n);

#endif
