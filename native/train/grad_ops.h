/* The training pass's building blocks: each op's forward and its backward, in F32, on one
 * sequence of T positions stored row-major ([T][n]). Backward functions ADD into their gradient
 * outputs (dx, dw), so a tensor used twice (the tied embedding) sums both uses, and callers
 * zero gradients once per step. Every backward is checked against finite differences in
 * tests/test_train_grad.c. */
#ifndef BN_GRAD_OPS_H
#define BN_GRAD_OPS_H

#include <stdint.h>

/* y[t][o] = sum_i x[t][i] * w[o][i]     (x: [T][in], w: [out][in], y: [T][out]) */
void bn_linear_fwd(float *y, const float *x, const float *w, int T, int in, int out);
/* dx += dy w; dw += dy^T x. Either of dx, dw may be NULL when not wanted. */
void bn_linear_bwd(float *dx, float *dw, const float *dy, const float *x, const float *w, int T, int in, int out);

/* y[t] = x[t] * r[t] * w, r[t] = 1 / sqrt(mean(x[t]^2) + eps); r is saved for the backward. */
void bn_rmsnorm_fwd(float *y, float *r, const float *x, const float *w, int T, int n, float eps);
void bn_rmsnorm_bwd(float *dx, float *dw, const float *dy, const float *x, const float *r, const float *w, int T, int n);

/* cos/sin table for positions [0, T): cs[(t * half + i) * 2] = cos(t * base^(-2i/head_dim)), +1 = sin. */
void bn_rope_table(float *cs, int T, int head_dim, float base);
/* Rotates adjacent pairs (2i, 2i+1) of every head of x ([T][heads * head_dim]) in place, as
 * llama.cpp's normal RoPE; inverse = 1 applies the transpose (the backward of the rotation). */
void bn_rope_apply_seq(float *x, const float *cs, int T, int heads, int head_dim, int inverse);

/* Causal attention with grouped KV heads. q: [T][heads * hd], k, v: [T][kv_heads * hd],
 * out: [T][heads * hd], probs: [heads][T][T] (row t holds positions 0..t; the rest is zero).
 * scratch: BN_ATTENTION_SCRATCH(T, hd) floats. */
#define BN_ATTENTION_SCRATCH(T, hd) (4 * (int64_t)(T) * (hd) + (T))
void bn_attention_fwd(float *out, float *probs, const float *q, const float *k, const float *v,
                      int T, int heads, int kv_heads, int hd, float *scratch);
/* Adds dq, dk, dv. */
void bn_attention_bwd(float *dq, float *dk, float *dv, const float *dout, const float *probs,
                      const float *q, const float *k, const float *v, int T, int heads, int kv_heads, int hd,
                      float *scratch);

/* h = silu(g) * u over n entries. */
void bn_swiglu_fwd(float *h, const float *g, const float *u, int64_t n);
void bn_swiglu_bwd(float *dg, float *du, const float *dh, const float *g, const float *u, int64_t n);

/* Loss of one position's logits z[V]: kl_weight * KL(p_teacher || softmax(z)) +
 * ce_weight * -log softmax(z)[target], times scale. teacher_logits may be NULL (no KL term).
 * Writes dz (overwrites) = d(loss)/dz and returns the position's NLL of target (for reporting);
 * *kl gets the KL term before weighting. */
double bn_distill_loss(float *dz, const float *z, const float *teacher_logits, int target, int V,
                       float kl_weight, float ce_weight, float scale, double *kl);

/* Q1_0 semantics on one row-major matrix with rows of `n` (a multiple of 128): every block of 128
 * becomes sign(w) * d, d = mean |w| rounded to fp16 exactly as the GGUF stores it (w >= 0 is +). */
void bn_sign_quantize(float *dst, const float *src, int64_t rows, int64_t n);

#endif
