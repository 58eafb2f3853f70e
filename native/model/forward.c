/* The forward pass of llama/qwen3 decoders over a batch of tokens: every projection is one
 * bn_matmul over all tokens of the batch (q/k/v, and gate/up, as one group each); attention
 * (attention/attention.c) runs over tiles of query rows on the thread pool, reading the KV cache
 * (kv_cache.c) that each layer's new keys and values are stored into first. */
#include <stdlib.h>
#include <string.h>
#include "attention/attention.h"
#include "core/common.h"
#include "model/engine_internal.h"
#include "model/ops.h"

void bn_acts_free(bn_acts *a) {
    free(a->x);  /* every array lives in the one block that starts at x */
    memset(a, 0, sizeof *a);
}

/* Grows the activation block to hold n tokens and the pool's threads' attention rows. */
static int acts_reserve(bn_context *c, int n) {
    bn_acts *a = &c->acts;
    if (a->cap >= n && a->scores_threads >= c->max_threads) return 0;
    const bn_hparams *hp = &c->m->hp;
    const size_t q = (size_t)hp->n_head * hp->head_dim, kv = (size_t)hp->n_head_kv * hp->head_dim;
    const size_t per_token[] = {hp->n_embd, hp->n_embd, hp->n_embd, q, kv, kv, q, hp->n_ff, hp->n_ff, hp->n_rot};
    float **arrays[] = {&a->x, &a->xb, &a->xb2, &a->q, &a->k, &a->v, &a->att, &a->gate, &a->up, &a->rope};
    const int n_arrays = sizeof arrays / sizeof *arrays;
    size_t total = bn_attn_scratch_floats(c->n_ctx, hp->head_dim) * c->max_threads;
    for (int i = 0; i < n_arrays; i++) total += per_token[i] * n;
    float *block = malloc(total * sizeof(float));
    if (!block) return -1;
    bn_acts_free(a);
    for (int i = 0; i < n_arrays; i++) {
        *arrays[i] = block;
        block += per_token[i] * n;
    }
    a->scores = block;
    a->cap = n;
    a->scores_threads = c->max_threads;
    return 0;
}

static int matmul(bn_context *c, const bn_matrix *w, const float *x, int n, float *y) {
    return bn_matmul(c->pool, c->m->isa, w, x, n, y, &c->scratch);
}

/* Several projections of the same x in one pass of the pool (fewer wake-ups per token). */
static int matmul_group(bn_context *c, const bn_matrix *const *w, float *const *y, int n_mats, const float *x, int n) {
    return bn_matmul_group(c->pool, c->m->isa, w, y, n_mats, x, n, &c->scratch);
}

/* ---- element-wise steps on the pool ----
 * In a long prefill, norms, RoPE and SwiGLU on the calling thread alone would leave the other
 * threads idle for a noticeable share of the time; in decode they are short, and only SwiGLU
 * (thousands of expf) pays for a round trip through the pool. Each runs over contiguous ranges
 * (bn_parallel_ranges), aligned so that threads do not share cache lines. */

/* Floats per cache line: element-wise ranges start on one. */
#define BN_LINE_FLOATS 16
/* Tokens below which per-token steps stay on the calling thread. */
#define BN_MIN_PARALLEL_TOKENS 4
/* SwiGLU values (one expf each) below which it stays on the calling thread. */
#define BN_MIN_PARALLEL_SWIGLU 4096
/* Additions below which the residual add stays on the calling thread. */
#define BN_MIN_PARALLEL_ADD 65536

typedef struct pair_arg {
    float *y;
    const float *x;
} pair_arg;

static void swiglu_range(const void *arg, long begin, long end) {
    const pair_arg *p = arg;
    bn_swiglu(p->y + begin, p->x + begin, end - begin);
}

static void add_range(const void *arg, long begin, long end) {
    const pair_arg *p = arg;
    bn_add(p->y + begin, p->x + begin, end - begin);
}

static void swiglu(bn_context *c, float *gate, const float *up, long n) {
    const pair_arg arg = {gate, up};
    bn_parallel_ranges(c->pool, n, BN_LINE_FLOATS, BN_MIN_PARALLEL_SWIGLU, swiglu_range, &arg);
}

static void residual_add(bn_context *c, float *y, const float *x, long n) {
    const pair_arg arg = {y, x};
    bn_parallel_ranges(c->pool, n, BN_LINE_FLOATS, BN_MIN_PARALLEL_ADD, add_range, &arg);
}

typedef struct norm_arg {
    float *y;
    const float *x, *w;
    int width;
    float eps;
} norm_arg;

static void norm_range(const void *arg, long begin, long end) {
    const norm_arg *p = arg;
    for (long t = begin; t < end; t++)
        bn_rmsnorm(p->y + (size_t)t * p->width, p->x + (size_t)t * p->width, p->w, p->width, p->eps);
}

/* RMSNorm of n rows of width floats. */
static void norm_rows(bn_context *c, float *y, const float *x, const float *w, int n, int width, float eps) {
    const norm_arg arg = {y, x, w, width, eps};
    bn_parallel_ranges(c->pool, n, 1, BN_MIN_PARALLEL_TOKENS, norm_range, &arg);
}

/* Below this many multiply-adds attention runs on the calling thread: small ones (a tiny model, a
 * short context) finish sooner there than a round trip through the pool takes. */
#define BN_MIN_PARALLEL_ATTN_MACS (1 << 17)

static void attn_worker(void *arg, int ith, int nth) { bn_attn_run(arg, ith, nth); }

typedef struct position_arg {
    bn_context *c;
    const bn_layer *l;
    int il;
} position_arg;

