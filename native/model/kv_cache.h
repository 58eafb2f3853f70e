/* The KV cache of a context: for every layer, the key and value rows of each evaluated position,
 * F32 or F16, laid out [position][kv head][head_dim] as attention (attention/attention.h) reads
 * them. Allocated once for n_ctx positions; its pages are touched only as positions fill. Only
 * this file writes it: the forward pass stores each new position's rows here, and imported blocks
 * land here. Rows at or past the context's n_past are stale and get overwritten by later evals. */
#ifndef BN_KV_CACHE_H
#define BN_KV_CACHE_H

#include <stddef.h>
#include "model/engine.h"

typedef struct bn_kv_cache {
    bn_kv_type type;
    int n_layer;
    size_t row_elems;      /* n_head_kv * head_dim: one position of one layer */
    void **k, **v;         /* per layer [n_ctx][row_elems] of F32 or fp16 */
} bn_kv_cache;

/* Room for n_ctx positions of every layer of a model with hyperparameters hp. On failure kv is
 * left empty (bn_kv_cache_free is still safe). */
int bn_kv_cache_init(bn_kv_cache *kv, const bn_hparams *hp, int n_ctx, bn_kv_type type, char *err, size_t errlen);
void bn_kv_cache_free(bn_kv_cache *kv);
/* Stores the key row k and value row v ([n_head_kv][head_dim] F32) of layer il at position pos,
 * converted to the cache's type. */
void bn_kv_cache_store(bn_kv_cache *kv, int il, int pos, const float *k, const float *v);

/* Blocks: the rows of n consecutive positions of every layer, exactly as the cache holds them, in
 * the layout model/engine.h documents (layer after layer, its n key rows, then its n value rows). */

/* Bytes of a block of n positions (n <= the cache's n_ctx, so it fits in size_t). */
size_t bn_kv_cache_block_bytes(const bn_kv_cache *kv, int n);
/* Copies the rows of positions [pos, pos + n) into dst (bn_kv_cache_block_bytes(kv, n) bytes).
 * The range is the caller's to check against the filled positions. */
void bn_kv_cache_export(const bn_kv_cache *kv, int pos, int n, void *dst);
/* Writes the block src of n positions at positions [pos, pos + n), which must be within n_ctx. */
void bn_kv_cache_import(bn_kv_cache *kv, int pos, int n, const void *src);

#endif
