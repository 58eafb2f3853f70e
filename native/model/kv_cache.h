/* The KV cache of a context: for every layer, the key and value rows of each evaluated position,
 * F32 or F16, laid out [kv head][position][head_dim]: a head's keys (and values) are one
 * contiguous run, which attention (attention/attention.h) streams through in decode with the
 * hardware prefetcher's help (position-major rows sat a 4 KiB stride apart on Bonsai, one page
 * per key, which the prefetchers do not cross and whose lines share a few L1 sets). Allocated
 * once for n_ctx positions; its pages are touched only as positions fill. Only
 * this file writes it: the forward pass stores each new position's rows here, and imported blocks
 * land here. Rows at or past the context's n_past are stale and get overwritten by later evals. */
#ifndef BN_KV_CACHE_H
#define BN_KV_CACHE_H

#include <stddef.h>
#include "model/engine.h"

typedef struct bn_kv_cache {
    bn_kv_type type;
    int n_layer;
    int n_ctx, n_head_kv, head_dim;
    void **k, **v;         /* per layer [n_head_kv][n_ctx][head_dim] of F32 or fp16 */
} bn_kv_cache;

/* Room for n_ctx positions of every layer of a model with hyperparameters hp. On failure kv is
 * left empty (bn_kv_cache_free is still safe). */
int bn_kv_cache_init(bn_kv_cache *kv, const bn_hparams *hp, int n_ctx, bn_kv_type type, char *err, size_t errlen);
void bn_kv_cache_free(bn_kv_cache *kv);
/* Stores the key row k and value row v ([n_head_kv][head_dim] F32) of layer il at position pos,
 * converted to the cache's type. */
void bn_kv_cache_store(bn_kv_cache *kv, int il, int pos, const float *k, const float *v);
/* Elements of a layer's array from one position to the next and from one kv head to the next:
 * the layout, for attention to read the cache by. */
static inline size_t bn_kv_cache_pos_stride(const bn_kv_cache *kv) { return (size_t)kv->head_dim; }
static inline size_t bn_kv_cache_head_stride(const bn_kv_cache *kv) { return (size_t)kv->n_ctx * kv->head_dim; }

/* Blocks: the rows of n consecutive positions of every layer in the layout model/engine.h
 * documents (layer after layer, its n key rows, then its n value rows, a row being one position's
 * [n_head_kv][head_dim] entries as the cache holds them), whatever the cache's own order. */

/* Bytes of a block of n positions (n <= the cache's n_ctx, so it fits in size_t). */
size_t bn_kv_cache_block_bytes(const bn_kv_cache *kv, int n);
/* Copies the rows of positions [pos, pos + n) into dst (bn_kv_cache_block_bytes(kv, n) bytes).
 * The range is the caller's to check against the filled positions. */
void bn_kv_cache_export(const bn_kv_cache *kv, int pos, int n, void *dst);
/* Writes the block src of n positions at positions [pos, pos + n), which must be within n_ctx. */
void bn_kv_cache_import(bn_kv_cache *kv, int pos, int n, const void *src);

#endif
