/* Pack codec throughput on a real model: every tensor split into chunks of whole rows (at most
 * 1 MiB, as packs cut them), each chunk encoded once at `level` (default 2), then the chunks of
 * each ggml type decoded `iters` times on this thread, best time kept, and checked byte for byte.
 *
 *   bench_pack FILE.gguf [level] [--iters N]       (or BENCH_PACK_ITERS=N; default 10)
 *
 * Prints one JSON object: per type and in total, bytes and bits per weight before and after, the
 * encoded bytes of each stream kind and their share, and decode MB/s (10^6 bytes of output per
 * second) of one thread. Decoding goes into one reused buffer, so it measures the codec, not page
 * faults. Everything but the timed loop is the same for any iters, so under qemu the difference
 * of the instruction counts of runs with N and 0 iterations is N decodes of the file. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "gguf/gguf.h"
#include "pack/codec.h"
#include "quants/quants.h"

#define CHUNK_TARGET ((size_t)1 << 20)
#define MAX_TYPES 16

typedef struct chunk {
    uint32_t type;
    size_t row_bytes, n, len;
    const uint8_t *src;
    uint8_t *enc;
} chunk;

typedef struct type_totals {
    uint32_t type;
    uint64_t tensors, chunks, weights, decoded, encoded;
    bn_pack_stats stats;
    double encode_s, decode_s; /* decode: best of the iterations */
} type_totals;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Bytes per chunk: whole rows up to the target, or whole blocks of a row longer than it. */
static size_t chunk_bytes(const bn_gguf_tensor *t, size_t row) {
    const size_t block = bn_type_get(t->type)->block_bytes;
    return row <= CHUNK_TARGET ? CHUNK_TARGET / row * row : CHUNK_TARGET / block * block;
}

static type_totals *totals_for(type_totals *all, int *n_types, uint32_t type) {
    for (int i = 0; i < *n_types; i++)
        if (all[i].type == type) return &all[i];
    if (*n_types == MAX_TYPES) return NULL;
    all[*n_types] = (type_totals){.type = type};
    return &all[(*n_types)++];
}

/* Encodes every tensor of g into chunks (*out, *n_out), adding to the per-type totals. */
static int encode_all(const bn_gguf *g, int level, type_totals *all, int *n_types, chunk **out, size_t *n_out) {
    size_t n_chunks = 0, cap_chunks = 64;
    chunk *chunks = malloc(cap_chunks * sizeof *chunks);
    char err[256];
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const bn_gguf_tensor *t = &g->tensors[i];
        type_totals *tt = totals_for(all, n_types, t->type);
        if (!tt || !chunks) return -1;
        const size_t row = (size_t)bn_row_bytes(t->type, t->ne[0]), step = chunk_bytes(t, row);
        const bn_type_traits *traits = bn_type_get(t->type);
        tt->tensors++;
        for (size_t off = 0; off < t->n_bytes; off += step) {
            if (n_chunks == cap_chunks && !(chunks = realloc(chunks, (cap_chunks *= 2) * sizeof *chunks))) return -1;
            chunk *c = &chunks[n_chunks++];
            *c = (chunk){.type = t->type, .row_bytes = row, .src = t->data + off};
            c->n = t->n_bytes - off < step ? (size_t)t->n_bytes - off : step;
            c->enc = malloc(bn_pack_bound(c->n));
            const double t0 = now_s();
            if (!c->enc || bn_pack_encode(c->type, row, c->src, c->n, level, c->enc, bn_pack_bound(c->n), &c->len,
                                          &tt->stats, err, sizeof err)) {
                fprintf(stderr, "bench_pack: %.*s: %s\n", (int)t->name.len, t->name.ptr, err);
                return -1;
            }
            tt->encode_s += now_s() - t0;
            tt->chunks++;
            tt->weights += c->n / traits->block_bytes * traits->block_size;
            tt->decoded += c->n;
            tt->encoded += c->len;
        }
    }
    *out = chunks;
    *n_out = n_chunks;
    return 0;
}

/* Decodes every chunk once and compares. */
static int verify_all(const chunk *chunks, size_t n_chunks, uint8_t *buf) {
    char err[256];
    for (size_t i = 0; i < n_chunks; i++) {
        const chunk *c = &chunks[i];
        if (bn_pack_decode(c->type, c->row_bytes, c->enc, c->len, buf, c->n, err, sizeof err) ||
            memcmp(buf, c->src, c->n)) {
            fprintf(stderr, "bench_pack: chunk %zu does not decode to its bytes: %s\n", i, err);
            return -1;
        }
    }
    return 0;
}

