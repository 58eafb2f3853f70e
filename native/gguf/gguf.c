#include "gguf/gguf.h"

#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "quants/quants.h"

/* Lower bounds on encoded sizes. Counts read from the header are checked against them before
 * anything is allocated, so a forged count can never make the parser allocate more than a small
 * multiple of the file size. */
#define MIN_KV_BYTES 13     /* key length (8) + value type (4) + smallest value (1) */
#define MIN_TENSOR_BYTES 32 /* name length (8) + n_dims (4) + one dim (8) + type (4) + offset (8) */
#define MIN_STRING_BYTES 8  /* the length field of an empty string */
#define MAX_QUOTED_NAME 80  /* longer names are shortened in messages to keep them one line */

/* ---- reading little-endian fields without ever passing the end of the image ---- */

typedef struct cursor {
    const uint8_t *base;
    uint64_t size;
    uint64_t pos;
} cursor;

static uint64_t bytes_left(const cursor *c) { return c->size - c->pos; }

/* Returns a pointer to the next n bytes and advances, or NULL if fewer than n remain. */
static const uint8_t *take(cursor *c, uint64_t n) {
    if (n > bytes_left(c)) return NULL;
    const uint8_t *p = c->base + c->pos;
    c->pos += n;
    return p;
}

static int read_u32(cursor *c, uint32_t *v) {
    const uint8_t *p = take(c, 4);
    if (!p) return -1;
    *v = (uint32_t)bn_load_le(p, 4);
    return 0;
}

static int read_u64(cursor *c, uint64_t *v) {
    const uint8_t *p = take(c, 8);
    if (!p) return -1;
    *v = bn_load_le(p, 8);
    return 0;
}

enum str_status { STR_OK, STR_TRUNCATED, STR_TOO_LONG };

/* On STR_TOO_LONG, s->len holds the length the file claims (for the message). */
static enum str_status read_str(cursor *c, bn_str *s) {
    uint64_t len;
    if (read_u64(c, &len) != 0) return STR_TRUNCATED;
    s->len = len;
    const uint8_t *p = take(c, len);
    if (!p) return STR_TOO_LONG;
    s->ptr = (const char *)p;
    return STR_OK;
}

/* ---- names in messages ---- */

/* Keys and tensor names are looked up by callers and printed in messages, so they must be
 * non-empty and free of control bytes. Returns NULL when fine, else the problem. */
static const char *name_problem(bn_str s, char *buf, size_t n) {
    if (s.len == 0) return "is empty";
    for (uint64_t i = 0; i < s.len; i++) {
        unsigned char b = (unsigned char)s.ptr[i];
        if (b < 0x20 || b == 0x7f) {
            snprintf(buf, n, "contains control byte 0x%02x at position %" PRIu64, b, i);
            return buf;
        }
    }
    return NULL;
}

/* Writes "'name'" (shortened with "..." if long) into buf. */
static void quote_name(bn_str s, char *buf, size_t n) {
    if (s.len <= MAX_QUOTED_NAME)
        snprintf(buf, n, "'%.*s'", (int)s.len, s.ptr);
    else
        snprintf(buf, n, "'%.*s...'", MAX_QUOTED_NAME, s.ptr);
}

/* ---- the parse ---- */

typedef struct parser {
    cursor cur;
    bn_gguf *g;
    char *err;
    size_t errlen;
} parser;

static unsigned scalar_size(uint32_t type) {
    switch (type) {
    case BN_GGUF_U8: case BN_GGUF_I8: case BN_GGUF_BOOL: return 1;
    case BN_GGUF_U16: case BN_GGUF_I16: return 2;
    case BN_GGUF_U32: case BN_GGUF_I32: case BN_GGUF_F32: return 4;
    case BN_GGUF_U64: case BN_GGUF_I64: case BN_GGUF_F64: return 8;
    default: return 0; /* strings, arrays and unknown types have no fixed size */
    }
}

