/* bn_mapped_file_drop: released pages of a mapped file read back unchanged, and ranges outside
 * the mapping are ignored. */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <string.h>
#include "harness.h"
#include "core/mapped_file.h"

int main(void) {
    char err[256];
    bn_mapped_file *f;
    if (bn_mapped_file_open(bn_fixture("qwen3-tiny/models/tiny-qwen3-q1_0.gguf"), &f, err, sizeof err) != 0) {
        printf("skip: %s\n", err);
        return 77;
    }
    uint8_t *copy = malloc((size_t)f->size);
    memcpy(copy, f->data, (size_t)f->size);
    bn_mapped_file_drop(f, f->data + 100, (size_t)f->size - 200); /* unaligned ends: whole pages only */
    bn_mapped_file_drop(f, copy, 4096);                            /* not inside the mapping: ignored */
    CHECK(memcmp(copy, f->data, (size_t)f->size) == 0, "dropped pages read back differently");
    free(copy);
    bn_mapped_file_close(f);
    return bn_test_done("test_mapped_drop");
}