/* The best time of `iters` decodes of all chunks of one type. */
static double time_decode(const chunk *chunks, size_t n_chunks, uint32_t type, int iters, uint8_t *buf) {
    double best = 0;
    for (int it = 0; it < iters; it++) {
        const double t0 = now_s();
        for (size_t i = 0; i < n_chunks; i++) {
            const chunk *c = &chunks[i];
            if (c->type == type) bn_pack_decode(c->type, c->row_bytes, c->enc, c->len, buf, c->n, NULL, 0);
        }
        const double dt = now_s() - t0;
        if (it == 0 || dt < best) best = dt;
    }
    return best;
}

/* s as the body of a JSON string. */
static void print_json_string(const char *s) {
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            printf("\\%c", *s);
        else if ((unsigned char)*s < 0x20)
            printf("\\u%04x", (unsigned char)*s);
        else
            putchar(*s);
    }
}

static void print_totals(const char *name, const type_totals *t) {
    static const char *const kinds[] = {"scales", "signs", "ternary", "values", "overhead"};
    const double w = t->weights ? (double)t->weights : 1, enc = t->encoded ? (double)t->encoded : 1;
    printf("\"%s\": {\"tensors\": %llu, \"chunks\": %llu, \"weights\": %llu, \"decoded_bytes\": %llu, "
           "\"encoded_bytes\": %llu, \"bpw_before\": %.4f, \"bpw_after\": %.4f, \"streams\": {",
           name, (unsigned long long)t->tensors, (unsigned long long)t->chunks, (unsigned long long)t->weights,
           (unsigned long long)t->decoded, (unsigned long long)t->encoded, 8.0 * (double)t->decoded / w,
           8.0 * (double)t->encoded / w);
    for (int k = 0; k < BN_PACK_STREAM_KINDS; k++)
        printf("%s\"%s\": {\"in\": %llu, \"out\": %llu, \"share\": %.4f}", k ? ", " : "", kinds[k],
               (unsigned long long)t->stats.in[k], (unsigned long long)t->stats.out[k],
               (double)t->stats.out[k] / enc);
    const double encode_mb_s = t->encode_s > 0 ? (double)t->decoded / t->encode_s / 1e6 : 0;
    const double decode_mb_s = t->decode_s > 0 ? (double)t->decoded / t->decode_s / 1e6 : 0;
    printf("}, \"encode_mb_s\": %.1f, \"decode_mb_s\": %.1f}", encode_mb_s, decode_mb_s);
}

int main(int argc, char **argv) {
    const char *path = NULL, *env = getenv("BENCH_PACK_ITERS");
    int level = 2, iters = env && *env ? atoi(env) : 10;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--iters") == 0 && i + 1 < argc)
            iters = atoi(argv[++i]);
        else if (!path)
            path = argv[i];
        else
            level = atoi(argv[i]);
    }
    if (!path || iters < 0) {
        fprintf(stderr, "usage: bench_pack FILE.gguf [level] [--iters N]\n");
        return 2;
    }
    char err[256];
    bn_gguf *g = NULL;
    if (bn_gguf_open(path, &g, err, sizeof err)) {
        fprintf(stderr, "bench_pack: %s: %s\n", path, err);
        return 1;
    }
    type_totals types[MAX_TYPES];
    int n_types = 0;
    chunk *chunks = NULL;
    size_t n_chunks = 0;
    uint8_t *buf = malloc(BN_PACK_MAX_CHUNK);
    if (!buf || encode_all(g, level, types, &n_types, &chunks, &n_chunks) || verify_all(chunks, n_chunks, buf)) {
        fprintf(stderr, "bench_pack: failed\n");
        return 1;
    }
    type_totals total = {0};
    for (int i = 0; i < n_types; i++) {
        types[i].decode_s = time_decode(chunks, n_chunks, types[i].type, iters, buf);
        total.tensors += types[i].tensors;
        total.chunks += types[i].chunks;
        total.weights += types[i].weights;
        total.decoded += types[i].decoded;
        total.encoded += types[i].encoded;
        total.encode_s += types[i].encode_s;
        total.decode_s += types[i].decode_s;
        for (int k = 0; k < BN_PACK_STREAM_KINDS; k++) {
            total.stats.in[k] += types[i].stats.in[k];
            total.stats.out[k] += types[i].stats.out[k];
        }
    }
    printf("{\"file\": \"");
    print_json_string(path);
    printf("\", \"level\": %d, \"iters\": %d, \"types\": {", level, iters);
    for (int i = 0; i < n_types; i++) {
        if (i) printf(", ");
        print_totals(bn_type_get(types[i].type)->name, &types[i]);
    }
    printf("}, ");
    print_totals("total", &total);
    printf("}\n");
    for (size_t i = 0; i < n_chunks; i++) free(chunks[i].enc);
    free(chunks);
    free(buf);
    bn_gguf_close(g);
    return 0;
}