static void decode_scalar(uint32_t type, const uint8_t *p, bn_gguf_kv *kv) {
    unsigned n = scalar_size(type);
    uint64_t raw = bn_load_le(p, n);
    switch (type) {
    case BN_GGUF_I8: case BN_GGUF_I16: case BN_GGUF_I32: case BN_GGUF_I64:
        if (n < 8 && (raw >> (8 * n - 1)) & 1) raw |= UINT64_MAX << (8 * n); /* sign-extend */
        memcpy(&kv->v.i64, &raw, 8);
        break;
    case BN_GGUF_F32: {
        uint32_t bits = (uint32_t)raw;
        float f;
        memcpy(&f, &bits, 4);
        kv->v.f64 = f;
        break;
    }
    case BN_GGUF_F64: memcpy(&kv->v.f64, &raw, 8); break;
    case BN_GGUF_BOOL: kv->v.u64 = raw != 0; break;
    default: kv->v.u64 = raw; break;
    }
}

static int parse_string_elements(parser *P, bn_gguf_kv *kv, const char *where) {
    /* Each element takes at least its length field: this bounds the allocation below. */
    uint64_t min_bytes;
    if (!bn_mul_u64(kv->arr_count, MIN_STRING_BYTES, &min_bytes) || min_bytes > bytes_left(&P->cur))
        return bn_fail(P->err, P->errlen, "%s: array count %" PRIu64 " exceeds the file size",
                       where, kv->arr_count);
    kv->arr_data = P->cur.base + P->cur.pos;
    if (kv->arr_count == 0) return 0;
    kv->arr_strs = calloc((size_t)kv->arr_count, sizeof(bn_str));
    if (!kv->arr_strs)
        return bn_fail(P->err, P->errlen, "%s: out of memory for %" PRIu64 " strings", where, kv->arr_count);
    for (uint64_t j = 0; j < kv->arr_count; j++) {
        switch (read_str(&P->cur, &kv->arr_strs[j])) {
        case STR_OK: break;
        case STR_TRUNCATED:
            return bn_fail(P->err, P->errlen, "file is truncated in %s (element #%" PRIu64 ")", where, j);
        case STR_TOO_LONG:
            return bn_fail(P->err, P->errlen, "%s: element #%" PRIu64 " has length %" PRIu64
                           ", which exceeds the file size", where, j, kv->arr_strs[j].len);
        }
    }
    return 0;
}

static int parse_array(parser *P, bn_gguf_kv *kv, const char *where) {
    if (read_u32(&P->cur, &kv->arr_type) != 0 || read_u64(&P->cur, &kv->arr_count) != 0)
        return bn_fail(P->err, P->errlen, "file is truncated in %s", where);
    /* Refused rather than parsed recursively: no model uses them and nesting invites stack abuse. */
    if (kv->arr_type == BN_GGUF_ARRAY)
        return bn_fail(P->err, P->errlen, "%s: arrays of arrays are not supported", where);
    if (kv->arr_type == BN_GGUF_STRING) return parse_string_elements(P, kv, where);
    unsigned elem = scalar_size(kv->arr_type);
    if (elem == 0)
        return bn_fail(P->err, P->errlen, "%s: unknown array element type %" PRIu32, where, kv->arr_type);
    uint64_t bytes;
    const uint8_t *p = NULL;
    if (bn_mul_u64(kv->arr_count, elem, &bytes)) p = take(&P->cur, bytes);
    if (!p)
        return bn_fail(P->err, P->errlen, "%s: array count %" PRIu64 " exceeds the file size",
                       where, kv->arr_count);
    kv->arr_data = p;
    return 0;
}

static int parse_value(parser *P, bn_gguf_kv *kv, const char *where) {
    if (kv->type == BN_GGUF_ARRAY) return parse_array(P, kv, where);
    if (kv->type == BN_GGUF_STRING) {
        switch (read_str(&P->cur, &kv->v.str)) {
        case STR_OK: return 0;
        case STR_TRUNCATED: return bn_fail(P->err, P->errlen, "file is truncated in %s", where);
        case STR_TOO_LONG:
            return bn_fail(P->err, P->errlen, "%s: string length %" PRIu64 " exceeds the file size",
                           where, kv->v.str.len);
        }
    }
    unsigned n = scalar_size(kv->type);
    if (n == 0) return bn_fail(P->err, P->errlen, "%s: unknown value type %" PRIu32, where, kv->type);
    const uint8_t *p = take(&P->cur, n);
    if (!p) return bn_fail(P->err, P->errlen, "file is truncated in %s", where);
    decode_scalar(kv->type, p, kv);
    return 0;
}

