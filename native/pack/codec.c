/* The chunk codec of .bnz packs (codec.h): a chunk's blocks split into one stream per block
 * field, each stream coded on its own.
 *
 * Chunk layout: the streams of the type's layout in field order, each as
 *   method (u8) | payload length (LEB128, at most 5 bytes) | payload
 * with nothing before, between or after. A stream's decoded length is the chunk's block count
 * times the field's width, so it is not stored. Methods: 0 stored (payload = the bytes), 1 rANS
 * of the bytes, 2 rANS of the bytes after the field's transform (rans.h gives the rANS layout).
 *
 * The decoder never holds a whole stream: it decodes every stream a group of blocks at a time
 * into a small buffer and scatters that into the blocks in place, so its working set stays in
 * the first-level cache and it allocates nothing (it takes about 40 KiB of stack). */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include "pack/codec.h"
#include "pack/rans.h"
#include "core/common.h"
#include "quants/quants.h"

enum { METHOD_STORED = 0, METHOD_RANS = 1, METHOD_RANS_TRANSFORMED = 2 };

/* What method 2 models. */
enum transform {
    TRANSFORM_NONE,
    TRANSFORM_DELTA,   /* byte minus the previous byte of the stream (mod 256), the first minus 0 */
    TRANSFORM_ROW_XOR, /* byte XOR the same byte one row earlier; the chunk's first row XOR 0 */
};

#define MAX_FIELDS 4
#define HEADER_MAX 6         /* method byte and a 5-byte length */
#define GROUP_BYTES 16384    /* decoded bytes per group: buffer and blocks stay in L1 */

typedef struct field {
    uint8_t offset, width;   /* bytes within the block */
    uint8_t kind;            /* enum bn_pack_stream_kind */
    uint8_t transform;
} field;

typedef struct layout {
    size_t block_bytes;
    int n_fields;
    field fields[MAX_FIELDS];
} layout;

/* An fp16 scale at byte offset `at` is two streams: the low bytes (mantissa bits, near uniform)
 * and the high bytes (sign, exponent, top of the mantissa), which drift slowly from block to
 * block and so are tried as differences. */
#define SCALE_FIELDS(at) {(at), 1, BN_PACK_SCALES, TRANSFORM_NONE}, {(at) + 1, 1, BN_PACK_SCALES, TRANSFORM_DELTA}

static const layout layout_q1_0 = {
    sizeof(bn_block_q1_0), 3,
    {SCALE_FIELDS(offsetof(bn_block_q1_0, d)), {offsetof(bn_block_q1_0, qs), 16, BN_PACK_SIGNS, TRANSFORM_ROW_XOR}}};
static const layout layout_tq2_0 = {
    sizeof(bn_block_tq2_0), 3,
    {{offsetof(bn_block_tq2_0, qs), 64, BN_PACK_TERNARY, TRANSFORM_NONE}, SCALE_FIELDS(offsetof(bn_block_tq2_0, d))}};
/* qs packs five trits a byte and qh four: two distributions, two streams. */
static const layout layout_tq1_0 = {
    sizeof(bn_block_tq1_0), 4,
    {{offsetof(bn_block_tq1_0, qs), 48, BN_PACK_TERNARY, TRANSFORM_NONE},
     {offsetof(bn_block_tq1_0, qh), 4, BN_PACK_TERNARY, TRANSFORM_NONE},
     SCALE_FIELDS(offsetof(bn_block_tq1_0, d))}};
static const layout layout_q8_0 = {
    sizeof(bn_block_q8_0), 3,
    {SCALE_FIELDS(offsetof(bn_block_q8_0, d)), {offsetof(bn_block_q8_0, qs), 32, BN_PACK_VALUES, TRANSFORM_NONE}}};
static const layout layout_q4_0 = {
    sizeof(bn_block_q4_0), 3,
    {SCALE_FIELDS(offsetof(bn_block_q4_0, d)), {offsetof(bn_block_q4_0, qs), 16, BN_PACK_VALUES, TRANSFORM_NONE}}};
static const layout layout_f32 = {
    4, 4,
    {{0, 1, BN_PACK_VALUES, TRANSFORM_NONE}, {1, 1, BN_PACK_VALUES, TRANSFORM_NONE},
     {2, 1, BN_PACK_VALUES, TRANSFORM_NONE}, {3, 1, BN_PACK_VALUES, TRANSFORM_NONE}}};
