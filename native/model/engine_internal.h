/* Private layout of models and contexts, shared by model.c (binding), context.c (contexts and
 * batched evaluation), forward.c (the forward pass) and generate.c. Not part of the public
 * contract (engine.h). */
#ifndef BN_ENGINE_INTERNAL_H
#define BN_ENGINE_INTERNAL_H

#include <stdatomic.h>
#include "model/engine.h"
#include "pack/bnz.h"
#include "model/kv_cache.h"
#include "core/threadpool.h"

typedef struct bn_layer {
    const float *attn_norm, *ffn_norm;
    const float *q_norm, *k_norm;          /* qwen3 only, [head_dim] */
    bn_matrix wq, wk, wv, wo;
    bn_matrix w_gate, w_up, w_down;
} bn_layer;

/* A matrix and the tensor it was bound to (the loader of a pack decodes that tensor for it). */
typedef struct bn_matrix_source {
    const bn_matrix *w;
    uint64_t tensor;
} bn_matrix_source;

struct bn_model {
    bn_hparams hp;
    bn_gguf *gguf;            /* owns the mapping every matrix points into (a pack's: pack owns it) */
    bn_pack *pack;            /* the .bnz the model was loaded from, or NULL */
    uint8_t *resident;        /* a pack's tensors read in place (norms, embeddings), decoded */
    bn_matrix_source *sources;
    int n_sources;
    struct bn_image *image;   /* the runtime image the weights are read from, or NULL */
    bn_image_state image_state;
    char image_note[256];
    bn_isa isa;
    bn_matrix tok_embd;       /* rows looked up, never multiplied: left unpacked */
    bn_matrix output;         /* same data as tok_embd when tied, prepared separately */
    const float *output_norm;
    bn_layer *layers;
    uint8_t *packed;          /* every matrix's repacked layout, in one allocation */
};

/* Per-eval activations for up to cap tokens, [cap][width] each. */
typedef struct bn_acts {
    int cap;
    float *x, *xb, *xb2;      /* residual stream and two [n_embd] temporaries */
    float *q, *k, *v, *att;   /* [n_head*hd], [n_kv*hd], [n_kv*hd], [n_head*hd] */
    float *gate, *up;         /* [n_ff] */
    float *rope;              /* [n_rot] cos/sin per token */
    float *scores;            /* attention scratch: bn_attn_scratch_floats(n_ctx, head_dim) per thread */
    int scores_threads;
} bn_acts;

struct bn_context {
    bn_model *m;
    int n_ctx, n_past;
    bn_kv_cache kv;
    int32_t *tokens;            /* [n_ctx] */
    bn_threadpool *pool;
    int max_threads;
    bn_scratch scratch;         /* bn_matmul's activation quantization buffers */
    bn_acts acts;
    atomic_int paused;          /* set from any thread: generation waits between tokens */
};

/* Most tokens one forward call processes; longer evals are split (bounds scratch memory). */
#define BN_EVAL_CHUNK 256

/* Runs the model on tokens[0..n) (n <= BN_EVAL_CHUNK, already validated) at positions
 * c->n_past.., storing their K/V; does not advance n_past. For each i < n_out, writes the logits
 * of token out_rows[i] to logits + i*n_vocab. 0, or -1 on allocation failure. */
int bn_forward(bn_context *c, const int32_t *tokens, int n, const int *out_rows, int n_out,
               float *logits, char *err, size_t errlen);
void bn_acts_free(bn_acts *a);

#endif