static int parse_kv(parser *P, uint64_t i) {
    bn_gguf_kv *kv = &P->g->kv[i];
    char where[160], problem[96], quoted[MAX_QUOTED_NAME + 8];
    snprintf(where, sizeof where, "metadata key #%" PRIu64, i);
    switch (read_str(&P->cur, &kv->key)) {
    case STR_OK: break;
    case STR_TRUNCATED: return bn_fail(P->err, P->errlen, "file is truncated in %s", where);
    case STR_TOO_LONG:
        return bn_fail(P->err, P->errlen, "%s: key length %" PRIu64 " exceeds the file size", where, kv->key.len);
    }
    const char *bad = name_problem(kv->key, problem, sizeof problem);
    if (bad) return bn_fail(P->err, P->errlen, "%s: key %s", where, bad);
    quote_name(kv->key, quoted, sizeof quoted);
    snprintf(where, sizeof where, "metadata key #%" PRIu64 " %s", i, quoted);
    if (read_u32(&P->cur, &kv->type) != 0) return bn_fail(P->err, P->errlen, "file is truncated in %s", where);
    return parse_value(P, kv, where);
}

static int parse_header(parser *P) {
    bn_gguf *g = P->g;
    cursor *c = &P->cur;
    if (c->size == 0) return bn_fail(P->err, P->errlen, "file is empty");
    if (c->size < 4) return bn_fail(P->err, P->errlen, "not a GGUF file (only %" PRIu64 " bytes)", c->size);
    if (memcmp(c->base, "GGUF", 4) != 0) {
        char shown[20] = "";
        for (int i = 0; i < 4; i++) {
            unsigned char b = c->base[i];
            size_t at = strlen(shown);
            if (b >= 0x20 && b < 0x7f && b != '\'' && b != '\\')
                snprintf(shown + at, sizeof shown - at, "%c", b);
            else
                snprintf(shown + at, sizeof shown - at, "\\x%02x", b);
        }
        return bn_fail(P->err, P->errlen, "not a GGUF file (magic '%s')", shown);
    }
    c->pos = 4;
    if (read_u32(c, &g->version) != 0) return bn_fail(P->err, P->errlen, "file is truncated in the header");
    if (g->version == 1)
        return bn_fail(P->err, P->errlen,
                       "GGUF version 1 is not supported (32-bit counts); convert the file with a current llama.cpp");
    if (g->version == 0x02000000u || g->version == 0x03000000u)
        return bn_fail(P->err, P->errlen, "big-endian GGUF files are not supported (version field 0x%08" PRIx32 ")",
                       g->version);
    if (g->version != 2 && g->version != 3)
        return bn_fail(P->err, P->errlen, "unsupported GGUF version %" PRIu32 " (only 2 and 3)", g->version);
    if (read_u64(c, &g->n_tensors) != 0 || read_u64(c, &g->n_kv) != 0)
        return bn_fail(P->err, P->errlen, "file is truncated in the header");
    uint64_t tensor_bytes, kv_bytes;
    if (!bn_mul_u64(g->n_tensors, MIN_TENSOR_BYTES, &tensor_bytes) || tensor_bytes > bytes_left(c))
        return bn_fail(P->err, P->errlen, "tensor count %" PRIu64 " exceeds the file size (%" PRIu64 " bytes)",
                       g->n_tensors, c->size);
    if (!bn_mul_u64(g->n_kv, MIN_KV_BYTES, &kv_bytes) || kv_bytes > bytes_left(c) - tensor_bytes)
        return bn_fail(P->err, P->errlen, "metadata key count %" PRIu64 " exceeds the file size (%" PRIu64 " bytes)",
                       g->n_kv, c->size);
    return 0;
}

/* ---- duplicate detection: sort (name, index) pairs so that it stays O(n log n) ---- */

typedef struct named {
    bn_str name;
    uint64_t index;
} named;

