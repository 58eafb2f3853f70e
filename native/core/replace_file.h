/* Writing a file whole or not at all: the bytes go to a temporary name beside it, which is renamed
 * over the file only when every write succeeded (a reader never sees a half-written file; a full
 * disk leaves the old one, and no temporary file, behind). Errors name the file and errno's text. */
#ifndef BN_REPLACE_FILE_H
#define BN_REPLACE_FILE_H

#include <stdint.h>
#include <stdio.h>

typedef struct bn_replace_file {
    FILE *f;
    const char *path;
    char tmp[4096];
} bn_replace_file;

int bn_replace_open(bn_replace_file *o, const char *path, char *err, size_t errlen);
int bn_replace_write(bn_replace_file *o, const void *p, size_t n, char *err, size_t errlen);
int bn_replace_zeros(bn_replace_file *o, uint64_t n, char *err, size_t errlen);
/* Moves the write position (to fill in a header once what follows it is known). */
int bn_replace_seek(bn_replace_file *o, uint64_t offset, char *err, size_t errlen);
/* rc != 0 (a failure on the way): removes the temporary file and returns rc. Else flushes, syncs
 * when `sync` (skip it where a torn file is detected and rebuilt anyway) and renames into place;
 * on any failure the temporary file is removed. */
int bn_replace_close(bn_replace_file *o, int rc, int sync, char *err, size_t errlen);

#endif
