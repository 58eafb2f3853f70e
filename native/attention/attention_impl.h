/* Private: one attention tile and its per-ISA kernels (attention.c deals tiles and holds the
 * scalar reference; arch/x86/attention_avx2.c and arch/arm/attention_neon.c the SIMD versions). */
#ifndef BN_ATTENTION_IMPL_H
#define BN_ATTENTION_IMPL_H

#include <stddef.h>
#include <stdint.h>
#include "arch/arch.h"
#include "kernels/isa.h"

/* 16 rows: every K and V row a tile reads is used 16 times from L1 (8 tokens of a 2-head group
 * on Bonsai), while a tile's scores stay small; more rows cost causal waste and balance. */
#define BN_ATTN_TILE_ROWS 16
/* Keys per K/V block: the SIMD tiles sweep a block's rows several times (once per chunk of
 * outputs), so a block stays in L1: 16 KiB of F32 for 128-wide heads, with the tile's queries. */
#define BN_ATTN_KEY_BLOCK 32
/* Score rows are padded to multiples of this (the widest vector), past n_kv with zero weights. */
#define BN_ATTN_PAD 8

/* Query rows of one KV head; row r sees keys 0..n_kv[r] - 1, n_kv non-decreasing in r. */
typedef struct bn_attn_tile {
    int n_rows, head_dim;
    const float *q[BN_ATTN_TILE_ROWS];
    float *out[BN_ATTN_TILE_ROWS];
    int n_kv[BN_ATTN_TILE_ROWS];
    const void *k, *v;   /* this head's entry at position 0 */
    size_t kv_stride;    /* elements from one position to the next */
    int kv_f16;
    float scale;         /* 1 / sqrt(head_dim) */
    float *s;            /* scores then weights: n_rows rows of s_stride floats */
    size_t s_stride;     /* >= n_kv[n_rows - 1] rounded up to BN_ATTN_PAD */
    float *pack;         /* BN_ATTN_KEY_BLOCK * head_dim floats: a prefill's K or V rows as F32
                          * (AVX2) */
} bn_attn_tile;

typedef void (*bn_attn_tile_fn)(const bn_attn_tile *t);

/* The reference: plain loops, libm expf. */
void bn_attn_tile_scalar(const bn_attn_tile *t);

#if defined(BN_HAVE_X86_KERNELS)
/* AVX2 + FMA + F16C: fp16 converted in registers, fused multiply-adds in 8 lanes, polynomial exp. */
void bn_attn_tile_avx2(const bn_attn_tile *t);
#endif

#if defined(BN_HAVE_ARM_KERNELS)
/* Baseline armv8-a NEON (fcvtl for fp16), any board: the AVX2 tile's arithmetic, the same bits. */
void bn_attn_tile_neon(const bn_attn_tile *t);
#endif

/* The tile kernel of the model's kernel path for this head size: the path's own, or that of the
 * nearest path it extends (bn_isa_parent) that has one for this head size; scalar at the end. */
bn_attn_tile_fn bn_attn_tile_kernel(bn_isa isa, int head_dim);

#endif