static int compare_named(const void *pa, const void *pb) {
    const named *a = pa, *b = pb;
    if (a->name.len != b->name.len) return a->name.len < b->name.len ? -1 : 1;
    int c = memcmp(a->name.ptr, b->name.ptr, (size_t)a->name.len);
    if (c) return c;
    return a->index < b->index ? -1 : a->index > b->index;
}

/* Sorts items; returns 1 with the two indices (first < second) if two entries share a name. */
static int find_duplicate(named *items, uint64_t n, uint64_t *first, uint64_t *second) {
    qsort(items, (size_t)n, sizeof *items, compare_named);
    for (uint64_t i = 1; i < n; i++) {
        if (items[i].name.len == items[i - 1].name.len &&
            memcmp(items[i].name.ptr, items[i - 1].name.ptr, (size_t)items[i].name.len) == 0) {
            *first = items[i - 1].index;
            *second = items[i].index;
            return 1;
        }
    }
    return 0;
}

/* kind is "metadata key" or "tensor"; first_name points at entry 0's bn_str name and the next
 * entries' names follow stride bytes apart (kv and tensor records share this check). */
static int refuse_duplicates(parser *P, const char *kind, const uint8_t *first_name, size_t stride, uint64_t n) {
    if (n < 2) return 0;
    named *items = malloc((size_t)n * sizeof *items);
    if (!items) return bn_fail(P->err, P->errlen, "out of memory checking %" PRIu64 " %s names", n, kind);
    for (uint64_t i = 0; i < n; i++) {
        memcpy(&items[i].name, first_name + i * stride, sizeof(bn_str));
        items[i].index = i;
    }
    uint64_t first, second;
    int dup = find_duplicate(items, n, &first, &second);
    int rc = 0;
    if (dup) {
        char quoted[MAX_QUOTED_NAME + 8];
        bn_str name;
        memcpy(&name, first_name + second * stride, sizeof name);
        quote_name(name, quoted, sizeof quoted);
        rc = bn_fail(P->err, P->errlen, "%s #%" PRIu64 " %s duplicates %s #%" PRIu64, kind, second, quoted, kind,
                     first);
    }
    free(items);
    return rc;
}

static int parse_metadata(parser *P) {
    bn_gguf *g = P->g;
    if (g->n_kv == 0) return 0;
    g->kv = calloc((size_t)g->n_kv, sizeof *g->kv);
    if (!g->kv) return bn_fail(P->err, P->errlen, "out of memory for %" PRIu64 " metadata keys", g->n_kv);
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (parse_kv(P, i) != 0) return -1;
    return refuse_duplicates(P, "metadata key", (const uint8_t *)g->kv + offsetof(bn_gguf_kv, key),
                             sizeof(bn_gguf_kv), g->n_kv);
}

static int read_alignment(parser *P) {
    bn_gguf *g = P->g;
    g->alignment = BN_GGUF_DEFAULT_ALIGNMENT;
    const bn_gguf_kv *kv = bn_gguf_find(g, "general.alignment");
    if (!kv) return 0;
    if (kv->type != BN_GGUF_U32)
        return bn_fail(P->err, P->errlen, "metadata key 'general.alignment' has type %s, expected u32",
                       bn_gguf_vtype_name(kv->type));
    uint64_t a = kv->v.u64;
    if (a == 0 || (a & (a - 1)) != 0)
        return bn_fail(P->err, P->errlen, "metadata key 'general.alignment': %" PRIu64 " is not a power of two", a);
    g->alignment = a;
    return 0;
}

