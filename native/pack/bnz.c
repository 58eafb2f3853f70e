/* .bnz packs: writing (plan the chunks, code them on a thread pool a window at a time, write to a
 * temporary file), opening (every field validated against the file), decoding (a tensor, every
 * chunk, the whole GGUF). See bnz.h for the layout. */
#define _POSIX_C_SOURCE 200809L
#include "pack/bnz.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "core/mapped_file.h"
#include "core/replace_file.h"
#include "core/threadpool.h"
#include "quants/quants.h"

#define MAGIC "BONSAIPK"
#define VERSION 1u
#define HEADER_BYTES 64u
#define ENTRY_BYTES 40u
#define WINDOW_CHUNKS 64 /* chunks coded or decoded per round: bounds the memory a job holds */

struct bn_pack {
    bn_mapped_file *file;
    bn_gguf gguf;
    bn_pack_chunk *chunks;
    uint32_t n_chunks;
    uint32_t identity;
    uint64_t head_bytes; /* the GGUF's head, stored verbatim after the header */
};


static void put_entry(uint8_t *p, const bn_pack_chunk *c) {
    bn_store_le(p, c->out_offset, 8);
    bn_store_le(p + 8, c->in_offset, 8);
    bn_store_le(p + 16, c->out_size, 4);
    bn_store_le(p + 20, c->in_size, 4);
    bn_store_le(p + 24, c->tensor, 4);
    bn_store_le(p + 28, c->out_crc, 4);
    bn_store_le(p + 32, c->in_crc, 4);
    bn_store_le(p + 36, c->coded, 4);
}
static void get_entry(const uint8_t *p, bn_pack_chunk *c) {
    c->out_offset = bn_load_le(p, 8);
    c->in_offset = bn_load_le(p + 8, 8);
    c->out_size = (uint32_t)bn_load_le(p + 16, 4);
    c->in_size = (uint32_t)bn_load_le(p + 20, 4);
    c->tensor = (uint32_t)bn_load_le(p + 24, 4);
    c->out_crc = (uint32_t)bn_load_le(p + 28, 4);
    c->in_crc = (uint32_t)bn_load_le(p + 32, 4);
    c->coded = (uint32_t)bn_load_le(p + 36, 4);
}

int bn_pack_is_pack(const char *path) {
    char magic[8];
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    size_t n = fread(magic, 1, sizeof magic, f);
    fclose(f);
    return n == sizeof magic && memcmp(magic, MAGIC, sizeof magic) == 0;
}

/* ---- names for messages ---- */

static void tensor_label(const bn_gguf *g, uint32_t tensor, char *buf, size_t len) {
    if (tensor == BN_PACK_NO_TENSOR || tensor >= g->n_tensors) {
        snprintf(buf, len, "padding between tensors");
        return;
    }
    const bn_str n = g->tensors[tensor].name;
    snprintf(buf, len, "tensor '%.*s'", (int)(n.len > 96 ? 96 : n.len), n.ptr);
}

static int chunk_fail(const bn_gguf *g, const bn_pack_chunk *chunks, uint32_t n_chunks, uint32_t i, const char *what,
                      char *err, size_t errlen) {
    char label[128];
    tensor_label(g, chunks[i].tensor, label, sizeof label);
    return bn_fail(err, errlen, "chunk %u of %u (%s, GGUF bytes %llu..%llu) %s", i, n_chunks, label,
                   (unsigned long long)chunks[i].out_offset,
                   (unsigned long long)(chunks[i].out_offset + chunks[i].out_size), what);
}

/* The codec's view of a chunk: its tensor's type and row length (none: one byte stream). */
static void chunk_shape(const bn_gguf *g, const bn_pack_chunk *c, uint32_t *type, size_t *row_bytes) {
    if (c->tensor == BN_PACK_NO_TENSOR) {
        *type = BN_PACK_NO_TENSOR;
        *row_bytes = c->out_size;
        return;
    }
    const bn_gguf_tensor *t = &g->tensors[c->tensor];
    *type = t->type;
    *row_bytes = (size_t)bn_row_bytes(t->type, t->ne[0]);
}

