/* The decoder's forward over one sequence, keeping what the backward needs, and the backward. */
#include "train/transformer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "train/grad_ops.h"

int bn_train_layout_init(bn_train_layout *layout, const bn_train_shape *s, char *err, size_t errlen) {
    memset(layout, 0, sizeof *layout);
    if (s->vocab < 2 || s->dim < 2 || s->hidden < 1 || s->layers < 1 || s->heads < 1 || s->kv_heads < 1 ||
        s->head_dim < 2 || s->head_dim % 2 || s->heads % s->kv_heads || s->vocab > (1 << 24) ||
        s->dim > 65536 || s->hidden > 262144 || s->layers > 256 || s->heads > 1024 || s->head_dim > 1024) {
        return bn_fail(err, errlen, "bad model shape: vocab %d dim %d hidden %d layers %d heads %d/%d head_dim %d",
                       s->vocab, s->dim, s->hidden, s->layers, s->heads, s->kv_heads, s->head_dim);
    }
    int n = 2 + !s->tied + s->layers * BN_T_PER_LAYER;
    layout->tensors = calloc((size_t)n, sizeof *layout->tensors);
    if (!layout->tensors) return bn_fail(err, errlen, "out of memory for the tensor table");
    int64_t off = 0;
    int i = 0;
#define ADD(fmt, arg, c, r)                                                                        \
    do {                                                                                           \
        bn_train_tensor *t = &layout->tensors[i++];                                                \
        snprintf(t->name, sizeof t->name, fmt, arg);                                               \
        t->offset = off, t->cols = (c), t->rows = (r);                                             \
        off += (int64_t)(c) * (r);                                                                 \
    } while (0)
    const int qd = s->heads * s->head_dim, kd = s->kv_heads * s->head_dim;
    ADD("token_embd.weight%s", "", s->dim, s->vocab);
    ADD("output_norm.weight%s", "", s->dim, 1);
    if (!s->tied) ADD("output.weight%s", "", s->dim, s->vocab);
    layout->first_layer_tensor = i;
    for (int l = 0; l < s->layers; l++) {
        ADD("blk.%d.attn_norm.weight", l, s->dim, 1);
        ADD("blk.%d.attn_q.weight", l, s->dim, qd);
        ADD("blk.%d.attn_k.weight", l, s->dim, kd);
        ADD("blk.%d.attn_v.weight", l, s->dim, kd);
        ADD("blk.%d.attn_output.weight", l, qd, s->dim);
        ADD("blk.%d.ffn_norm.weight", l, s->dim, 1);
        ADD("blk.%d.ffn_gate.weight", l, s->dim, s->hidden);
        ADD("blk.%d.ffn_up.weight", l, s->dim, s->hidden);
        ADD("blk.%d.ffn_down.weight", l, s->hidden, s->dim);
    }
#undef ADD
    layout->n_tensors = i;
    layout->n_params = off;
    return 0;
}

void bn_train_layout_free(bn_train_layout *layout) {
    free(layout->tensors);
    memset(layout, 0, sizeof *layout);
}

int bn_train_find_tensor(const bn_train_layout *layout, const char *name) {
    for (int i = 0; i < layout->n_tensors; i++) {
        if (strcmp(layout->tensors[i].name, name) == 0) return i;
    }
    return -1;
}

typedef struct {
    float *x, *xn1, *r1, *q, *k, *v, *probs, *att, *xmid, *xn2, *r2, *g, *u, *h;
} layer_acts;

struct bn_train_acts {
    int T;
    layer_acts *layer;
    float *x_final, *xf, *rf, *logits, *rope;
    /* backward scratch */
    float *dx, *dxmid, *dxn, *datt, *dq, *dk, *dv, *dh, *dg, *du, *dxf, *attn_scratch;
    float *block;
};