static const layout layout_f16 = {
    2, 2, {{0, 1, BN_PACK_VALUES, TRANSFORM_NONE}, {1, 1, BN_PACK_VALUES, TRANSFORM_NONE}}};
static const layout layout_bytes = {1, 1, {{0, 1, BN_PACK_VALUES, TRANSFORM_NONE}}};

static const layout *layout_of(uint32_t type) {
    switch (type) {
    case BN_TYPE_Q1_0: return &layout_q1_0;
    case BN_TYPE_TQ2_0: return &layout_tq2_0;
    case BN_TYPE_TQ1_0: return &layout_tq1_0;
    case BN_TYPE_Q8_0: return &layout_q8_0;
    case BN_TYPE_Q4_0: return &layout_q4_0;
    case BN_TYPE_F32: return &layout_f32;
    case BN_TYPE_F16:
    case BN_TYPE_BF16: return &layout_f16;
    default: return &layout_bytes;
    }
}

static const char *kind_name(int kind) {
    static const char *const names[] = {"scales", "signs", "ternary", "values"};
    return names[kind];
}

/* The checks shared by both directions; *row_blocks gets the blocks per row, SIZE_MAX when
 * row_bytes is 0 (then no block has a previous row). */
static int check_shape(const layout *lay, uint32_t type, size_t row_bytes, size_t n, size_t *row_blocks, char *err,
                       size_t errlen) {
    *row_blocks = SIZE_MAX;
    if (n > BN_PACK_MAX_CHUNK)
        return bn_fail(err, errlen, "chunk of %zu bytes is over the %u limit", n, BN_PACK_MAX_CHUNK);
    if (n % lay->block_bytes)
        return bn_fail(err, errlen, "chunk of %zu bytes is not whole %zu-byte blocks of type %u", n, lay->block_bytes,
                       (unsigned)type);
    if (row_bytes % lay->block_bytes)
        return bn_fail(err, errlen, "row of %zu bytes is not whole %zu-byte blocks of type %u", row_bytes,
                       lay->block_bytes, (unsigned)type);
    if (row_bytes) *row_blocks = row_bytes / lay->block_bytes;
    return 0;
}

size_t bn_pack_bound(size_t n) {
    return n > SIZE_MAX - MAX_FIELDS * HEADER_MAX ? SIZE_MAX : n + MAX_FIELDS * HEADER_MAX;
}

/* ---- encoder ---- */

/* Copies field f of every block into out, one field after the other. Called with a constant w
 * so that each copy compiles to a few moves. */
static inline void gather_fields(const uint8_t *s, size_t block_bytes, size_t blocks, size_t w, uint8_t *out) {
    for (size_t b = 0; b < blocks; b++) memcpy(out + b * w, s + b * block_bytes, w);
}

static void gather(const uint8_t *src, size_t blocks, size_t block_bytes, const field *f, uint8_t *out) {
    const uint8_t *s = src + f->offset;
    switch (f->width) {
    case 1: gather_fields(s, block_bytes, blocks, 1, out); break;
    case 4: gather_fields(s, block_bytes, blocks, 4, out); break;
    case 16: gather_fields(s, block_bytes, blocks, 16, out); break;
    case 32: gather_fields(s, block_bytes, blocks, 32, out); break;
    case 48: gather_fields(s, block_bytes, blocks, 48, out); break;
    case 64: gather_fields(s, block_bytes, blocks, 64, out); break;
    default: gather_fields(s, block_bytes, blocks, f->width, out); break;
    }
}

/* Writes the transform of stream s[0..len) into t; row_len is a row in the stream's bytes. */
static void apply_transform(int transform, const uint8_t *s, size_t len, size_t row_len, uint8_t *t) {
    if (transform == TRANSFORM_DELTA) {
        uint8_t prev = 0;
        for (size_t i = 0; i < len; prev = s[i++]) t[i] = (uint8_t)(s[i] - prev);
    } else {
        const size_t first_row = len < row_len ? len : row_len;
        memcpy(t, s, first_row);
        for (size_t i = first_row; i < len; i++) t[i] = s[i] ^ s[i - row_len];
    }
}

static size_t put_varint(uint8_t *p, uint32_t v) {
    size_t n = 0;
    for (; v >= 0x80; v >>= 7) p[n++] = (uint8_t)(v | 0x80);
    p[n++] = (uint8_t)v;
    return n;
}

