/* The KV cache: its allocation, every write to it, and blocks of its rows in and out. */
#include "model/kv_cache.h"

#include <stdlib.h>
#include <string.h>
#include "core/common.h"
#include "quants/quants.h"

static size_t elem_bytes(bn_kv_type type) { return type == BN_KV_F16 ? sizeof(uint16_t) : sizeof(float); }

void bn_kv_cache_free(bn_kv_cache *kv) {
    for (int il = 0; kv->k && il < kv->n_layer; il++) {
        free(kv->k[il]);
        free(kv->v[il]);
    }
    free(kv->k);
    free(kv->v);
    memset(kv, 0, sizeof *kv);
}

/* Pages are touched only as positions fill (malloc, not calloc-and-clear), so a large n_ctx
 * costs address space first and memory as the conversation grows. */
int bn_kv_cache_init(bn_kv_cache *kv, const bn_hparams *hp, int n_ctx, bn_kv_type type, char *err, size_t errlen) {
    memset(kv, 0, sizeof *kv);
    if (type != BN_KV_F32 && type != BN_KV_F16) return bn_fail(err, errlen, "unknown KV cache type %d", (int)type);
    kv->type = type;
    kv->n_layer = hp->n_layer;
    kv->n_ctx = n_ctx;
    kv->n_head_kv = hp->n_head_kv;
    kv->head_dim = hp->head_dim;
    uint64_t bytes;
    if (!bn_mul_u64((uint64_t)n_ctx, (uint64_t)hp->n_head_kv * hp->head_dim * elem_bytes(type), &bytes) ||
        bytes > SIZE_MAX)
        return bn_fail(err, errlen, "KV cache for %d positions is too large", n_ctx);
    kv->k = calloc((size_t)hp->n_layer, sizeof(void *));
    kv->v = calloc((size_t)hp->n_layer, sizeof(void *));
    int ok = kv->k && kv->v;
    for (int il = 0; ok && il < hp->n_layer; il++) {
        kv->k[il] = malloc((size_t)bytes);
        kv->v[il] = malloc((size_t)bytes);
        ok = kv->k[il] && kv->v[il];
    }
    if (!ok) {
        bn_kv_cache_free(kv);
        return bn_fail(err, errlen, "out of memory for the KV cache (%d positions, %llu bytes per layer)", n_ctx,
                       (unsigned long long)(2 * bytes));
    }
    return 0;
}

/* Element offset of (kv head h, position pos) in a layer's array. */
static size_t entry(const bn_kv_cache *kv, int h, int pos) {
    return (size_t)h * bn_kv_cache_head_stride(kv) + (size_t)pos * bn_kv_cache_pos_stride(kv);
}

/* Copies position pos of one layer's keys or values into (to_cache) or out of the cache, from or
 * to a row of n_head_kv * head_dim elements of the cache's type (row order: head after head). */
static void row_copy(const bn_kv_cache *kv, const void *cache, int pos, const void *row, int to_cache) {
    const size_t bytes = (size_t)kv->head_dim * elem_bytes(kv->type);
    for (int h = 0; h < kv->n_head_kv; h++) {
        uint8_t *c = (uint8_t *)cache + entry(kv, h, pos) * elem_bytes(kv->type), *r = (uint8_t *)row + h * bytes;
        memcpy(to_cache ? c : r, to_cache ? r : c, bytes);
    }
}

static void store_row(const bn_kv_cache *kv, void *cache, int pos, const float *src) {
    for (int h = 0; h < kv->n_head_kv; h++) {
        const float *x = src + (size_t)h * kv->head_dim;
        void *dst = (uint8_t *)cache + entry(kv, h, pos) * elem_bytes(kv->type);
        if (kv->type == BN_KV_F32) {
            memcpy(dst, x, (size_t)kv->head_dim * sizeof(float));
            continue;
        }
        for (int i = 0; i < kv->head_dim; i++) ((uint16_t *)dst)[i] = bn_fp32_to_fp16(x[i]);
    }
}

void bn_kv_cache_store(bn_kv_cache *kv, int il, int pos, const float *k, const float *v) {
    store_row(kv, kv->k[il], pos, k);
    store_row(kv, kv->v[il], pos, v);
}

/* Bytes of n rows (positions) of one layer's keys (or values). */
static size_t rows_bytes(const bn_kv_cache *kv, int n) {
    return (size_t)n * kv->n_head_kv * kv->head_dim * elem_bytes(kv->type);
}

size_t bn_kv_cache_block_bytes(const bn_kv_cache *kv, int n) {
    /* The cache holds 2 * n_layer arrays of n_ctx rows at once, so this product of no more rows fits. */
    return 2 * (size_t)kv->n_layer * rows_bytes(kv, n);
}

/* A block is 2 * n_layer parts (layer il's keys are part 2 il, its values part 2 il + 1), each
 * n rows from pos: the layer array a part comes from or goes to. */
static void *part_array(const bn_kv_cache *kv, int part) { return (part % 2 ? kv->v : kv->k)[part / 2]; }

void bn_kv_cache_export(const bn_kv_cache *kv, int pos, int n, void *dst) {
    const size_t len = rows_bytes(kv, n), row = rows_bytes(kv, 1);
    for (int part = 0; part < 2 * kv->n_layer; part++)
        for (int i = 0; i < n; i++) row_copy(kv, part_array(kv, part), pos + i, (uint8_t *)dst + part * len + i * row, 0);
}

void bn_kv_cache_import(bn_kv_cache *kv, int pos, int n, const void *src) {
    const size_t len = rows_bytes(kv, n), row = rows_bytes(kv, 1);
    for (int part = 0; part < 2 * kv->n_layer; part++)
        for (int i = 0; i < n; i++)
            row_copy(kv, part_array(kv, part), pos + i, (const uint8_t *)src + part * len + i * row, 1);
}