bn_train_acts *bn_train_acts_new(const bn_train_shape *s, int T) {
    bn_train_acts *a = calloc(1, sizeof *a);
    if (!a) return NULL;
    a->T = T;
    a->layer = calloc((size_t)s->layers, sizeof *a->layer);
    const int64_t D = s->dim, F = s->hidden, Q = (int64_t)s->heads * s->head_dim, K = (int64_t)s->kv_heads * s->head_dim;
    const int64_t per_layer = T * (D * 4 + 2 + Q * 2 + K * 2 + F * 3) + (int64_t)s->heads * T * T;
    const int64_t rest = T * (D * 2 + 1 + s->vocab) + (int64_t)T * s->head_dim +
                         T * (D * 4 + Q * 2 + K * 2 + F * 3) + BN_ATTENTION_SCRATCH(T, s->head_dim);
    a->block = calloc((size_t)(per_layer * s->layers + rest), sizeof(float));
    if (!a->layer || !a->block) {
        bn_train_acts_free(a);
        return NULL;
    }
    float *p = a->block;
#define TAKE(n) (p += (n), p - (n))
    for (int l = 0; l < s->layers; l++) {
        layer_acts *la = &a->layer[l];
        la->x = TAKE(T * D), la->xn1 = TAKE(T * D), la->r1 = TAKE(T);
        la->q = TAKE(T * Q), la->k = TAKE(T * K), la->v = TAKE(T * K);
        la->probs = TAKE((int64_t)s->heads * T * T), la->att = TAKE(T * Q);
        la->xmid = TAKE(T * D), la->xn2 = TAKE(T * D), la->r2 = TAKE(T);
        la->g = TAKE(T * F), la->u = TAKE(T * F), la->h = TAKE(T * F);
    }
    a->x_final = TAKE(T * D), a->xf = TAKE(T * D), a->rf = TAKE(T), a->logits = TAKE(T * s->vocab);
    a->rope = TAKE((int64_t)T * s->head_dim);
    a->dx = TAKE(T * D), a->dxmid = TAKE(T * D), a->dxn = TAKE(T * D), a->dxf = TAKE(T * D);
    a->datt = TAKE(T * Q), a->dq = TAKE(T * Q), a->dk = TAKE(T * K), a->dv = TAKE(T * K);
    a->dh = TAKE(T * F), a->dg = TAKE(T * F), a->du = TAKE(T * F), a->attn_scratch = TAKE(BN_ATTENTION_SCRATCH(T, s->head_dim));
#undef TAKE
    bn_rope_table(a->rope, T, s->head_dim, s->rope_base);
    return a;
}

void bn_train_acts_free(bn_train_acts *a) {
    if (!a) return;
    free(a->layer);
    free(a->block);
    free(a);
}

float *bn_train_acts_logits(bn_train_acts *a) { return a->logits; }

static const float *tensor(const bn_train_layout *layout, const float *params, int l, int which) {
    return params + layout->tensors[layout->first_layer_tensor + l * BN_T_PER_LAYER + which].offset;
}

static float *tensor_grad(const bn_train_layout *layout, float *grads, int l, int which) {
    return grads + layout->tensors[layout->first_layer_tensor + l * BN_T_PER_LAYER + which].offset;
}

static const float *output_matrix(const bn_train_shape *s, const bn_train_layout *layout, const float *params) {
    return params + layout->tensors[s->tied ? 0 : 2].offset;
}

void bn_train_forward(const bn_train_shape *s, const bn_train_layout *layout, const float *params,
                      const int32_t *tokens, int T, bn_train_acts *a) {
    const int D = s->dim, F = s->hidden, hd = s->head_dim;
    const int Q = s->heads * hd, K = s->kv_heads * hd;
    const float *embd = params + layout->tensors[0].offset;
    for (int t = 0; t < T; t++) memcpy(a->layer[0].x + (int64_t)t * D, embd + (int64_t)tokens[t] * D, sizeof(float) * D);
    for (int l = 0; l < s->layers; l++) {
        layer_acts *la = &a->layer[l];
        bn_rmsnorm_fwd(la->xn1, la->r1, la->x, tensor(layout, params, l, BN_T_ATTN_NORM), T, D, s->norm_eps);
        bn_linear_fwd(la->q, la->xn1, tensor(layout, params, l, BN_T_Q), T, D, Q);
        bn_linear_fwd(la->k, la->xn1, tensor(layout, params, l, BN_T_K), T, D, K);
        bn_linear_fwd(la->v, la->xn1, tensor(layout, params, l, BN_T_V), T, D, K);
        bn_rope_apply_seq(la->q, a->rope, T, s->heads, hd, 0);
        bn_rope_apply_seq(la->k, a->rope, T, s->kv_heads, hd, 0);
        bn_attention_fwd(la->att, la->probs, la->q, la->k, la->v, T, s->heads, s->kv_heads, hd, a->attn_scratch);
        bn_linear_fwd(la->xmid, la->att, tensor(layout, params, l, BN_T_O), T, Q, D);
        for (int64_t i = 0; i < (int64_t)T * D; i++) la->xmid[i] += la->x[i];
        bn_rmsnorm_fwd(la->xn2, la->r2, la->xmid, tensor(layout, params, l, BN_T_FFN_NORM), T, D, s->norm_eps);
        bn_linear_fwd(la->g, la->xn2, tensor(layout, params, l, BN_T_GATE), T, D, F);
        bn_linear_fwd(la->u, la->xn2, tensor(layout, params, l, BN_T_UP), T, D, F);
        bn_swiglu_fwd(la->h, la->g, la->u, (int64_t)T * F);
        float *next = l + 1 < s->layers ? a->layer[l + 1].x : a->x_final;
        bn_linear_fwd(next, la->h, tensor(layout, params, l, BN_T_DOWN), T, F, D);
        for (int64_t i = 0; i < (int64_t)T * D; i++) next[i] += la->xmid[i];
    }
    bn_rmsnorm_fwd(a->xf, a->rf, a->x_final, params + layout->tensors[1].offset, T, D, s->norm_eps);
    bn_linear_fwd(a->logits, a->xf, output_matrix(s, layout, params), T, D, s->vocab);
}