/* The cheapest coding of one stream that the level allows. */
typedef struct choice {
    int method;
    const uint8_t *payload;
    size_t len, table_len;
} choice;

/* work holds 3 * len bytes: the transformed stream and two candidate encodings. */
static choice choose_coding(const uint8_t *raw, size_t len, const field *f, size_t row_blocks, int level,
                            uint8_t *work) {
    choice best = {METHOD_STORED, raw, len, 0};
    if (level < 1 || len == 0) return best;
    uint8_t *transformed = work, *cand_plain = work + len, *cand_transformed = work + 2 * len;
    size_t table;
    size_t got = bn_rans_encode(raw, len, cand_plain, best.len - 1, &table);
    if (got) best = (choice){METHOD_RANS, cand_plain, got, table};
    const size_t row_len = row_blocks < len / f->width ? row_blocks * f->width : 0;
    const int transform_differs = f->transform == TRANSFORM_DELTA || (f->transform == TRANSFORM_ROW_XOR && row_len);
    if (level < 2 || !transform_differs) return best;
    apply_transform(f->transform, raw, len, row_len, transformed);
    got = bn_rans_encode(transformed, len, cand_transformed, best.len - 1, &table);
    if (got) best = (choice){METHOD_RANS_TRANSFORMED, cand_transformed, got, table};
    return best;
}

/* Appends the stream's header and payload at dst[*pos..cap); returns the header's size, 0 when
 * the stream does not fit. */
static size_t put_stream(const choice *c, uint8_t *dst, size_t cap, size_t *pos) {
    uint8_t header[HEADER_MAX];
    header[0] = (uint8_t)c->method;
    const size_t header_len = 1 + put_varint(header + 1, (uint32_t)c->len);
    if (cap - *pos < header_len || cap - *pos - header_len < c->len) return 0;
    memcpy(dst + *pos, header, header_len);
    memcpy(dst + *pos + header_len, c->payload, c->len);
    *pos += header_len + c->len;
    return header_len;
}

int bn_pack_encode(uint32_t type, size_t row_bytes, const uint8_t *src, size_t n, int level, uint8_t *dst,
                   size_t cap, size_t *out_len, bn_pack_stats *stats, char *err, size_t errlen) {
    const layout *lay = layout_of(type);
    size_t row_blocks;
    if (check_shape(lay, type, row_bytes, n, &row_blocks, err, errlen)) return -1;
    if (level < 0) return bn_fail(err, errlen, "compression level %d is negative", level);
    const size_t blocks = n / lay->block_bytes;
    size_t widest = 0;
    for (int i = 0; i < lay->n_fields; i++)
        if (lay->fields[i].width > widest) widest = lay->fields[i].width;
    const size_t stream_max = blocks * widest;
    uint8_t *raw = malloc(4 * stream_max + 1);
    if (!raw) return bn_fail(err, errlen, "out of memory for a %zu-byte chunk", n);

    bn_pack_stats local = {{0}, {0}};
    size_t pos = 0;
    for (int i = 0; i < lay->n_fields; i++) {
        const field *f = &lay->fields[i];
        const size_t len = blocks * f->width;
        gather(src, blocks, lay->block_bytes, f, raw);
        const choice c = choose_coding(raw, len, f, row_blocks, level, raw + stream_max);
        const size_t header_len = put_stream(&c, dst, cap, &pos);
        if (!header_len) {
            free(raw);
            return bn_fail(err, errlen, "output buffer of %zu bytes is too small for the chunk", cap);
        }
        local.in[f->kind] += len;
        local.out[f->kind] += c.len - c.table_len;
        local.out[BN_PACK_OVERHEAD] += header_len + c.table_len;
    }
    free(raw);
    if (stats)
        for (int k = 0; k < BN_PACK_STREAM_KINDS; k++) {
            stats->in[k] += local.in[k];
            stats->out[k] += local.out[k];
        }
    *out_len = pos;
    return 0;
}

/* ---- decoder ---- */

typedef struct stream_reader {
    int method;
    const uint8_t *stored; /* method 0: the stream's next bytes */
    uint8_t prev;          /* TRANSFORM_DELTA: the last byte decoded */
    bn_rans_decoder rans;  /* methods 1 and 2 */
} stream_reader;

