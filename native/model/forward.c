/* The forward pass of llama/qwen3 decoders over a batch of tokens: every projection is one
 * bn_matmul over all tokens of the batch (q/k/v, and gate/up, as one group each), so each weight
 * read serves every token; attention (attention/attention.c) runs over tiles of query rows on the
 * thread pool, each sequence of the batch reading its own KV cache (kv_cache.c), into which each
 * layer's new keys and values are stored first. A batch is one context's tokens, or the tokens of
 * several contexts decoded together (batch.c). */
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

int bn_workspace_init(bn_workspace *ws, int n_threads, int n_ctx) {
    memset(ws, 0, sizeof *ws);
    ws->max_threads = n_threads > 1 ? n_threads : 1;
    ws->n_ctx = n_ctx;
    ws->pool = bn_threadpool_new(ws->max_threads);
    return ws->pool ? 0 : -1;
}

void bn_workspace_free(bn_workspace *ws) {
    if (ws->pool) bn_threadpool_free(ws->pool);
    bn_scratch_free(&ws->scratch);
    bn_scratch_free(&ws->converted);
    bn_acts_free(&ws->acts);
    memset(ws, 0, sizeof *ws);
}

/* Grows the activation block to hold n tokens and the pool's threads' attention rows. */
static int acts_reserve(bn_workspace *ws, const bn_model *m, int n) {
    bn_acts *a = &ws->acts;
    if (a->cap >= n && a->scores_threads >= ws->max_threads && a->scores_ctx >= ws->n_ctx) return 0;
    const bn_hparams *hp = &m->hp;
    const size_t q = (size_t)hp->n_head * hp->head_dim, kv = (size_t)hp->n_head_kv * hp->head_dim;
    const size_t per_token[] = {hp->n_embd, hp->n_embd, hp->n_embd, q, kv, kv, q, hp->n_ff, hp->n_ff, hp->n_rot};
    float **arrays[] = {&a->x, &a->xb, &a->xb2, &a->q, &a->k, &a->v, &a->att, &a->gate, &a->up, &a->rope};
    const int n_arrays = sizeof arrays / sizeof *arrays;
    size_t total = bn_attn_scratch_floats(ws->n_ctx, hp->head_dim) * ws->max_threads;
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
    a->scores_threads = ws->max_threads;
    a->scores_ctx = ws->n_ctx;
    return 0;
}

/* One forward pass: the workspace, the model, and where each token of the batch belongs. */
typedef struct pass {
    bn_workspace *ws;
    const bn_model *m;
    const bn_seq *seqs;
    int n_seqs;
    int pos[BN_EVAL_CHUNK];             /* token t's position in its sequence's context */
    bn_kv_cache *kv[BN_EVAL_CHUNK];     /* and that context's KV cache */
} pass;

static int matmul(const pass *p, const bn_matrix *w, const float *x, int n, float *y) {
    return bn_matmul(p->ws->pool, p->m->isa, w, x, n, y, &p->ws->scratch);
}

/* Several projections of the same x in one pass of the pool (fewer wake-ups per token). */
static int matmul_group(const pass *p, const bn_matrix *const *w, float *const *y, int n_mats, const float *x, int n) {
    return bn_matmul_group(p->ws->pool, p->m->isa, w, y, n_mats, x, n, &p->ws->scratch);
}

/* ---- element-wise steps on the pool ----
 * In a long prefill, norms and RoPE on the calling thread alone would leave the other threads
 * idle for a noticeable share of the time; in decode they are short. Each runs over contiguous
 * ranges (bn_parallel_ranges), aligned so that threads do not share cache lines. SwiGLU (thousands
 * of expf) runs in the pass of the gate and up products (ffn_block). */

/* Floats per cache line: element-wise ranges start on one. */
#define BN_LINE_FLOATS 16
/* Tokens below which per-token steps stay on the calling thread. */
#define BN_MIN_PARALLEL_TOKENS 4
/* Additions below which the residual add stays on the calling thread. */
#define BN_MIN_PARALLEL_ADD 65536

typedef struct pair_arg {
    float *y;
    const float *x;
} pair_arg;

static void add_range(const void *arg, long begin, long end) {
    const pair_arg *p = arg;
    bn_add(p->y + begin, p->x + begin, end - begin);
}

static void residual_add(const pass *p, float *y, const float *x, long n) {
    const pair_arg arg = {y, x};
    bn_parallel_ranges(p->ws->pool, n, BN_LINE_FLOATS, BN_MIN_PARALLEL_ADD, add_range, &arg);
}

typedef struct norm_arg {
    float *y;
    const float *x, *w;
    int width;
    float eps;
} norm_arg;

