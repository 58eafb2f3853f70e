/* The runtime image of a model: its weights as the engine runs them on one kernel path (the
 * tensors read in place, decoded from a pack, and every repacked matrix), in one file that the
 * next load maps in place instead of decoding and repacking. The file names what it was made
 * from (a key the caller gives, e.g. the pack's identity), the kernel path and layout version,
 * and holds a CRC-32 per MiB part: a load uses it only when all of them match. */
#ifndef BN_MODEL_IMAGE_H
#define BN_MODEL_IMAGE_H

#include <stddef.h>
#include <stdint.h>
#include "kernels/isa.h"

/* Bump when this file's format changes: older images are then rebuilt (a changed packed layout
 * is caught by the layouts signature of the spec). */
#define BN_IMAGE_LAYOUT_VERSION 1u
#define BN_IMAGE_KEY_MAX 447

typedef struct bn_image bn_image;

typedef struct bn_image_spec {
    const char *key;         /* what the weights come from; at most BN_IMAGE_KEY_MAX bytes */
    bn_isa isa;
    uint64_t resident_bytes; /* the tensors read in place (0 from a GGUF: they stay in its mapping) */
    uint64_t packed_bytes;   /* the repacked matrices */
    uint32_t layouts;        /* a CRC-32 of every repacked matrix's layout id and size, in order */
} bn_image_spec;

/* Maps the image at path if it matches spec in every field and every part's CRC-32 (checked on
 * `threads` threads); otherwise NULL, with why in note ("absent", "made for another ...",
 * "part 3 is damaged"). Never fails the load: a missing or bad image only costs a rebuild. */
bn_image *bn_image_open(const char *path, const bn_image_spec *spec, int threads, char *note, size_t len);
const uint8_t *bn_image_resident(const bn_image *im);
const uint8_t *bn_image_packed(const bn_image *im);
void bn_image_close(bn_image *im);

/* Writes an image (temporary name, then renamed into place). */
int bn_image_write(const char *path, const bn_image_spec *spec, const uint8_t *resident, const uint8_t *packed,
                   int threads, char *err, size_t errlen);

#endif
