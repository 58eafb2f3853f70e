/* Runtime images (image.h). Layout: a 512-byte header (magic, layout version, kernel path, the
 * sizes, the part size and count, the CRC-32 of the part table, the layouts signature, the key,
 * the header's own CRC-32),
 * the part table (a CRC-32 per part), then at a 64 KiB boundary the tensors read in place, padded
 * to a whole part, and the repacked matrices: a part never spans both, and the matrices start on
 * a page boundary of any page size up to 64 KiB. */
#define _POSIX_C_SOURCE 200809L
#include "model/image.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/common.h"
#include "core/mapped_file.h"
#include "core/replace_file.h"
#include "core/threadpool.h"
#include "pack/codec.h"

#define MAGIC "BONSAIRI"
#define HEADER_BYTES 512u
#define KEY_OFFSET 56u
#define PART_BYTES (1u << 20)
#define PAYLOAD_ALIGN (64u << 10)

struct bn_image {
    bn_mapped_file *file;
    const uint8_t *resident, *packed;
};

static uint64_t round_up(uint64_t n, uint64_t to) { return (n + to - 1) / to * to; }


/* Where things go for a spec: the parts of each region and the payload's offset. */
typedef struct image_plan {
    uint64_t resident_parts, packed_parts, n_parts;
    uint64_t payload, packed_at; /* offsets in the file */
    uint64_t size;
} image_plan;

static image_plan plan_image(const bn_image_spec *s) {
    image_plan p;
    p.resident_parts = round_up(s->resident_bytes, PART_BYTES) / PART_BYTES;
    p.packed_parts = round_up(s->packed_bytes, PART_BYTES) / PART_BYTES;
    p.n_parts = p.resident_parts + p.packed_parts;
    p.payload = round_up(HEADER_BYTES + 4 * p.n_parts, PAYLOAD_ALIGN);
    p.packed_at = p.payload + p.resident_parts * PART_BYTES;
    p.size = p.packed_at + s->packed_bytes;
    return p;
}

/* Part i of the payload as it lies in memory (regions given separately) and its length. */
static const uint8_t *part_bytes(const image_plan *p, const bn_image_spec *s, const uint8_t *resident,
                                 const uint8_t *packed, uint64_t i, size_t *len) {
    const int in_resident = i < p->resident_parts;
    const uint64_t k = in_resident ? i : i - p->resident_parts;
    const uint64_t region = in_resident ? s->resident_bytes : s->packed_bytes;
    const uint64_t start = k * PART_BYTES;
    *len = (size_t)(region - start < PART_BYTES ? region - start : PART_BYTES);
    return (in_resident ? resident : packed) + start;
}

typedef struct crc_job {
    const image_plan *plan;
    const bn_image_spec *spec;
    const uint8_t *resident, *packed;
    uint32_t *crcs;
} crc_job;

static void crc_range(const void *arg, long begin, long end) {
    const crc_job *j = arg;
    for (long i = begin; i < end; i++) {
        size_t len;
        const uint8_t *p = part_bytes(j->plan, j->spec, j->resident, j->packed, (uint64_t)i, &len);
        j->crcs[i] = bn_crc32(0, p, len);
    }
}

/* The CRC-32 of every part, on `threads` threads. */
static void part_crcs(const image_plan *plan, const bn_image_spec *spec, const uint8_t *resident,
                      const uint8_t *packed, int threads, uint32_t *crcs) {
    crc_job j = {plan, spec, resident, packed, crcs};
    bn_threadpool *pool = threads > 1 ? bn_threadpool_new(threads) : NULL;
    bn_parallel_ranges(pool, (long)plan->n_parts, 1, 2, crc_range, &j);
    bn_threadpool_free(pool);
}

static void fill_header(uint8_t *h, const bn_image_spec *s, const image_plan *p, uint32_t table_crc) {
    memset(h, 0, HEADER_BYTES);
    memcpy(h, MAGIC, 8);
    bn_store_le(h + 8, BN_IMAGE_LAYOUT_VERSION, 4);
    bn_store_le(h + 12, (uint32_t)s->isa, 4);
    bn_store_le(h + 16, s->resident_bytes, 8);
    bn_store_le(h + 24, s->packed_bytes, 8);
    bn_store_le(h + 32, p->payload, 8);
    bn_store_le(h + 40, PART_BYTES, 4);
    bn_store_le(h + 44, (uint32_t)p->n_parts, 4);
    bn_store_le(h + 48, table_crc, 4);
    bn_store_le(h + 52, s->layouts, 4);
    memcpy(h + KEY_OFFSET, s->key, strlen(s->key));
    bn_store_le(h + HEADER_BYTES - 4, bn_crc32(0, h, HEADER_BYTES - 4), 4);
}

static int key_fits(const bn_image_spec *s, char *err, size_t errlen) {
    if (strlen(s->key) > BN_IMAGE_KEY_MAX) return bn_fail(err, errlen, "image key is over %d bytes", BN_IMAGE_KEY_MAX);
    return 0;
}

