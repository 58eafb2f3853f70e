/* A llama-style decoder as the training pass sees it: the shape, where each tensor lives in one
 * flat F32 parameter buffer (named as llama.cpp's GGUF names them), the activations a forward
 * pass keeps for its backward, and the two passes over one sequence. The same code runs the
 * float teacher (forward only) and the student (on sign-quantized weights, see trainer.c). */
#ifndef BN_TRANSFORMER_H
#define BN_TRANSFORMER_H

#include <stddef.h>
#include <stdint.h>

typedef struct bn_train_shape {
    int vocab, dim, hidden, layers, heads, kv_heads, head_dim;
    int tied; /* the output matrix is token_embd */
    float rope_base, norm_eps;
} bn_train_shape;

/* Tensors per layer, in this order after token_embd, output_norm and (untied) output. */
enum {
    BN_T_ATTN_NORM, BN_T_Q, BN_T_K, BN_T_V, BN_T_O, BN_T_FFN_NORM, BN_T_GATE, BN_T_UP, BN_T_DOWN,
    BN_T_PER_LAYER
};

typedef struct bn_train_tensor {
    char name[40];     /* GGUF name, e.g. "blk.0.attn_q.weight" */
    int64_t offset;    /* in floats, into the parameter buffer */
    int64_t cols;      /* row length (GGUF ne[0]) */
    int64_t rows;      /* 1 for norm vectors */
} bn_train_tensor;

typedef struct bn_train_layout {
    bn_train_tensor *tensors;
    int n_tensors;
    int first_layer_tensor; /* index of blk.0.attn_norm */
    int64_t n_params;
} bn_train_layout;

/* Checks the shape (positive sizes, heads divisible by kv_heads, even head_dim) and builds the
 * layout. 0, or -1 with a message. */
int bn_train_layout_init(bn_train_layout *layout, const bn_train_shape *s, char *err, size_t errlen);
void bn_train_layout_free(bn_train_layout *layout);
int bn_train_find_tensor(const bn_train_layout *layout, const char *name);

/* Everything one sequence's forward keeps, and the backward's scratch. */
typedef struct bn_train_acts bn_train_acts;

bn_train_acts *bn_train_acts_new(const bn_train_shape *s, int T);
void bn_train_acts_free(bn_train_acts *a);
/* Logits of the last forward, [T][vocab]. */
float *bn_train_acts_logits(bn_train_acts *a);

/* Runs tokens[0..T) (T <= the acts' T) through the model; logits land in the acts. */
void bn_train_forward(const bn_train_shape *s, const bn_train_layout *layout, const float *params,
                      const int32_t *tokens, int T, bn_train_acts *a);
/* Adds d(loss)/d(params) into grads, given dlogits [T][vocab] for the last forward's tokens. */
void bn_train_backward(const bn_train_shape *s, const bn_train_layout *layout, const float *params,
                       float *grads, const int32_t *tokens, int T, const float *dlogits, bn_train_acts *a);

#endif