/* Reads one tensor-info record: name, shape, type id and offset (checked later, in place_tensor). */
static int parse_tensor_info(parser *P, uint64_t i) {
    bn_gguf_tensor *t = &P->g->tensors[i];
    cursor *c = &P->cur;
    char problem[96], quoted[MAX_QUOTED_NAME + 8];
    switch (read_str(c, &t->name)) {
    case STR_OK: break;
    case STR_TRUNCATED:
        return bn_fail(P->err, P->errlen, "file is truncated in the tensor table (tensor #%" PRIu64 ")", i);
    case STR_TOO_LONG:
        return bn_fail(P->err, P->errlen, "tensor #%" PRIu64 ": name length %" PRIu64 " exceeds the file size", i,
                       t->name.len);
    }
    const char *bad = name_problem(t->name, problem, sizeof problem);
    if (bad) return bn_fail(P->err, P->errlen, "tensor #%" PRIu64 ": name %s", i, bad);
    quote_name(t->name, quoted, sizeof quoted);
    if (read_u32(c, &t->n_dims) != 0) goto truncated;
    if (t->n_dims < 1 || t->n_dims > BN_GGUF_MAX_DIMS)
        return bn_fail(P->err, P->errlen, "tensor %s: n_dims %" PRIu32 " is not in 1..%d", quoted, t->n_dims,
                       BN_GGUF_MAX_DIMS);
    for (uint32_t d = 0; d < BN_GGUF_MAX_DIMS; d++) t->ne[d] = 1;
    for (uint32_t d = 0; d < t->n_dims; d++) {
        if (read_u64(c, &t->ne[d]) != 0) goto truncated;
        /* ggml stores dims as int64: larger values are negative there, and 0 makes empty rows. */
        if (t->ne[d] == 0 || t->ne[d] > (uint64_t)INT64_MAX)
            return bn_fail(P->err, P->errlen, "tensor %s: dimension %" PRIu32 " is %" PRIu64 " (must be 1..2^63-1)",
                           quoted, d, t->ne[d]);
    }
    if (read_u32(c, &t->type) != 0 || read_u64(c, &t->offset) != 0) goto truncated;
    return 0;
truncated:
    return bn_fail(P->err, P->errlen, "file is truncated in the tensor table (tensor #%" PRIu64 " %s)", i, quoted);
}

static int parse_tensor_table(parser *P) {
    bn_gguf *g = P->g;
    if (g->n_tensors > 0) {
        g->tensors = calloc((size_t)g->n_tensors, sizeof *g->tensors);
        if (!g->tensors) return bn_fail(P->err, P->errlen, "out of memory for %" PRIu64 " tensors", g->n_tensors);
    }
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (parse_tensor_info(P, i) != 0) return -1;
    /* The data section starts at the header end rounded up to the alignment. A file without
     * tensors may end before that point (vocab-only files do), so it is not checked here. */
    uint64_t end = P->cur.pos, padded;
    if (!bn_add_u64(end, g->alignment - 1, &padded))
        return bn_fail(P->err, P->errlen, "data section start overflows");
    g->data_offset = padded - padded % g->alignment;
    return refuse_duplicates(P, "tensor", (const uint8_t *)g->tensors + offsetof(bn_gguf_tensor, name),
                             sizeof(bn_gguf_tensor), g->n_tensors);
}

/* Type, row length and size of a tensor; fills n_elements and n_bytes. */
static int size_tensor(parser *P, bn_gguf_tensor *t, const char *quoted) {
    const bn_type_traits *traits = bn_type_get(t->type);
    if (!traits)
        return bn_fail(P->err, P->errlen, "tensor %s: %s", quoted, bn_type_unknown_reason(t->type));
    if (traits->block_size == 0 || t->ne[0] % traits->block_size != 0)
        return bn_fail(P->err, P->errlen, "tensor %s: row length %" PRIu64 " is not a multiple of the %s block size %" PRIu32,
                       quoted, t->ne[0], traits->name, traits->block_size);
    uint64_t rows = 1;
    for (int d = 1; d < BN_GGUF_MAX_DIMS; d++) {
        if (!bn_mul_u64(rows, t->ne[d], &rows)) goto overflow;
    }
    if (!bn_mul_u64(rows, t->ne[0], &t->n_elements) || t->n_elements > (uint64_t)INT64_MAX) goto overflow;
    /* bn_row_bytes reports overflow as 0, which would pass as an empty tensor: multiply here. */
    uint64_t row_bytes;
    if (!bn_mul_u64(t->ne[0] / traits->block_size, traits->block_bytes, &row_bytes)) goto overflow;
    if (!bn_mul_u64(rows, row_bytes, &t->n_bytes)) goto overflow;
    return 0;
overflow:
    return bn_fail(P->err, P->errlen, "tensor %s: size of shape [%" PRIu64 ", %" PRIu64 ", %" PRIu64 ", %" PRIu64
                   "] overflows", quoted, t->ne[0], t->ne[1], t->ne[2], t->ne[3]);
}