static void norm_range(const void *arg, long begin, long end) {
    const norm_arg *p = arg;
    bn_rmsnorm_rows(p->y + (size_t)begin * p->width, p->x + (size_t)begin * p->width, p->w, (int)(end - begin),
                    p->width, p->eps);
}

/* RMSNorm of n rows of width floats. */
static void norm_rows(const pass *p, float *y, const float *x, const float *w, int n, int width, float eps) {
    const norm_arg arg = {y, x, w, width, eps};
    bn_parallel_ranges(p->ws->pool, n, 1, BN_MIN_PARALLEL_TOKENS, norm_range, &arg);
}

/* Below this many multiply-adds attention runs on the calling thread: small ones (a tiny model, a
 * short context) finish sooner there than a round trip through the pool takes. */
#define BN_MIN_PARALLEL_ATTN_MACS (1 << 17)

/* The attention of every sequence of the batch, each against its own cache, in one pool pass. */
typedef struct attn_batch {
    const bn_attn *tasks;
    int n;
} attn_batch;

static void attn_worker(void *arg, int ith, int nth) {
    const attn_batch *b = arg;
    for (int s = 0; s < b->n; s++) bn_attn_run(&b->tasks[s], ith, nth);
}

typedef struct position_arg {
    const pass *p;
    const bn_layer *l;
    int il;
} position_arg;

/* Per-head QK-norm (qwen3) and RoPE of the projected q and k of tokens [begin, end), then their
 * k and v into the cache. */
static void position_range(const void *arg, long begin, long end) {
    const position_arg *pa = arg;
    const pass *p = pa->p;
    const bn_layer *l = pa->l;
    const int il = pa->il;
    const bn_hparams *hp = &p->m->hp;
    const bn_acts *a = &p->ws->acts;
    const int hd = hp->head_dim;
    for (long t = begin; t < end; t++) {
        const float *cs = a->rope + (size_t)t * hp->n_rot;
        float *q = a->q + (size_t)t * hp->n_head * hd;
        float *k = a->k + (size_t)t * hp->n_head_kv * hd;
        if (hp->qk_norm) {
            bn_rmsnorm_rows(q, q, l->q_norm, hp->n_head, hd, hp->rms_eps);
            bn_rmsnorm_rows(k, k, l->k_norm, hp->n_head_kv, hd, hp->rms_eps);
        }
        for (int h = 0; h < hp->n_head; h++) bn_rope_apply(q + h * hd, cs, hp->n_rot, hp->rope_neox);
        for (int h = 0; h < hp->n_head_kv; h++) bn_rope_apply(k + h * hd, cs, hp->n_rot, hp->rope_neox);
        bn_kv_cache_store(p->kv[t], il, p->pos[t], k, a->v + (size_t)t * hp->n_head_kv * hd);
    }
}

static void position_and_cache(const pass *p, const bn_layer *l, int il, int n) {
    const position_arg arg = {p, l, il};
    bn_parallel_ranges(p->ws->pool, n, 1, BN_MIN_PARALLEL_TOKENS, position_range, &arg);
}

static void attention(const pass *p, int il) {
    const bn_hparams *hp = &p->m->hp;
    bn_acts *a = &p->ws->acts;
    const size_t q_row = (size_t)hp->n_head * hp->head_dim;
    /* every task strides the scratch by the workspace's context size: the threads' shares of it
     * must not overlap whichever sequence each is working on */
    bn_attn tasks[BN_EVAL_CHUNK];
    int64_t macs = 0; /* query-key and weight-value multiply-adds */
    for (int s = 0; s < p->n_seqs; s++) {
        const bn_seq *q = &p->seqs[s];
        const bn_context *c = q->c;
        tasks[s] = (bn_attn){.q = a->q + q->first * q_row, .out = a->att + q->first * q_row,
                             .k = c->kv.k[il], .v = c->kv.v[il], .kv_pos_stride = bn_kv_cache_pos_stride(&c->kv),
                             .kv_head_stride = bn_kv_cache_head_stride(&c->kv), .kv_f16 = c->kv.type == BN_KV_F16,
                             .n = q->n, .p0 = c->n_past, .n_head = hp->n_head, .n_head_kv = hp->n_head_kv,
                             .head_dim = hp->head_dim, .n_ctx = p->ws->n_ctx, .isa = p->m->isa, .scratch = a->scores};
        macs += 2 * (int64_t)q->n * (c->n_past + q->n) * hp->n_head * hp->head_dim;
    }
    const attn_batch batch = {tasks, p->n_seqs};
    bn_parallel_for(p->ws->pool, macs, BN_MIN_PARALLEL_ATTN_MACS, attn_worker, (void *)&batch);
}

