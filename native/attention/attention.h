/* Causal multi-head attention with grouped KV heads (GQA) over an F16 or F32 KV cache, for a
 * batch of query tokens (decode: one; prefill: many). The cache is any layout with a head's
 * entries contiguous: the engine's is model/kv_cache.h's [kv head][position][head_dim]. Work is
 * cut into tiles of up to BN_ATTN_TILE_ROWS query rows (the heads of one KV group, token after
 * token) that share each K and V row they read, and the tiles are dealt to threads by their
 * causal cost. A query row's result never depends on the tile it falls in or on the thread
 * count: the same tokens give the same bits whether they come in one batch, split across evals,
 * or one at a time. */
#ifndef BN_ATTENTION_H
#define BN_ATTENTION_H

#include <stddef.h>
#include "kernels/isa.h"

typedef struct bn_attn {
    const float *q;      /* [n][n_head][head_dim] queries, RoPE applied */
    float *out;          /* [n][n_head][head_dim] */
    const void *k, *v;   /* cache entries of kv head 0 at position 0; positions < p0 + n filled */
    size_t kv_pos_stride, kv_head_stride; /* elements from one position to the next, one kv head to the next */
    int kv_f16;          /* cache entries are fp16 (else F32) */
    int n, p0;           /* query t is at position p0 + t and sees positions 0..p0 + t */
    int n_head, n_head_kv, head_dim;
    int n_ctx;           /* at least p0 + n: sizes each thread's scratch */
    bn_isa isa;          /* the model's kernel path: picks the SIMD variant */
    float *scratch;      /* bn_attn_scratch_floats(n_ctx, head_dim) floats per thread, thread i's at i times that */
} bn_attn;

size_t bn_attn_scratch_floats(int n_ctx, int head_dim);

/* Thread ith of nth computes its share of a's tiles (every thread of a pool job calls this). */
void bn_attn_run(const bn_attn *a, int ith, int nth);

#endif