/* Checks that the tensor's bytes lie inside the image, then points data at them. */
static int place_tensor(parser *P, bn_gguf_tensor *t) {
    bn_gguf *g = P->g;
    char quoted[MAX_QUOTED_NAME + 8];
    quote_name(t->name, quoted, sizeof quoted);
    if (size_tensor(P, t, quoted) != 0) return -1;
    if (t->offset % g->alignment != 0)
        return bn_fail(P->err, P->errlen, "tensor %s: offset %" PRIu64 " is not a multiple of the alignment %" PRIu64,
                       quoted, t->offset, g->alignment);
    uint64_t start, end;
    if (!bn_add_u64(g->data_offset, t->offset, &start) || !bn_add_u64(start, t->n_bytes, &end))
        return bn_fail(P->err, P->errlen, "tensor %s: offset %" PRIu64 " + %" PRIu64 " bytes is beyond the end of the file (%" PRIu64 " bytes)",
                       quoted, t->offset, t->n_bytes, g->file_size);
    if (end > g->file_size)
        return bn_fail(P->err, P->errlen, "tensor %s: data ends at byte %" PRIu64 ", file has %" PRIu64, quoted, end,
                       g->file_size);
    t->data = end <= g->image_size ? g->image + start : NULL;
    return 0;
}

int bn_gguf_parse(const uint8_t *image, uint64_t size, bn_gguf *out, char *err, size_t errlen) {
    return bn_gguf_parse_head(image, size, size, out, err, errlen);
}

int bn_gguf_parse_head(const uint8_t *image, uint64_t size, uint64_t file_size, bn_gguf *out, char *err,
                       size_t errlen) {
    memset(out, 0, sizeof *out);
    out->image = image;
    out->image_size = size;
    out->file_size = file_size;
    parser P = {{image, size, 0}, out, err, errlen};
    int rc = parse_header(&P);
    if (rc == 0) rc = parse_metadata(&P);
    if (rc == 0) rc = read_alignment(&P);
    if (rc == 0) rc = parse_tensor_table(&P);
    for (uint64_t i = 0; rc == 0 && i < out->n_tensors; i++) rc = place_tensor(&P, &out->tensors[i]);
    if (rc != 0) bn_gguf_free(out);
    return rc;
}

int bn_gguf_open(const char *path, bn_gguf **out, char *err, size_t errlen) {
    *out = NULL;
    bn_mapped_file *file;
    if (bn_mapped_file_open(path, &file, err, errlen) != 0) return -1;
    bn_gguf *g = malloc(sizeof *g);
    if (!g) {
        bn_mapped_file_close(file);
        return bn_fail(err, errlen, "out of memory");
    }
    if (bn_gguf_parse(file->data, file->size, g, err, errlen) != 0) {
        free(g);
        bn_mapped_file_close(file);
        return -1;
    }
    g->file = file;
    *out = g;
    return 0;
}

void bn_gguf_free(bn_gguf *g) {
    if (!g) return;
    if (g->kv)
        for (uint64_t i = 0; i < g->n_kv; i++) free(g->kv[i].arr_strs);
    free(g->kv);
    free(g->tensors);
    bn_mapped_file_close(g->file);
    memset(g, 0, sizeof *g);
}

void bn_gguf_close(bn_gguf *g) {
    bn_gguf_free(g);
    free(g);
}

/* ---- lookups ---- */

int bn_str_eq(bn_str s, const char *cstr) {
    size_t n = strlen(cstr);
    return s.ptr && s.len == n && memcmp(s.ptr, cstr, n) == 0;
}

const bn_gguf_kv *bn_gguf_find(const bn_gguf *g, const char *key) {
    for (uint64_t i = 0; g->kv && i < g->n_kv; i++)
        if (bn_str_eq(g->kv[i].key, key)) return &g->kv[i];
    return NULL;
}