static int attention_block(const pass *p, const bn_layer *l, int il, int n) {
    const bn_hparams *hp = &p->m->hp;
    bn_acts *a = &p->ws->acts;
    norm_rows(p, a->xb, a->x, l->attn_norm, n, hp->n_embd, hp->rms_eps);
    const bn_matrix *qkv[] = {&l->wq, &l->wk, &l->wv};
    float *const qkv_out[] = {a->q, a->k, a->v};
    if (matmul_group(p, qkv, qkv_out, 3, a->xb, n)) return -1;
    position_and_cache(p, l, il, n);
    attention(p, il);
    if (matmul(p, &l->wo, a->att, n, a->xb2)) return -1;
    residual_add(p, a->x, a->xb2, (long)n * hp->n_embd);
    return 0;
}

/* SwiGLU of rows [r0, r1) of gate and up, for every token, converted at once into the down
 * product's activations. */
typedef struct glu_arg {
    float *gate;
    const float *up;
    int n, n_ff;
    const bn_act_form *form;
    uint8_t *act;
} glu_arg;

static void glu_rows(void *arg, int64_t r0, int64_t r1) {
    const glu_arg *g = arg;
    for (int t = 0; t < g->n; t++) {
        float *gate = g->gate + (size_t)t * g->n_ff;
        bn_swiglu(gate + r0, g->up + (size_t)t * g->n_ff + r0, r1 - r0);
        bn_act_convert(g->form, gate, r0, r1, g->act + (size_t)t * g->form->row_bytes);
    }
}

/* One pass of the pool for gate, up, SwiGLU and the conversion of its result, then one for down. */
static int ffn_block(const pass *p, const bn_layer *l, int n) {
    const bn_hparams *hp = &p->m->hp;
    bn_workspace *ws = p->ws;
    bn_acts *a = &ws->acts;
    norm_rows(p, a->xb, a->x, l->ffn_norm, n, hp->n_embd, hp->rms_eps);
    bn_act_form form;
    if (bn_act_form_get(&l->w_down, p->m->isa, &form)) return -1;
    const glu_arg glu = {a->gate, a->up, n, hp->n_ff, &form, bn_scratch_reserve(&ws->converted, form.row_bytes * n)};
    if (!glu.act) return -1;
    const bn_matrix *gate_up[] = {&l->w_gate, &l->w_up};
    float *const gate_up_out[] = {a->gate, a->up};
    const bn_rows_then then = {glu_rows, (void *)&glu, form.block};
    if (bn_matmul_group_then(ws->pool, p->m->isa, gate_up, gate_up_out, 2, a->xb, n, &ws->scratch, &then)) return -1;
    if (bn_matmul_converted(ws->pool, p->m->isa, &l->w_down, glu.act, n, a->xb2)) return -1;
    residual_add(p, a->x, a->xb2, (long)n * hp->n_embd);
    return 0;
}

/* Final norm of the requested rows (gathered into xb) and the output projection. */
static int output_logits(const pass *p, const int *rows, int n_out, float *logits) {
    const bn_hparams *hp = &p->m->hp;
    bn_acts *a = &p->ws->acts;
    for (int i = 0; i < n_out; i++)
        bn_rmsnorm(a->xb + (size_t)i * hp->n_embd, a->x + (size_t)rows[i] * hp->n_embd, p->m->output_norm,
                   hp->n_embd, hp->rms_eps);
    return matmul(p, &p->m->output, a->xb, n_out, logits);
}

int bn_forward(bn_workspace *ws, const bn_model *m, const bn_seq *seqs, int n_seqs, const int32_t *tokens, int n,
               const int *out_rows, int n_out, float *logits, char *err, size_t errlen) {
    const bn_hparams *hp = &m->hp;
    if (acts_reserve(ws, m, n)) return bn_fail(err, errlen, "out of memory for %d tokens of activations", n);
    pass p = {.ws = ws, .m = m, .seqs = seqs, .n_seqs = n_seqs};
    for (int s = 0; s < n_seqs; s++)
        for (int i = 0; i < seqs[s].n; i++) {
            p.pos[seqs[s].first + i] = seqs[s].c->n_past + i;
            p.kv[seqs[s].first + i] = &seqs[s].c->kv;
        }
    bn_acts *a = &ws->acts;
    for (int t = 0; t < n; t++) {
        bn_matrix_get_row(&m->tok_embd, tokens[t], a->x + (size_t)t * hp->n_embd);
        bn_rope_cache(a->rope + (size_t)t * hp->n_rot, p.pos[t], hp->n_rot, hp->rope_base);
    }
    for (int il = 0; il < hp->n_layer; il++)
        if (attention_block(&p, &m->layers[il], il, n) || ffn_block(&p, &m->layers[il], n))
            return bn_fail(err, errlen, "out of memory in a matrix product");
    if (n_out > 0 && output_logits(&p, out_rows, n_out, logits))
        return bn_fail(err, errlen, "out of memory in a matrix product");
    return 0;
}