/* Per-head QK-norm (qwen3) and RoPE of the projected q and k of tokens [begin, end), then their
 * k and v into the cache. */
static void position_range(const void *arg, long begin, long end) {
    const position_arg *p = arg;
    bn_context *c = p->c;
    const bn_layer *l = p->l;
    const int il = p->il;
    const bn_hparams *hp = &c->m->hp;
    const bn_acts *a = &c->acts;
    const int hd = hp->head_dim;
    for (long t = begin; t < end; t++) {
        const float *cs = a->rope + (size_t)t * hp->n_rot;
        float *q = a->q + (size_t)t * hp->n_head * hd;
        float *k = a->k + (size_t)t * hp->n_head_kv * hd;
        for (int h = 0; h < hp->n_head; h++) {
            if (hp->qk_norm) bn_rmsnorm(q + h * hd, q + h * hd, l->q_norm, hd, hp->rms_eps);
            bn_rope_apply(q + h * hd, cs, hp->n_rot, hp->rope_neox);
        }
        for (int h = 0; h < hp->n_head_kv; h++) {
            if (hp->qk_norm) bn_rmsnorm(k + h * hd, k + h * hd, l->k_norm, hd, hp->rms_eps);
            bn_rope_apply(k + h * hd, cs, hp->n_rot, hp->rope_neox);
        }
        bn_kv_cache_store(&c->kv, il, c->n_past + (int)t, k, a->v + (size_t)t * hp->n_head_kv * hd);
    }
}

static void position_and_cache(bn_context *c, const bn_layer *l, int il, int n) {
    const position_arg arg = {c, l, il};
    bn_parallel_ranges(c->pool, n, 1, BN_MIN_PARALLEL_TOKENS, position_range, &arg);
}

static int attention_block(bn_context *c, const bn_layer *l, int il, int n) {
    const bn_hparams *hp = &c->m->hp;
    bn_acts *a = &c->acts;
    norm_rows(c, a->xb, a->x, l->attn_norm, n, hp->n_embd, hp->rms_eps);
    const bn_matrix *qkv[] = {&l->wq, &l->wk, &l->wv};
    float *const qkv_out[] = {a->q, a->k, a->v};
    if (matmul_group(c, qkv, qkv_out, 3, a->xb, n)) return -1;
    position_and_cache(c, l, il, n);
    const bn_attn task = {a->q, a->att, c->kv.k[il], c->kv.v[il], c->kv.type == BN_KV_F16, n, c->n_past,
                          hp->n_head, hp->n_head_kv, hp->head_dim, c->n_ctx, c->m->isa, a->scores};
    /* query-key and weight-value multiply-adds */
    const int64_t macs = 2 * (int64_t)n * (c->n_past + n) * hp->n_head * hp->head_dim;
    bn_parallel_for(c->pool, macs, BN_MIN_PARALLEL_ATTN_MACS, attn_worker, (void *)&task);
    if (matmul(c, &l->wo, a->att, n, a->xb2)) return -1;
    residual_add(c, a->x, a->xb2, (long)n * hp->n_embd);
    return 0;
}

static int ffn_block(bn_context *c, const bn_layer *l, int n) {
    const bn_hparams *hp = &c->m->hp;
    bn_acts *a = &c->acts;
    norm_rows(c, a->xb, a->x, l->ffn_norm, n, hp->n_embd, hp->rms_eps);
    const bn_matrix *gate_up[] = {&l->w_gate, &l->w_up};
    float *const gate_up_out[] = {a->gate, a->up};
    if (matmul_group(c, gate_up, gate_up_out, 2, a->xb, n)) return -1;
    swiglu(c, a->gate, a->up, (long)n * hp->n_ff);
    if (matmul(c, &l->w_down, a->gate, n, a->xb2)) return -1;
    residual_add(c, a->x, a->xb2, (long)n * hp->n_embd);
    return 0;
}

/* Final norm of the requested rows (gathered into xb) and the output projection. */
static int output_logits(bn_context *c, const int *rows, int n_out, float *logits) {
    const bn_hparams *hp = &c->m->hp;
    bn_acts *a = &c->acts;
    for (int i = 0; i < n_out; i++)
        bn_rmsnorm(a->xb + (size_t)i * hp->n_embd, a->x + (size_t)rows[i] * hp->n_embd, c->m->output_norm,
                   hp->n_embd, hp->rms_eps);
    return matmul(c, &c->m->output, a->xb, n_out, logits);
}

int bn_forward(bn_context *c, const int32_t *tokens, int n, const int *out_rows, int n_out,
               float *logits, char *err, size_t errlen) {
    const bn_model *m = c->m;
    const bn_hparams *hp = &m->hp;
    if (acts_reserve(c, n)) return bn_fail(err, errlen, "out of memory for %d tokens of activations", n);
    bn_acts *a = &c->acts;
    for (int t = 0; t < n; t++) {
        bn_matrix_get_row(&m->tok_embd, tokens[t], a->x + (size_t)t * hp->n_embd);
        bn_rope_cache(a->rope + (size_t)t * hp->n_rot, c->n_past + t, hp->n_rot, hp->rope_base);
    }
    for (int il = 0; il < hp->n_layer; il++)
        if (attention_block(c, &m->layers[il], il, n) || ffn_block(c, &m->layers[il], n))
            return bn_fail(err, errlen, "out of memory in a matrix product");
    if (n_out > 0 && output_logits(c, out_rows, n_out, logits))
        return bn_fail(err, errlen, "out of memory in a matrix product");
    return 0;
}