void bn_train_backward(const bn_train_shape *s, const bn_train_layout *layout, const float *params,
                       float *grads, const int32_t *tokens, int T, const float *dlogits, bn_train_acts *a) {
    const int D = s->dim, F = s->hidden, hd = s->head_dim;
    const int Q = s->heads * hd, K = s->kv_heads * hd;
    const size_t TD = sizeof(float) * T * D;
    float *d_output = grads + layout->tensors[s->tied ? 0 : 2].offset;

    memset(a->dxf, 0, TD);
    bn_linear_bwd(a->dxf, d_output, dlogits, a->xf, output_matrix(s, layout, params), T, D, s->vocab);
    memset(a->dx, 0, TD);
    bn_rmsnorm_bwd(a->dx, grads + layout->tensors[1].offset, a->dxf, a->x_final, a->rf,
                   params + layout->tensors[1].offset, T, D);
    for (int l = s->layers - 1; l >= 0; l--) {
        layer_acts *la = &a->layer[l];
        /* a->dx is d/d(this layer's output) = d/d(xmid) through the FFN residual ... */
        memcpy(a->dxmid, a->dx, TD);
        memset(a->dh, 0, sizeof(float) * T * F);
        bn_linear_bwd(a->dh, tensor_grad(layout, grads, l, BN_T_DOWN), a->dx, la->h, tensor(layout, params, l, BN_T_DOWN), T, F, D);
        memset(a->dg, 0, sizeof(float) * T * F);
        memset(a->du, 0, sizeof(float) * T * F);
        bn_swiglu_bwd(a->dg, a->du, a->dh, la->g, la->u, (int64_t)T * F);
        memset(a->dxn, 0, TD);
        bn_linear_bwd(a->dxn, tensor_grad(layout, grads, l, BN_T_GATE), a->dg, la->xn2, tensor(layout, params, l, BN_T_GATE), T, D, F);
        bn_linear_bwd(a->dxn, tensor_grad(layout, grads, l, BN_T_UP), a->du, la->xn2, tensor(layout, params, l, BN_T_UP), T, D, F);
        /* ... plus the FFN's path back through its norm */
        bn_rmsnorm_bwd(a->dxmid, tensor_grad(layout, grads, l, BN_T_FFN_NORM), a->dxn, la->xmid, la->r2,
                       tensor(layout, params, l, BN_T_FFN_NORM), T, D);
        memset(a->datt, 0, sizeof(float) * T * Q);
        bn_linear_bwd(a->datt, tensor_grad(layout, grads, l, BN_T_O), a->dxmid, la->att, tensor(layout, params, l, BN_T_O), T, Q, D);
        memset(a->dq, 0, sizeof(float) * T * Q);
        memset(a->dk, 0, sizeof(float) * T * K);
        memset(a->dv, 0, sizeof(float) * T * K);
        bn_attention_bwd(a->dq, a->dk, a->dv, a->datt, la->probs, la->q, la->k, la->v, T, s->heads, s->kv_heads, hd, a->attn_scratch);
        bn_rope_apply_seq(a->dq, a->rope, T, s->heads, hd, 1);
        bn_rope_apply_seq(a->dk, a->rope, T, s->kv_heads, hd, 1);
        memset(a->dxn, 0, TD);
        bn_linear_bwd(a->dxn, tensor_grad(layout, grads, l, BN_T_Q), a->dq, la->xn1, tensor(layout, params, l, BN_T_Q), T, D, Q);
        bn_linear_bwd(a->dxn, tensor_grad(layout, grads, l, BN_T_K), a->dk, la->xn1, tensor(layout, params, l, BN_T_K), T, D, K);
        bn_linear_bwd(a->dxn, tensor_grad(layout, grads, l, BN_T_V), a->dv, la->xn1, tensor(layout, params, l, BN_T_V), T, D, K);
        /* the attention residual passes dxmid through unchanged */
        memcpy(a->dx, a->dxmid, TD);
        bn_rmsnorm_bwd(a->dx, tensor_grad(layout, grads, l, BN_T_ATTN_NORM), a->dxn, la->x, la->r1,
                       tensor(layout, params, l, BN_T_ATTN_NORM), T, D);
    }
    float *d_embd = grads + layout->tensors[0].offset;
    for (int t = 0; t < T; t++) {
        float *row = d_embd + (int64_t)tokens[t] * D;
        const float *g = a->dx + (int64_t)t * D;
        for (int i = 0; i < D; i++) row[i] += g[i];
    }
}