static int get_varint(const uint8_t *src, size_t len, size_t *pos, uint32_t *out) {
    uint64_t v = 0;
    for (int i = 0; i < 5; i++) {
        if (*pos >= len) return -1;
        const uint8_t b = src[(*pos)++];
        v |= (uint64_t)(b & 0x7f) << (7 * i);
        if (!(b & 0x80)) {
            if (v > UINT32_MAX) return -1;
            *out = (uint32_t)v;
            return 0;
        }
    }
    return -1;
}

/* Reads stream i's header at src[*pos..len) and sets up its reader; *pos moves past it. */
static int open_stream(const field *f, int i, size_t len_decoded, const uint8_t *src, size_t len, size_t *pos,
                       stream_reader *r, char *err, size_t errlen) {
    const char *kind = kind_name(f->kind);
    if (*pos >= len) return bn_fail(err, errlen, "chunk ends before stream %d (%s)", i, kind);
    r->method = src[(*pos)++];
    uint32_t payload;
    if (get_varint(src, len, pos, &payload))
        return bn_fail(err, errlen, "stream %d (%s): bad or truncated length", i, kind);
    if (payload > len - *pos)
        return bn_fail(err, errlen, "stream %d (%s): %u bytes, but the chunk has %zu left", i, kind, (unsigned)payload,
                       len - *pos);
    const uint8_t *body = src + *pos;
    *pos += payload;
    r->prev = 0;
    if (r->method == METHOD_STORED) {
        if (payload != len_decoded)
            return bn_fail(err, errlen, "stream %d (%s): stored %u bytes, expected %zu", i, kind, (unsigned)payload,
                           len_decoded);
        r->stored = body;
        return 0;
    }
    if (r->method == METHOD_RANS_TRANSFORMED && f->transform == TRANSFORM_NONE)
        return bn_fail(err, errlen, "stream %d (%s): method 2 but the stream has no transform", i, kind);
    if (r->method != METHOD_RANS && r->method != METHOD_RANS_TRANSFORMED)
        return bn_fail(err, errlen, "stream %d (%s): unknown method %d", i, kind, r->method);
    char why[160];
    if (bn_rans_decoder_init(&r->rans, body, payload, why, sizeof why))
        return bn_fail(err, errlen, "stream %d (%s): %s", i, kind, why);
    return 0;
}

/* The next m bytes of stream i (still transformed for method 2): in place when stored, else
 * decoded into buf. */
static const uint8_t *next_bytes(stream_reader *r, int i, const field *f, uint8_t *buf, size_t m, char *err,
                                 size_t errlen) {
    if (r->method == METHOD_STORED) {
        const uint8_t *p = r->stored;
        r->stored += m;
        return p;
    }
    char why[160];
    if (bn_rans_decode(&r->rans, buf, m, why, sizeof why)) {
        bn_fail(err, errlen, "stream %d (%s): %s", i, kind_name(f->kind), why);
        return NULL;
    }
    return buf;
}

/* Copies count fields of width w from s into the blocks at d (block_bytes apart). Called with a
 * constant w so that each copy compiles to a few moves. */
static inline void copy_fields(uint8_t *d, size_t block_bytes, const uint8_t *s, size_t count, size_t w) {
    for (size_t b = 0; b < count; b++) memcpy(d + b * block_bytes, s + b * w, w);
}

static void scatter_copy(uint8_t *d, size_t block_bytes, const uint8_t *s, size_t count, size_t w) {
    switch (w) {
    case 1: copy_fields(d, block_bytes, s, count, 1); break;
    case 4: copy_fields(d, block_bytes, s, count, 4); break;
    case 16: copy_fields(d, block_bytes, s, count, 16); break;
    case 32: copy_fields(d, block_bytes, s, count, 32); break;
    case 48: copy_fields(d, block_bytes, s, count, 48); break;
    case 64: copy_fields(d, block_bytes, s, count, 64); break;
    default: copy_fields(d, block_bytes, s, count, w); break;
    }
}

/* Undoes TRANSFORM_ROW_XOR: d is the field in block `first` of the chunk; blocks before
 * row_blocks have no previous row. */