bn_image *bn_image_open(const char *path, const bn_image_spec *spec, int threads, char *note, size_t len) {
    if (access(path, F_OK) != 0) {
        bn_fail(note, len, "absent");
        return NULL;
    }
    if (key_fits(spec, note, len)) return NULL;
    bn_mapped_file *f;
    if (bn_mapped_file_open(path, &f, note, len)) return NULL;
    const image_plan plan = plan_image(spec);
    uint32_t *crcs = NULL;
    uint8_t want[HEADER_BYTES];
    const uint8_t *h = f->data;
    if (f->size != plan.size || f->size < HEADER_BYTES ||
        bn_load_le(h + HEADER_BYTES - 4, 4) != bn_crc32(0, h, HEADER_BYTES - 4)) {
        bn_fail(note, len, "damaged or of another size than this model's");
        goto reject;
    }
    fill_header(want, spec, &plan, (uint32_t)bn_load_le(h + 48, 4));
    if (memcmp(h, want, HEADER_BYTES) != 0) {
        bn_fail(note, len, "made for another model, kernel path or layout version");
        goto reject;
    }
    if (bn_load_le(h + 48, 4) != bn_crc32(0, h + HEADER_BYTES, 4 * plan.n_parts)) {
        bn_fail(note, len, "its part table is damaged");
        goto reject;
    }
    crcs = malloc((plan.n_parts ? plan.n_parts : 1) * sizeof *crcs);
    if (!crcs) {
        bn_fail(note, len, "out of memory");
        goto reject;
    }
    part_crcs(&plan, spec, f->data + plan.payload, f->data + plan.packed_at, threads, crcs);
    for (uint64_t i = 0; i < plan.n_parts; i++)
        if (crcs[i] != bn_load_le(h + HEADER_BYTES + 4 * i, 4)) {
            bn_fail(note, len, "part %llu of %llu is damaged (CRC-32)", (unsigned long long)i,
                    (unsigned long long)plan.n_parts);
            goto reject;
        }
    free(crcs);
    bn_image *im = malloc(sizeof *im);
    if (!im) {
        bn_fail(note, len, "out of memory");
        bn_mapped_file_close(f);
        return NULL;
    }
    *im = (bn_image){f, f->data + plan.payload, f->data + plan.packed_at};
    return im;
reject:
    free(crcs);
    bn_mapped_file_close(f);
    return NULL;
}

const uint8_t *bn_image_resident(const bn_image *im) { return im->resident; }
const uint8_t *bn_image_packed(const bn_image *im) { return im->packed; }

void bn_image_close(bn_image *im) {
    if (!im) return;
    bn_mapped_file_close(im->file);
    free(im);
}

static int write_body(bn_replace_file *o, const bn_image_spec *s, const image_plan *p, const uint8_t *resident,
                      const uint8_t *packed, const uint32_t *crcs, char *err, size_t errlen) {
    uint8_t h[HEADER_BYTES], *table = malloc(4 * (p->n_parts ? p->n_parts : 1));
    if (!table) return bn_fail(err, errlen, "out of memory");
    for (uint64_t i = 0; i < p->n_parts; i++) bn_store_le(table + 4 * i, crcs[i], 4);
    fill_header(h, s, p, bn_crc32(0, table, 4 * p->n_parts));
    int rc = bn_replace_write(o, h, HEADER_BYTES, err, errlen) || bn_replace_write(o, table, 4 * p->n_parts, err, errlen) ||
             bn_replace_zeros(o, p->payload - HEADER_BYTES - 4 * p->n_parts, err, errlen) ||
             bn_replace_write(o, resident, s->resident_bytes, err, errlen) ||
             bn_replace_zeros(o, p->packed_at - p->payload - s->resident_bytes, err, errlen) ||
             bn_replace_write(o, packed, s->packed_bytes, err, errlen);
    free(table);
    return rc;
}

int bn_image_write(const char *path, const bn_image_spec *spec, const uint8_t *resident, const uint8_t *packed,
                   int threads, char *err, size_t errlen) {
    if (key_fits(spec, err, errlen)) return -1;
    const image_plan plan = plan_image(spec);
    uint32_t *crcs = malloc((plan.n_parts ? plan.n_parts : 1) * sizeof *crcs);
    if (!crcs) return bn_fail(err, errlen, "out of memory");
    part_crcs(&plan, spec, resident, packed, threads, crcs);
    bn_replace_file out;
    int rc = bn_replace_open(&out, path, err, errlen);
    if (rc == 0) {
        rc = write_body(&out, spec, &plan, resident, packed, crcs, err, errlen);
        /* no fsync: an image torn by a power cut fails its CRCs at the next load and is rebuilt */
        rc = bn_replace_close(&out, rc, 0, err, errlen);
    }
    free(crcs);
    return rc;
}
