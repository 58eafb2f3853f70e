/* A tiny in-memory GGUF writer for the gguf tests, plus the invariant check every successful parse
 * must satisfy. Field order follows the GGUF spec; nothing here validates, so tests can write
 * deliberately broken files. */
#ifndef BN_TEST_GGUF_BUILDER_H
#define BN_TEST_GGUF_BUILDER_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gguf/gguf.h"
#include "quants/quants.h"

typedef struct gb {
    uint8_t *p;
    size_t len, cap;
} gb;

static inline void gb_bytes(gb *b, const void *src, size_t n) {
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        if (!b->p) abort();
    }
    if (n) memcpy(b->p + b->len, src, n);
    b->len += n;
}

static inline void gb_le(gb *b, uint64_t v, unsigned n) {
    uint8_t tmp[8];
    for (unsigned i = 0; i < n; i++) tmp[i] = (uint8_t)(v >> (8 * i));
    gb_bytes(b, tmp, n);
}

static inline void gb_u8(gb *b, uint8_t v) { gb_le(b, v, 1); }
static inline void gb_u32(gb *b, uint32_t v) { gb_le(b, v, 4); }
static inline void gb_u64(gb *b, uint64_t v) { gb_le(b, v, 8); }
static inline void gb_str(gb *b, const char *s) {
    gb_u64(b, strlen(s));
    gb_bytes(b, s, strlen(s));
}

static inline void gb_header(gb *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
    gb_bytes(b, "GGUF", 4);
    gb_u32(b, version);
    gb_u64(b, n_tensors);
    gb_u64(b, n_kv);
}

/* A key and its value type; the caller writes the value. */
static inline void gb_key(gb *b, const char *key, uint32_t type) {
    gb_str(b, key);
    gb_u32(b, type);
}

static inline void gb_kv_u32(gb *b, const char *key, uint32_t v) {
    gb_key(b, key, BN_GGUF_U32);
    gb_u32(b, v);
}

static inline void gb_kv_str(gb *b, const char *key, const char *v) {
    gb_key(b, key, BN_GGUF_STRING);
    gb_str(b, v);
}

/* Key, ARRAY, element type and count; the caller writes the elements. */
static inline void gb_kv_array(gb *b, const char *key, uint32_t elem_type, uint64_t count) {
    gb_key(b, key, BN_GGUF_ARRAY);
    gb_u32(b, elem_type);
    gb_u64(b, count);
}

static inline void gb_tensor(gb *b, const char *name, uint32_t n_dims, const uint64_t *ne, uint32_t type, uint64_t offset) {
    gb_str(b, name);
    gb_u32(b, n_dims);
    for (uint32_t d = 0; d < n_dims; d++) gb_u64(b, ne[d]);
    gb_u32(b, type);
    gb_u64(b, offset);
}

static inline void gb_zeros(gb *b, size_t n) {
    static const uint8_t zero[64];
    while (n) {
        size_t k = n < sizeof zero ? n : sizeof zero;
        gb_bytes(b, zero, k);
        n -= k;
    }
}

static inline void gb_pad(gb *b, size_t alignment) { gb_zeros(b, (alignment - b->len % alignment) % alignment); }

/* ---- what every successful parse must guarantee ---- */

static inline int gb_inside(const uint8_t *img, uint64_t size, const void *ptr, uint64_t len) {
    const uint8_t *p = ptr;
    if (!p || p < img) return 0;
    uint64_t at = (uint64_t)(p - img);
    return at <= size && len <= size - at;
}

static inline unsigned gb_scalar_size(uint32_t t) {
    static const unsigned sizes[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    return t < 13 ? sizes[t] : 0;
}

/* Returns NULL if g is internally consistent with the image, else what is wrong. */
static inline const char *gb_check_consistent(const bn_gguf *g, const uint8_t *img, uint64_t size) {
    if (g->image != img || g->image_size != size) return "image pointer/size";
    if (g->version != 2 && g->version != 3) return "version";
    if (!g->alignment || (g->alignment & (g->alignment - 1))) return "alignment";
    if (g->data_offset % g->alignment) return "data_offset alignment";
    for (uint64_t i = 0; i < g->n_kv; i++) {
        const bn_gguf_kv *kv = &g->kv[i];
        if (kv->key.len == 0 || !gb_inside(img, size, kv->key.ptr, kv->key.len)) return "key outside image";
        if (kv->type == BN_GGUF_STRING && !gb_inside(img, size, kv->v.str.ptr, kv->v.str.len)) return "string value";
        if (kv->type > BN_GGUF_F64) return "value type";
        if (kv->type != BN_GGUF_ARRAY) continue;
        if (kv->arr_type == BN_GGUF_ARRAY || kv->arr_type > BN_GGUF_F64) return "array element type";
        if (kv->arr_type == BN_GGUF_STRING) {
            if (kv->arr_count && !kv->arr_strs) return "string array not indexed";
            for (uint64_t j = 0; j < kv->arr_count; j++)
                if (!gb_inside(img, size, kv->arr_strs[j].ptr, kv->arr_strs[j].len)) return "array string";
        } else {
            uint64_t bytes = kv->arr_count * gb_scalar_size(kv->arr_type);
            if (bytes / gb_scalar_size(kv->arr_type) != kv->arr_count) return "array bytes overflow";
            if (!gb_inside(img, size, kv->arr_data, bytes)) return "array data";
        }
    }
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const bn_gguf_tensor *t = &g->tensors[i];
        const bn_type_traits *tr = bn_type_get(t->type);
        if (!tr) return "tensor type";
        if (t->n_dims < 1 || t->n_dims > 4) return "n_dims";
        uint64_t n = 1;
        for (int d = 0; d < 4; d++) {
            if (t->ne[d] == 0 || (d >= (int)t->n_dims && t->ne[d] != 1)) return "dims";
            if (n > UINT64_MAX / t->ne[d]) return "element count overflow";
            n *= t->ne[d];
        }
        if (n != t->n_elements) return "n_elements";
        if (t->ne[0] % tr->block_size) return "row length";
        if (t->n_bytes != n / tr->block_size * tr->block_bytes) return "n_bytes";
        if (t->offset % g->alignment) return "offset alignment";
        if (!gb_inside(img, size, t->data, t->n_bytes)) return "tensor data outside image";
        if ((uint64_t)(t->data - img) != g->data_offset + t->offset) return "data pointer";
        if (!gb_inside(img, size, t->name.ptr, t->name.len) || !t->name.len) return "tensor name";
    }
    return NULL;
}

#endif
