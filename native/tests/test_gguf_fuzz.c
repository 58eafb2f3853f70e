/* GGUF reader hardening: thousands of truncated and mutated files, built from the real fixture
 * bytes and from a hand-built image holding every value type. Each must give a clean one-line
 * error or a parse whose every pointer lies inside the image: no crash, no hang, no allocation
 * out of proportion to the file. Deterministic (seeded), bounded, and meant to also run under
 * -fsanitize=address,undefined: every parse sees a buffer of exactly the file's size. */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "harness.h"
#include "core/common.h"
#include "gguf/gguf.h"
#include "quants/quants.h"
#include "test_gguf_builder.h"

#if defined(__SANITIZE_ADDRESS__)
#define BN_UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define BN_UNDER_ASAN 1
#endif
#endif

static uint64_t n_cases, n_parsed_ok;

/* splitmix64: small, seedable, good enough to pick positions and values. */
static uint64_t rng_state = 0x5eed0bad5eedULL;
static uint64_t rng(void) {
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
static uint64_t rng_below(uint64_t n) { return n ? rng() % n : 0; }

/* Parses image[0..size) (which must be a buffer of exactly that size) and checks the outcome. */
static void run_case(const uint8_t *image, uint64_t size, const char *what, uint64_t detail) {
    bn_gguf g;
    char err[512] = "";
    n_cases++;
    if (bn_gguf_parse(image, size, &g, err, sizeof err) == 0) {
        n_parsed_ok++;
        const char *bad = gb_check_consistent(&g, image, size);
        CHECK(bad == NULL, "%s %llu: parsed but inconsistent: %s", what, (unsigned long long)detail, bad);
        bn_gguf_free(&g);
        return;
    }
    size_t len = strlen(err);
    CHECK(len > 0 && len < 400 && !strchr(err, '\n'), "%s %llu: bad message '%s'", what,
          (unsigned long long)detail, err);
    /* Counts are bounded by the file size, so running out of memory means an unbounded allocation. */
    CHECK(!strstr(err, "out of memory"), "%s %llu: %s", what, (unsigned long long)detail, err);
    CHECK(g.kv == NULL && g.tensors == NULL && g.n_kv == 0, "%s: struct not reset on failure", what);
}

/* Every prefix in [0, upto] (stride 1) is parsed from its own exact-size allocation. */
static void truncations(const uint8_t *src, uint64_t size, uint64_t upto, uint64_t random_extra) {
    if (upto > size) upto = size;
    for (uint64_t n = 0; n <= upto + random_extra; n++) {
        uint64_t len = n <= upto ? n : rng_below(size);
        uint8_t *copy = malloc(len ? len : 1);
        memcpy(copy, src, len);
        run_case(len ? copy : NULL, len, "truncated to", len);
        free(copy);
    }
}

/* ---- field positions of a valid file, found by parsing it ---- */

typedef struct field {
    uint64_t pos;
    unsigned width;
} field;

typedef struct field_list {
    field *items;
    size_t n, cap;
} field_list;

static void add_field(field_list *f, const uint8_t *image, const void *at, unsigned width) {
    if (f->n == f->cap) {
        f->cap = f->cap * 2 + 64;
        f->items = realloc(f->items, f->cap * sizeof *f->items);
        if (!f->items) abort();
    }
    f->items[f->n++] = (field){(uint64_t)((const uint8_t *)at - image), width};
}

static void kv_fields(field_list *f, const uint8_t *image, const bn_gguf_kv *kv) {
    const uint8_t *key = (const uint8_t *)kv->key.ptr;
    const uint8_t *type = key + kv->key.len;
    add_field(f, image, key - 8, 8);
    add_field(f, image, type, 4);
    if (kv->type == BN_GGUF_STRING) add_field(f, image, type + 4, 8);
    if (gb_scalar_size(kv->type)) add_field(f, image, type + 4, gb_scalar_size(kv->type)); /* e.g. alignment */
    if (kv->type == BN_GGUF_ARRAY) {
        add_field(f, image, type + 4, 4);
        add_field(f, image, type + 8, 8);
        if (kv->arr_type == BN_GGUF_STRING && kv->arr_count > 0) {
            add_field(f, image, kv->arr_strs[0].ptr - 8, 8);
            add_field(f, image, kv->arr_strs[kv->arr_count - 1].ptr - 8, 8);
        }
    }
}

static void tensor_fields(field_list *f, const uint8_t *image, const bn_gguf_tensor *t) {
    const uint8_t *name = (const uint8_t *)t->name.ptr;
    const uint8_t *n_dims = name + t->name.len;
    add_field(f, image, name - 8, 8);
    add_field(f, image, n_dims, 4);
    for (uint32_t d = 0; d < t->n_dims; d++) add_field(f, image, n_dims + 4 + 8 * d, 8);
    add_field(f, image, n_dims + 4 + 8 * t->n_dims, 4);     /* type */
    add_field(f, image, n_dims + 4 + 8 * t->n_dims + 4, 8); /* offset */
}

/* Header fields, every key's length/type/count fields and every tensor-info field. */
static field_list find_fields(const uint8_t *image, uint64_t size) {
    field_list f = {0};
    bn_gguf g;
    char err[512];
    int rc = bn_gguf_parse(image, size, &g, err, sizeof err);
    CHECK(rc == 0, "source does not parse: %s", err);
    if (rc != 0) return f;
    add_field(&f, image, image + 4, 4);
    add_field(&f, image, image + 8, 8);
    add_field(&f, image, image + 16, 8);
    for (uint64_t i = 0; i < g.n_kv; i++) kv_fields(&f, image, &g.kv[i]);
    for (uint64_t i = 0; i < g.n_tensors; i++) tensor_fields(&f, image, &g.tensors[i]);
    bn_gguf_free(&g);
    return f;
}

static void store_le(uint8_t *p, uint64_t v, unsigned width) {
    for (unsigned i = 0; i < width; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* Overwrites each field with values chosen to hit boundaries: around zero, powers of two near
 * every width's limit, the file size, and the all-ones patterns. */
static void field_overwrites(uint8_t *image, uint64_t size, uint64_t max_fields) {
    const uint64_t values[] = {0, 1, 2, 3, 4, 5, 7, 8, 9, 12, 13, 31, 32, 33, 63, 64, 127, 128, 255, 256,
                               0x7fff, 0xffff, 0x7fffffff, 0x80000000u, 0xffffffffu, 1ull << 32,
                               1ull << 62, (uint64_t)INT64_MAX, 1ull << 63, UINT64_MAX - 1, UINT64_MAX,
                               size - 1, size, size + 1, size / 2};
    field_list f = find_fields(image, size);
    uint64_t step = f.n > max_fields ? f.n / max_fields + 1 : 1;
    for (size_t i = 0; i < f.n; i += step) {
        uint8_t saved[8];
        uint8_t *p = image + f.items[i].pos;
        memcpy(saved, p, f.items[i].width);
        for (size_t v = 0; v <= sizeof values / sizeof values[0]; v++) {
            uint64_t value = v < sizeof values / sizeof values[0] ? values[v] : rng();
            store_le(p, value, f.items[i].width);
            run_case(image, size, "field at", f.items[i].pos);
        }
        memcpy(p, saved, f.items[i].width);
    }
    free(f.items);
}

/* Flips 1-4 random bits, mostly inside the header (data bytes are opaque to the parser). */
static void bit_flips(uint8_t *image, uint64_t size, uint64_t header_end, int count) {
    for (int c = 0; c < count; c++) {
        uint64_t pos[4];
        uint8_t saved[4];
        int flips = 1 + (int)rng_below(4);
        for (int k = 0; k < flips; k++) {
            pos[k] = rng_below(4) ? rng_below(header_end) : rng_below(size);
            saved[k] = image[pos[k]];
            image[pos[k]] ^= (uint8_t)(1u << rng_below(8));
        }
        run_case(image, size, "bit flips, case", (uint64_t)c);
        for (int k = flips; k-- > 0;) image[pos[k]] = saved[k];
    }
}

/* Random 8-byte windows in the header set to random or all-ones values. */
static void random_overwrites(uint8_t *image, uint64_t size, uint64_t header_end, int count) {
    for (int c = 0; c < count; c++) {
        uint64_t pos = rng_below(header_end > 8 ? header_end - 8 : 1);
        unsigned width = 1u << rng_below(4);
        if (pos + width > size) continue;
        uint8_t saved[8];
        memcpy(saved, image + pos, width);
        store_le(image + pos, rng_below(2) ? rng() : UINT64_MAX, width);
        run_case(image, size, "overwrite at", pos);
        memcpy(image + pos, saved, width);
    }
}

/* Runs every mutation family over an exact-size copy of src. */
static void mutate_source(const char *label, const uint8_t *src, uint64_t size, uint64_t trunc_upto,
                          uint64_t trunc_random, uint64_t max_fields, int n_flips) {
    uint64_t before = n_cases;
    double t0 = bn_now_ms();
    uint8_t *image = malloc(size);
    memcpy(image, src, size);
    bn_gguf g;
    char err[512];
    uint64_t header_end = size;
    if (bn_gguf_parse(image, size, &g, err, sizeof err) == 0) {
        header_end = g.data_offset < size ? g.data_offset : size;
        bn_gguf_free(&g);
    }
    truncations(image, size, trunc_upto < header_end ? trunc_upto : header_end, trunc_random);
    field_overwrites(image, size, max_fields);
    bit_flips(image, size, header_end, n_flips);
    random_overwrites(image, size, header_end, n_flips / 2);
    CHECK(memcmp(image, src, size) == 0, "%s: mutations were not undone", label);
    free(image);
    printf("  %-28s %7llu files in %6.0f ms\n", label, (unsigned long long)(n_cases - before), bn_now_ms() - t0);
}

static void mutate_fixture(const char *rel, uint64_t trunc_upto, uint64_t trunc_random, uint64_t max_fields,
                           int n_flips) {
    size_t size;
    uint8_t *src = bn_read_fixture(rel, &size);
    const char *label = strrchr(rel, '/') ? strrchr(rel, '/') + 1 : rel;
    mutate_source(label, src, size, trunc_upto, trunc_random, max_fields, n_flips);
    free(src);
}

/* A small image with every value type, arrays of every element type, and three tensors. */
static void build_all_types(gb *b) {
    gb_header(b, 3, 3, 2 + 12 + 12);
    gb_kv_u32(b, "general.alignment", 64);
    gb_kv_str(b, "general.architecture", "qwen3");
    for (uint32_t t = 0; t <= BN_GGUF_F64; t++) {
        if (t == BN_GGUF_ARRAY) continue;
        char key[32];
        snprintf(key, sizeof key, "s.%u", t);
        gb_key(b, key, t);
        if (t == BN_GGUF_STRING) gb_str(b, "text");
        else gb_le(b, 0x0102030405060708ull, gb_scalar_size(t));
        snprintf(key, sizeof key, "a.%u", t);
        gb_kv_array(b, key, t, 2);
        for (int i = 0; i < 2; i++) {
            if (t == BN_GGUF_STRING) gb_str(b, "el");
            else gb_le(b, 0x11, gb_scalar_size(t));
        }
    }
    uint64_t q1[2] = {256, 2}, f32[1] = {16}, tq[3] = {256, 1, 2};
    gb_tensor(b, "blk.0.q1", 2, q1, BN_TYPE_Q1_0, 0);         /* 72 bytes */
    gb_tensor(b, "blk.0.norm", 1, f32, BN_TYPE_F32, 128);     /* 64 bytes */
    gb_tensor(b, "blk.0.tq2", 3, tq, BN_TYPE_TQ2_0, 192);     /* 132 bytes */
    gb_pad(b, 64);
    gb_zeros(b, 192 + 132);
}

/* Every bit of the small image flipped on its own, and every byte set to boundary values. */
static void exhaustive_small(const gb *b) {
    uint64_t before = n_cases;
    double t0 = bn_now_ms();
    uint8_t *image = malloc(b->len);
    memcpy(image, b->p, b->len);
    static const uint8_t bytes[] = {0x00, 0x01, 0x09, 0x20, 0x7f, 0x80, 0xff};
    for (size_t pos = 0; pos < b->len; pos++) {
        uint8_t saved = image[pos];
        for (int bit = 0; bit < 8; bit++) {
            image[pos] = saved ^ (uint8_t)(1u << bit);
            run_case(image, b->len, "small image bit flip at", pos);
        }
        for (size_t v = 0; v < sizeof bytes; v++) {
            image[pos] = bytes[v];
            run_case(image, b->len, "small image byte set at", pos);
        }
        image[pos] = saved;
    }
    free(image);
    printf("  %-28s %7llu files in %6.0f ms\n", "all-types image (exhaustive)", (unsigned long long)(n_cases - before),
           bn_now_ms() - t0);
}

/* 100k nested array headers: refused at the first level, in constant stack. */
static void deep_array_headers(void) {
    gb b = {0};
    gb_header(&b, 3, 0, 1);
    gb_kv_array(&b, "deep", BN_GGUF_ARRAY, UINT64_MAX);
    for (int i = 0; i < 100000; i++) {
        gb_u32(&b, BN_GGUF_ARRAY);
        gb_u64(&b, UINT64_MAX);
    }
    run_case(b.p, b.len, "deep array headers", 0);
    free(b.p);
}

static void limit_address_space(void) {
#ifndef BN_UNDER_ASAN
    /* The sanitizer reserves terabytes of shadow memory, so only limit plain builds. A parser
     * allocation out of proportion to these few-MB files then fails and shows up as an error. */
    struct rlimit lim = {1ull << 30, 1ull << 30};
    setrlimit(RLIMIT_AS, &lim);
#endif
}

int main(void) {
    limit_address_space();
    double t0 = bn_now_ms();
    gb small = {0};
    build_all_types(&small);
    mutate_source("all-types image", small.p, small.len, small.len, 0, 1000, 3000);
    exhaustive_small(&small);
    free(small.p);
    deep_array_headers();
    mutate_fixture("stories260K/stories260K.gguf", UINT64_MAX, 200, 400, 10000);
    mutate_fixture("qwen3-tiny/models/tiny-qwen3-q1_0.gguf", UINT64_MAX, 200, 400, 10000);
    mutate_fixture("qwen3-tiny/models/tiny-qwen3-tq1_0.gguf", 0, 200, 400, 1000);
    mutate_fixture("tokenizer-vectors/ggml-vocab-llama-spm.gguf", 4096, 300, 60, 800);
    printf("test_gguf_fuzz: %llu files (%llu parsed, %llu refused) in %.0f ms\n", (unsigned long long)n_cases,
           (unsigned long long)n_parsed_ok, (unsigned long long)(n_cases - n_parsed_ok), bn_now_ms() - t0);
    return bn_test_done("test_gguf_fuzz");
}