static inline void unxor_fields(uint8_t *d, size_t block_bytes, const uint8_t *s, size_t first, size_t count,
                                size_t w, size_t row_blocks) {
    const size_t plain = first >= row_blocks ? 0 : row_blocks - first < count ? row_blocks - first : count;
    copy_fields(d, block_bytes, s, plain, w);
    if (plain == count) return;
    const size_t row_bytes = row_blocks * block_bytes; /* no overflow: a row lies inside the chunk */
    for (size_t b = plain; b < count; b++)
        for (size_t j = 0; j < w; j++) d[b * block_bytes + j] = s[b * w + j] ^ d[b * block_bytes + j - row_bytes];
}

static void scatter_unxor(uint8_t *d, size_t block_bytes, const uint8_t *s, size_t first, size_t count, size_t w,
                          size_t row_blocks) {
    if (w == 16)
        unxor_fields(d, block_bytes, s, first, count, 16, row_blocks);
    else
        unxor_fields(d, block_bytes, s, first, count, w, row_blocks);
}

static void scatter_undelta(uint8_t *d, size_t block_bytes, const uint8_t *s, size_t count, uint8_t *prev) {
    uint8_t v = *prev;
    for (size_t b = 0; b < count; b++) {
        v = (uint8_t)(v + s[b]);
        d[b * block_bytes] = v;
    }
    *prev = v;
}

/* Fills blocks [first, first + count) of dst from every stream. */
static int decode_group(const layout *lay, stream_reader *readers, uint8_t *dst, size_t first, size_t count,
                        size_t row_blocks, uint8_t *buf, char *err, size_t errlen) {
    const size_t bb = lay->block_bytes;
    for (int i = 0; i < lay->n_fields; i++) {
        const field *f = &lay->fields[i];
        stream_reader *r = &readers[i];
        const uint8_t *s = next_bytes(r, i, f, buf, count * f->width, err, errlen);
        if (!s) return -1;
        uint8_t *d = dst + first * bb + f->offset;
        if (r->method != METHOD_RANS_TRANSFORMED)
            scatter_copy(d, bb, s, count, f->width);
        else if (f->transform == TRANSFORM_DELTA)
            scatter_undelta(d, bb, s, count, &r->prev);
        else
            scatter_unxor(d, bb, s, first, count, f->width, row_blocks);
    }
    return 0;
}

/* Decodes every stream into the blocks of dst[0..n). */
static int decode_streams(const layout *lay, stream_reader *readers, uint8_t *dst, size_t n, size_t row_blocks,
                          char *err, size_t errlen) {
    if (lay->n_fields == 1) {
        /* The one stream is the chunk itself. */
        if (readers[0].method == METHOD_STORED) {
            if (n) memcpy(dst, readers[0].stored, n);
            return 0;
        }
        return next_bytes(&readers[0], 0, &lay->fields[0], dst, n, err, errlen) ? 0 : -1;
    }
    uint8_t buf[GROUP_BYTES];
    /* Whole rounds of rANS states per group keep the decoders on their fast path. */
    const size_t blocks = n / lay->block_bytes;
    const size_t group = GROUP_BYTES / lay->block_bytes / BN_RANS_STATES * BN_RANS_STATES;
    for (size_t first = 0; first < blocks; first += group) {
        const size_t count = blocks - first < group ? blocks - first : group;
        if (decode_group(lay, readers, dst, first, count, row_blocks, buf, err, errlen)) return -1;
    }
    return 0;
}

int bn_pack_decode(uint32_t type, size_t row_bytes, const uint8_t *src, size_t len, uint8_t *dst, size_t n, char *err,
                   size_t errlen) {
    const layout *lay = layout_of(type);
    size_t row_blocks;
    if (check_shape(lay, type, row_bytes, n, &row_blocks, err, errlen)) return -1;
    const size_t blocks = n / lay->block_bytes;
    stream_reader readers[MAX_FIELDS];
    size_t pos = 0;
    for (int i = 0; i < lay->n_fields; i++)
        if (open_stream(&lay->fields[i], i, blocks * lay->fields[i].width, src, len, &pos, &readers[i], err, errlen))
            return -1;
    if (pos != len) return bn_fail(err, errlen, "chunk has %zu bytes after its last stream", len - pos);

    if (decode_streams(lay, readers, dst, n, row_blocks, err, errlen)) return -1;
    for (int i = 0; i < lay->n_fields; i++) {
        char why[160];
        if (readers[i].method != METHOD_STORED && bn_rans_decoder_finish(&readers[i].rans, why, sizeof why))
            return bn_fail(err, errlen, "stream %d (%s): %s", i, kind_name(lay->fields[i].kind), why);
    }
    return 0;
}