/* ---- planning ---- */

typedef struct plan {
    bn_pack_chunk *chunks;
    uint32_t n, cap;
} plan;

static int plan_add(plan *pl, uint64_t offset, uint64_t size, uint32_t tensor, char *err, size_t errlen) {
    if (pl->n == pl->cap) {
        uint32_t cap = pl->cap ? pl->cap * 2 : 256;
        bn_pack_chunk *c = realloc(pl->chunks, (size_t)cap * sizeof *c);
        if (!c || cap < pl->cap) return bn_fail(err, errlen, "out of memory planning the chunks");
        pl->chunks = c;
        pl->cap = cap;
    }
    pl->chunks[pl->n++] = (bn_pack_chunk){.out_offset = offset, .out_size = (uint32_t)size, .tensor = tensor};
    return 0;
}

/* Splits [offset, offset + size) into chunks of `unit`-byte multiples of at most BN_PACK_CHUNK. */
static int plan_span(plan *pl, uint64_t offset, uint64_t size, uint64_t unit, uint32_t tensor, char *err,
                     size_t errlen) {
    const uint64_t step = unit <= BN_PACK_CHUNK ? BN_PACK_CHUNK / unit * unit : unit;
    for (uint64_t done = 0; done < size;) {
        uint64_t n = size - done < step ? size - done : step;
        if (plan_add(pl, offset + done, n, tensor, err, errlen)) return -1;
        done += n;
    }
    return 0;
}