const bn_gguf_tensor *bn_gguf_find_tensor(const bn_gguf *g, const char *name) {
    for (uint64_t i = 0; g->tensors && i < g->n_tensors; i++)
        if (bn_str_eq(g->tensors[i].name, name)) return &g->tensors[i];
    return NULL;
}

/* ---- typed getters ---- */

/* Integer values of any width as sign + magnitude, so that range checks need no casts. */
static int integer_value(const bn_gguf_kv *kv, int *negative, uint64_t *magnitude) {
    switch (kv->type) {
    case BN_GGUF_U8: case BN_GGUF_U16: case BN_GGUF_U32: case BN_GGUF_U64:
        *negative = 0;
        *magnitude = kv->v.u64;
        return 0;
    case BN_GGUF_I8: case BN_GGUF_I16: case BN_GGUF_I32: case BN_GGUF_I64:
        *negative = kv->v.i64 < 0;
        *magnitude = *negative ? (uint64_t)(-(kv->v.i64 + 1)) + 1 : (uint64_t)kv->v.i64;
        return 0;
    default:
        return -1;
    }
}

static int wrong_type(const bn_gguf_kv *kv, const char *key, const char *expected, char *err, size_t errlen) {
    return bn_fail(err, errlen, "metadata key '%s' has type %s, expected %s", key, bn_gguf_vtype_name(kv->type),
                   expected);
}

int bn_gguf_get_u32(const bn_gguf *g, const char *key, uint32_t def, uint32_t *out, char *err, size_t errlen) {
    const bn_gguf_kv *kv = bn_gguf_find(g, key);
    *out = def;
    if (!kv) return 0;
    int negative;
    uint64_t magnitude;
    if (integer_value(kv, &negative, &magnitude) != 0) return wrong_type(kv, key, "an integer", err, errlen);
    if (negative || magnitude > UINT32_MAX)
        return bn_fail(err, errlen, "metadata key '%s': value %s%" PRIu64 " does not fit in u32", key,
                       negative ? "-" : "", magnitude);
    *out = (uint32_t)magnitude;
    return 0;
}

int bn_gguf_get_f32(const bn_gguf *g, const char *key, float def, float *out, char *err, size_t errlen) {
    const bn_gguf_kv *kv = bn_gguf_find(g, key);
    *out = def;
    if (!kv) return 0;
    if (kv->type == BN_GGUF_F32 || kv->type == BN_GGUF_F64) {
        /* Converting an out-of-range double to float is undefined behaviour in C. */
        if (isfinite(kv->v.f64) && fabs(kv->v.f64) > FLT_MAX)
            return bn_fail(err, errlen, "metadata key '%s': value %g does not fit in f32", key, kv->v.f64);
        *out = (float)kv->v.f64;
        return 0;
    }
    int negative;
    uint64_t magnitude;
    if (integer_value(kv, &negative, &magnitude) != 0) return wrong_type(kv, key, "a number", err, errlen);
    *out = negative ? -(float)magnitude : (float)magnitude;
    return 0;
}

int bn_gguf_get_bool(const bn_gguf *g, const char *key, int def, int *out, char *err, size_t errlen) {
    const bn_gguf_kv *kv = bn_gguf_find(g, key);
    *out = def;
    if (!kv) return 0;
    if (kv->type != BN_GGUF_BOOL) return wrong_type(kv, key, "bool", err, errlen);
    *out = kv->v.u64 != 0;
    return 0;
}

int bn_gguf_get_str(const bn_gguf *g, const char *key, bn_str *out, char *err, size_t errlen) {
    const bn_gguf_kv *kv = bn_gguf_find(g, key);
    out->ptr = NULL;
    out->len = 0;
    if (!kv) return 0;
    if (kv->type != BN_GGUF_STRING) return wrong_type(kv, key, "string", err, errlen);
    *out = kv->v.str;
    return 0;
}

const char *bn_gguf_vtype_name(uint32_t type) {
    static const char *const names[] = {"u8",  "i8",     "u16",   "i16", "u32", "i32", "f32",
                                        "bool", "string", "array", "u64", "i64", "f64"};
    return type < sizeof names / sizeof names[0] ? names[type] : "unknown";
}
