/* Small F32 building blocks of the forward pass, each computed the way ggml's CPU backend does
 * (accumulation order and precision), so logits match llama.cpp within float rounding.
 * Kept free of model/context state so a backward pass can reuse them. */
#ifndef BN_OPS_H
#define BN_OPS_H

#include <stdint.h>

/* y = x / sqrt(mean(x^2) + eps) * w   (y may alias x; w may be NULL for no weight). */
void bn_rmsnorm(float *y, const float *x, const float *w, int n, float eps);
/* bn_rmsnorm of `rows` consecutive rows of n (a token's heads, a batch's tokens), the same bits;
 * faster than one call a row, since several rows' sums overlap. */
void bn_rmsnorm_rows(float *y, const float *x, const float *w, int rows, int n, float eps);

/* cos/sin of theta_i = pos * base^(-2i/n_rot) for i < n_rot/2: cs[2i] = cos, cs[2i+1] = sin. */
void bn_rope_cache(float *cs, int pos, int n_rot, float base);
/* Rotates the first n_rot dims of one head vector x in place. neox: pairs (i, i + n_rot/2);
 * else adjacent pairs (2i, 2i+1). */
void bn_rope_apply(float *x, const float *cs, int n_rot, int neox);

/* gate = silu(gate) * up, n entries (SwiGLU). */
void bn_swiglu(float *gate, const float *up, int64_t n);

/* y += x, n entries. */
void bn_add(float *y, const float *x, int64_t n);

#endif
