/* The KV cache: its allocation and every write to it. */
#include "model/kv_cache.h"

#include <stdlib.h>
#include <string.h>
#include "core/common.h"
#include "quants/quants.h"

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
    kv->row_elems = (size_t)hp->n_head_kv * hp->head_dim;
    const uint64_t elem = type == BN_KV_F16 ? 2 : 4;
    uint64_t bytes;
    if (!bn_mul_u64((uint64_t)n_ctx, (uint64_t)kv->row_elems * elem, &bytes) || bytes > SIZE_MAX)
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

static void store_row(const bn_kv_cache *kv, void *cache, int pos, const float *src) {
    const size_t n = kv->row_elems;
    if (kv->type == BN_KV_F32) {
        memcpy((float *)cache + (size_t)pos * n, src, n * sizeof(float));
        return;
    }
    uint16_t *dst = (uint16_t *)cache + (size_t)pos * n;
    for (size_t i = 0; i < n; i++) dst[i] = bn_fp32_to_fp16(src[i]);
}

void bn_kv_cache_store(bn_kv_cache *kv, int il, int pos, const float *k, const float *v) {
    store_row(kv, kv->k[il], pos, k);
    store_row(kv, kv->v[il], pos, v);
}