static int by_offset(const void *a, const void *b) {
    const bn_gguf_tensor *x = *(const bn_gguf_tensor *const *)a, *y = *(const bn_gguf_tensor *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* Chunks for the data section of g: each tensor in whole rows (whole blocks when a row is larger
 * than a chunk), what lies between tensors as padding. */
static int plan_chunks(const bn_gguf *g, uint64_t head_bytes, plan *pl, char *err, size_t errlen) {
    const bn_gguf_tensor **order = malloc((g->n_tensors ? g->n_tensors : 1) * sizeof *order);
    if (!order) return bn_fail(err, errlen, "out of memory");
    for (uint64_t i = 0; i < g->n_tensors; i++) order[i] = &g->tensors[i];
    qsort(order, g->n_tensors, sizeof *order, by_offset);
    uint64_t pos = head_bytes;
    int rc = 0;
    for (uint64_t i = 0; rc == 0 && i < g->n_tensors; i++) {
        const bn_gguf_tensor *t = order[i];
        const uint64_t start = g->data_offset + t->offset;
        if (start < pos) {
            rc = bn_fail(err, errlen, "tensor '%.*s' overlaps the one before it: cannot be packed", (int)t->name.len,
                         t->name.ptr);
            break;
        }
        const bn_type_traits *tr = bn_type_get(t->type);
        const uint64_t row = bn_row_bytes(t->type, t->ne[0]);
        const uint64_t unit = row <= BN_PACK_CHUNK ? row : tr->block_bytes;
        rc = plan_span(pl, pos, start - pos, 1, BN_PACK_NO_TENSOR, err, errlen);
        if (rc == 0) rc = plan_span(pl, start, t->n_bytes, unit, (uint32_t)(t - g->tensors), err, errlen);
        pos = start + t->n_bytes;
    }
    if (rc == 0) rc = plan_span(pl, pos, g->file_size - pos, 1, BN_PACK_NO_TENSOR, err, errlen);
    free(order);
    return rc;
}

/* ---- jobs over chunks on a thread pool ---- */

/* The lowest-numbered chunk that failed, and why: the one a message should name. */
typedef struct first_failure {
    atomic_uint index; /* + 1; 0: none */
    char err[512];
    atomic_flag writing;
} first_failure;

static void note_failure(first_failure *f, uint32_t i, const char *msg) {
    while (atomic_flag_test_and_set(&f->writing)) {
    }
    unsigned now = atomic_load(&f->index);
    if (now == 0 || now > i + 1) {
        snprintf(f->err, sizeof f->err, "%s", msg);
        atomic_store(&f->index, i + 1);
    }
    atomic_flag_clear(&f->writing);
}

typedef struct chunk_job {
    const bn_gguf *g;
    const uint8_t *gguf_image; /* writing: the GGUF being packed */
    const bn_pack *pack;       /* reading */
    bn_pack_chunk *chunks;
    uint32_t first, count;     /* the window */
    uint8_t **bufs;            /* per chunk of the window: coded bytes (writing), decoded ones (keep) */
    int keep;                  /* reading: keep the decoded chunks for `after` (else decode and drop) */
    int level;
    bn_pack_stats stats;       /* writing: summed under the lock below */
    atomic_flag stats_lock;
    atomic_uint next;
    first_failure fail;
} chunk_job;

static void add_stats(chunk_job *j, const bn_pack_stats *s) {
    while (atomic_flag_test_and_set(&j->stats_lock)) {
    }
    for (int k = 0; k < BN_PACK_STREAM_KINDS; k++) {
        j->stats.in[k] += s->in[k];
        j->stats.out[k] += s->out[k];
    }
    atomic_flag_clear(&j->stats_lock);
}

/* Codes chunk i into a new buffer (NULL: stored, coding did not help); fills its sizes and CRCs. */
static int encode_chunk(chunk_job *j, uint32_t i, uint8_t **out, char *msg, size_t len) {
    bn_pack_chunk *c = &j->chunks[i];
    const uint8_t *src = j->gguf_image + c->out_offset;
    uint32_t type;
    size_t row_bytes, coded_len;
    bn_pack_stats s = {0};
    chunk_shape(j->g, c, &type, &row_bytes);
    const size_t cap = bn_pack_bound(c->out_size);
    uint8_t *dst = malloc(cap);
    if (!dst) return bn_fail(msg, len, "out of memory");
    if (bn_pack_encode(type, row_bytes, src, c->out_size, j->level, dst, cap, &coded_len, &s, msg, len)) {
        free(dst);
        return -1;
    }
    c->out_crc = bn_crc32(0, src, c->out_size);
    c->coded = coded_len < c->out_size;
    if (!c->coded) {
        free(dst);
        dst = NULL;
        coded_len = c->out_size;
        memset(&s, 0, sizeof s);
        s.in[BN_PACK_VALUES] = s.out[BN_PACK_VALUES] = c->out_size;
    }
    c->in_size = (uint32_t)coded_len;
    c->in_crc = dst ? bn_crc32(0, dst, coded_len) : c->out_crc;
    add_stats(j, &s);
    *out = dst;
    return 0;
}

static void encode_worker(void *arg, int ith, int nth) {
    chunk_job *j = arg;
    char msg[400];
    for (unsigned k; (k = atomic_fetch_add(&j->next, 1)) < j->count;)
        if (encode_chunk(j, j->first + k, &j->bufs[k], msg, sizeof msg)) note_failure(&j->fail, j->first + k, msg);
}

/* Decodes chunk i of p into dst (its out_size bytes), checking the CRC of its coded bytes, and of
 * the decoded ones when check_decoded. */
static int decode_chunk(const bn_pack *p, uint32_t i, uint8_t *dst, int check_decoded, char *err, size_t errlen) {
    const bn_pack_chunk *c = &p->chunks[i];
    const uint8_t *src = p->file->data + c->in_offset;
    if (bn_crc32(0, src, c->in_size) != c->in_crc)
        return chunk_fail(&p->gguf, p->chunks, p->n_chunks, i, "is damaged: its CRC-32 does not match", err, errlen);
    if (!c->coded) {
        memcpy(dst, src, c->out_size);
        return 0;
    }
    uint32_t type;
    size_t row_bytes;
    char msg[256], what[300];
    chunk_shape(&p->gguf, c, &type, &row_bytes);
    if (bn_pack_decode(type, row_bytes, src, c->in_size, dst, c->out_size, msg, sizeof msg)) {
        snprintf(what, sizeof what, "does not decode: %s", msg);
        return chunk_fail(&p->gguf, p->chunks, p->n_chunks, i, what, err, errlen);
    }
    if (check_decoded && bn_crc32(0, dst, c->out_size) != c->out_crc)
        return chunk_fail(&p->gguf, p->chunks, p->n_chunks, i, "decodes to bytes whose CRC-32 does not match", err,
                          errlen);
    return 0;
}

/* Decodes the window's chunks into new buffers (keep), or into one scratch buffer (verifying). */
static void decode_worker(void *arg, int ith, int nth) {
    chunk_job *j = arg;
    char msg[512];
    uint8_t *scratch = NULL;
    for (unsigned k; (k = atomic_fetch_add(&j->next, 1)) < j->count;) {
        const uint32_t i = j->first + k;
        uint8_t *dst = j->keep ? (j->bufs[k] = malloc(j->chunks[i].out_size))
                               : scratch ? scratch : (scratch = malloc(BN_PACK_MAX_CHUNK));
        if (!dst)
            note_failure(&j->fail, i, "out of memory");
        else if (decode_chunk(j->pack, i, dst, 1, msg, sizeof msg))
            note_failure(&j->fail, i, msg);
    }
    free(scratch);
}

/* Runs fn over the chunks [0, n) a window at a time; after each window, `after` (may be NULL)
 * consumes it on this thread. Stops at the first failure, whose message lands in err. */
static int run_windows(chunk_job *j, uint32_t n, int threads, bn_task_fn fn,
                       int (*after)(chunk_job *j, void *user, char *err, size_t errlen), void *after_user,
                       bn_pack_progress_fn progress, void *user, char *err, size_t errlen) {
    bn_threadpool *pool = bn_threadpool_new(threads < 1 ? 1 : threads);
    uint8_t *bufs[WINDOW_CHUNKS];
    uint64_t total = 0, done = 0;
    for (uint32_t i = 0; i < n; i++) total += j->chunks[i].out_size;
    int rc = 0;
    for (uint32_t first = 0; rc == 0 && first < n; first += WINDOW_CHUNKS) {
        j->first = first;
        j->count = n - first < WINDOW_CHUNKS ? n - first : WINDOW_CHUNKS;
        atomic_store(&j->next, 0);
        memset(bufs, 0, sizeof bufs);
        j->bufs = bufs;
        bn_parallel_for(pool, j->count, 2, fn, j);
        if (atomic_load(&j->fail.index)) rc = bn_fail(err, errlen, "%s", j->fail.err);
        if (rc == 0 && after) rc = after(j, after_user, err, errlen);
        for (uint32_t k = 0; k < j->count; k++) {
            free(bufs[k]);
            done += j->chunks[first + k].out_size;
        }
        if (rc == 0 && progress) progress(user, done, total);
    }
    bn_threadpool_free(pool);
    return rc;
}

/* ---- writing ---- */

typedef struct write_state {
    bn_replace_file *out;
    uint64_t pos; /* where the next coded chunk goes in the pack */
} write_state;

static int write_window(chunk_job *j, void *user, char *err, size_t errlen) {
    write_state *w = user;
    for (uint32_t k = 0; k < j->count; k++) {
        bn_pack_chunk *c = &j->chunks[j->first + k];
        const void *bytes = j->bufs[k] ? (const void *)j->bufs[k] : (const void *)(j->gguf_image + c->out_offset);
        c->in_offset = w->pos;
        if (bn_replace_write(w->out, bytes, c->in_size, err, errlen)) return -1;
        w->pos += c->in_size;
    }
    return 0;
}

static void fill_header(uint8_t *h, uint32_t n_chunks, uint64_t gguf_size, uint64_t head_bytes, uint64_t table_offset,
                        uint32_t head_crc, uint32_t table_crc, int level) {
    memset(h, 0, HEADER_BYTES);
    memcpy(h, MAGIC, 8);
    bn_store_le(h + 8, VERSION, 4);
    bn_store_le(h + 12, n_chunks, 4);
    bn_store_le(h + 16, gguf_size, 8);
    bn_store_le(h + 24, head_bytes, 8);
    bn_store_le(h + 32, table_offset, 8);
    bn_store_le(h + 40, head_crc, 4);
    bn_store_le(h + 44, table_crc, 4);
    bn_store_le(h + 48, (uint32_t)level, 4);
    bn_store_le(h + 60, bn_crc32(0, h, 60), 4);
}

static int write_pack(const bn_gguf *g, uint64_t head_bytes, plan *pl, bn_replace_file *out, int level, int threads,
                      bn_pack_progress_fn progress, void *user, bn_pack_stats *stats, char *err, size_t errlen) {
    const uint64_t table_offset = HEADER_BYTES + head_bytes, table_bytes = (uint64_t)pl->n * ENTRY_BYTES;
    uint8_t *table = calloc(table_bytes ? table_bytes : 1, 1);
    if (!table) return bn_fail(err, errlen, "out of memory");
    uint8_t header[HEADER_BYTES] = {0};
    /* header and table are written last, once the chunks' places and CRCs are known */
    int rc = bn_replace_write(out, header, HEADER_BYTES, err, errlen) ||
             bn_replace_write(out, g->image, head_bytes, err, errlen) ||
             bn_replace_write(out, table, table_bytes, err, errlen);
    chunk_job *j = calloc(1, sizeof *j);
    if (!j) rc = bn_fail(err, errlen, "out of memory");
    if (rc == 0) {
        j->g = g;
        j->gguf_image = g->image;
        j->chunks = pl->chunks;
        j->level = level;
        write_state w = {out, table_offset + table_bytes};
        rc = run_windows(j, pl->n, threads, encode_worker, write_window, &w, progress, user, err, errlen);
        if (stats) *stats = j->stats;
    }
    if (rc == 0) {
        for (uint32_t i = 0; i < pl->n; i++) put_entry(table + (size_t)i * ENTRY_BYTES, &pl->chunks[i]);
        fill_header(header, pl->n, g->file_size, head_bytes, table_offset, bn_crc32(0, g->image, head_bytes),
                    bn_crc32(0, table, table_bytes), level);
        rc = bn_replace_seek(out, 0, err, errlen) || bn_replace_write(out, header, HEADER_BYTES, err, errlen) ||
             bn_replace_seek(out, table_offset, err, errlen) || bn_replace_write(out, table, table_bytes, err, errlen);
    }
    free(j);
    free(table);
    return rc;
}

int bn_pack_write(const char *in_path, const char *out_path, int level, int threads, bn_pack_progress_fn progress,
                  void *user, bn_pack_stats *stats, char *err, size_t errlen) {
    bn_gguf *g;
    char msg[512];
    if (bn_gguf_open(in_path, &g, msg, sizeof msg)) return bn_fail(err, errlen, "%s: %s", in_path, msg);
    if (stats) memset(stats, 0, sizeof *stats);
    /* a file without tensors may end before its data section would start */
    const uint64_t head_bytes = g->data_offset < g->file_size ? g->data_offset : g->file_size;
    plan pl = {0};
    bn_replace_file out;
    int rc = plan_chunks(g, head_bytes, &pl, msg, sizeof msg);
    if (rc == 0 && pl.n > UINT32_MAX / 2) rc = bn_fail(msg, sizeof msg, "too many chunks");
    if (rc == 0) rc = bn_replace_open(&out, out_path, msg, sizeof msg);
    if (rc == 0) {
        rc = write_pack(g, head_bytes, &pl, &out, level, threads, progress, user, stats, msg, sizeof msg);
        rc = bn_replace_close(&out, rc, 1, msg, sizeof msg);
    }
    free(pl.chunks);
    bn_gguf_close(g);
    return rc ? bn_fail(err, errlen, "%s", msg) : 0;
}

/* ---- opening ---- */

/* Every chunk lies inside the file and the GGUF; chunks cover the data section in order; a
 * tensor's chunks lie inside it and cover all of it. */
static int check_chunks(bn_pack *p, uint64_t head_bytes, uint64_t payload_start, char *err, size_t errlen) {
    const bn_gguf *g = &p->gguf;
    uint64_t *covered = calloc(g->n_tensors ? g->n_tensors : 1, sizeof *covered);
    if (!covered) return bn_fail(err, errlen, "out of memory");
    uint64_t pos = head_bytes;
    int rc = 0;
    for (uint32_t i = 0; rc == 0 && i < p->n_chunks; i++) {
        const bn_pack_chunk *c = &p->chunks[i];
        uint64_t in_end;
        if (c->out_offset != pos || c->out_size == 0 || c->out_size > BN_PACK_MAX_CHUNK ||
            c->out_size > g->file_size - pos)
            rc = chunk_fail(g, p->chunks, p->n_chunks, i, "is out of place in the chunk table", err, errlen);
        else if (c->coded > 1 || (!c->coded && c->in_size != c->out_size) || c->in_offset < payload_start ||
                 !bn_add_u64(c->in_offset, c->in_size, &in_end) || in_end > p->file->size)
            rc = chunk_fail(g, p->chunks, p->n_chunks, i, "has coded bytes outside the pack", err, errlen);
        else if (c->tensor != BN_PACK_NO_TENSOR) {
            const bn_gguf_tensor *t = c->tensor < g->n_tensors ? &g->tensors[c->tensor] : NULL;
            const uint64_t start = t ? g->data_offset + t->offset : 0;
            if (!t || c->out_offset < start || c->out_offset + c->out_size > start + t->n_bytes)
                rc = chunk_fail(g, p->chunks, p->n_chunks, i, "does not lie inside its tensor", err, errlen);
            else
                covered[c->tensor] += c->out_size;
        }
        pos += c->out_size;
    }
    if (rc == 0 && pos != g->file_size)
        rc = bn_fail(err, errlen, "the chunks end at GGUF byte %llu, the GGUF has %llu", (unsigned long long)pos,
                     (unsigned long long)g->file_size);
    for (uint64_t t = 0; rc == 0 && t < g->n_tensors; t++)
        if (covered[t] != g->tensors[t].n_bytes)
            rc = bn_fail(err, errlen, "tensor '%.*s' is not covered by its chunks", (int)g->tensors[t].name.len,
                         g->tensors[t].name.ptr);
    free(covered);
    return rc;
}

static int read_pack(bn_pack *p, char *err, size_t errlen) {
    const uint8_t *d = p->file->data;
    const uint64_t size = p->file->size;
    if (size < HEADER_BYTES || memcmp(d, MAGIC, 8) != 0) return bn_fail(err, errlen, "not a .bnz pack");
    if (bn_load_le(d + 60, 4) != bn_crc32(0, d, 60)) return bn_fail(err, errlen, "the pack header is damaged (CRC-32)");
    const uint32_t version = (uint32_t)bn_load_le(d + 8, 4);
    if (version != VERSION)
        return bn_fail(err, errlen, "pack version %u; this build reads version %u", version, VERSION);
    p->identity = (uint32_t)bn_load_le(d + 60, 4);
    p->head_bytes = bn_load_le(d + 24, 8);
    p->n_chunks = (uint32_t)bn_load_le(d + 12, 4);
    const uint64_t gguf_size = bn_load_le(d + 16, 8), head_bytes = bn_load_le(d + 24, 8);
    const uint64_t table_offset = bn_load_le(d + 32, 8);
    uint64_t table_bytes = (uint64_t)p->n_chunks * ENTRY_BYTES, table_end;
    if (head_bytes > gguf_size || head_bytes > size - HEADER_BYTES || table_offset != HEADER_BYTES + head_bytes ||
        !bn_add_u64(table_offset, table_bytes, &table_end) || table_end > size)
        return bn_fail(err, errlen, "the pack is truncated or its header is inconsistent");
    if (bn_crc32(0, d + HEADER_BYTES, head_bytes) != bn_load_le(d + 40, 4))
        return bn_fail(err, errlen, "the GGUF header inside the pack is damaged (CRC-32)");
    if (bn_crc32(0, d + table_offset, table_bytes) != bn_load_le(d + 44, 4))
        return bn_fail(err, errlen, "the pack's chunk table is damaged (CRC-32)");
    char msg[400];
    if (bn_gguf_parse_head(d + HEADER_BYTES, head_bytes, gguf_size, &p->gguf, msg, sizeof msg))
        return bn_fail(err, errlen, "the GGUF inside the pack: %s", msg);
    p->chunks = malloc((p->n_chunks ? p->n_chunks : 1) * sizeof *p->chunks);
    if (!p->chunks) return bn_fail(err, errlen, "out of memory");
    for (uint32_t i = 0; i < p->n_chunks; i++) get_entry(d + table_offset + (size_t)i * ENTRY_BYTES, &p->chunks[i]);
    return check_chunks(p, head_bytes, table_end, err, errlen);
}

int bn_pack_open(const char *path, bn_pack **out, char *err, size_t errlen) {
    *out = NULL;
    bn_pack *p = calloc(1, sizeof *p);
    if (!p) return bn_fail(err, errlen, "out of memory");
    if (bn_mapped_file_open(path, &p->file, err, errlen)) {
        free(p);
        return -1;
    }
    if (read_pack(p, err, errlen)) {
        bn_pack_close(p);
        return -1;
    }
    *out = p;
    return 0;
}

void bn_pack_close(bn_pack *p) {
    if (!p) return;
    bn_gguf_free(&p->gguf);
    free(p->chunks);
    bn_mapped_file_close(p->file);
    free(p);
}

bn_gguf *bn_pack_gguf(bn_pack *p) { return &p->gguf; }
uint32_t bn_pack_identity(const bn_pack *p) { return p->identity; }
uint32_t bn_pack_chunk_count(const bn_pack *p) { return p->n_chunks; }
uint64_t bn_pack_bytes(const bn_pack *p) { return p->file->size; }

/* ---- reading ---- */

/* The first chunk whose bytes start at or after GGUF offset `at` (binary search). */
static uint32_t chunk_at(const bn_pack *p, uint64_t at) {
    uint32_t lo = 0, hi = p->n_chunks;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (p->chunks[mid].out_offset < at) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

int bn_pack_decode_tensor(const bn_pack *p, uint64_t index, uint8_t *dst, int check_decoded, char *err,
                          size_t errlen) {
    const bn_gguf_tensor *t = &p->gguf.tensors[index];
    const uint64_t start = p->gguf.data_offset + t->offset;
    for (uint32_t i = chunk_at(p, start); i < p->n_chunks && p->chunks[i].tensor == index; i++) {
        const bn_pack_chunk *c = &p->chunks[i];
        if (decode_chunk(p, i, dst + (c->out_offset - start), check_decoded, err, errlen)) return -1;
        /* the decoded copy is what is read from now on: the coded pages need not stay resident */
        bn_mapped_file_drop(p->file, p->file->data + c->in_offset, c->in_size);
    }
    return 0;
}

int bn_pack_verify(const bn_pack *p, int threads, bn_pack_progress_fn progress, void *user, char *err,
                   size_t errlen) {
    chunk_job *j = calloc(1, sizeof *j);
    if (!j) return bn_fail(err, errlen, "out of memory");
    j->pack = p;
    j->chunks = p->chunks;
    int rc = run_windows(j, p->n_chunks, threads, decode_worker, NULL, NULL, progress, user, err, errlen);
    free(j);
    return rc;
}

static int write_decoded(chunk_job *j, void *user, char *err, size_t errlen) {
    for (uint32_t k = 0; k < j->count; k++)
        if (bn_replace_write(user, j->bufs[k], j->chunks[j->first + k].out_size, err, errlen)) return -1;
    return 0;
}

int bn_pack_unpack(const bn_pack *p, const char *out_path, int threads, bn_pack_progress_fn progress, void *user,
                   char *err, size_t errlen) {
    bn_replace_file out;
    if (bn_replace_open(&out, out_path, err, errlen)) return -1;
    int rc = bn_replace_write(&out, p->file->data + HEADER_BYTES, p->head_bytes, err, errlen);
    chunk_job *j = rc ? NULL : calloc(1, sizeof *j);
    if (rc == 0 && !j) rc = bn_fail(err, errlen, "out of memory");
    if (rc == 0) {
        j->pack = p;
        j->chunks = p->chunks;
        j->keep = 1;
        rc = run_windows(j, p->n_chunks, threads, decode_worker, write_decoded, &out, progress, user, err, errlen);
    }
    free(j);
    return bn_replace_close(&out, rc, 1, err, errlen);
}
