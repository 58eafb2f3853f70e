/* Private layout of models and contexts, shared by model.c (binding), context.c (contexts and
 * batched evaluation), batch.c (contexts decoded together), forward.c (the forward pass) and
 * generate.c. Not part of the public
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
    int locked;               /* the weights are locked in memory (bn_model_lock) */
};

/* Whether the forward pass reads a tensor where it lies (in the GGUF mapping, or decoded from a
 * pack to memory for good): all but the matrices the kernel path repacks (a pack's are decoded
 * only while being repacked). The token embedding is always read in place (rows are looked up),
 * even when it is also the output. */
int bn_model_reads_in_place(const bn_gguf_tensor *t, bn_isa isa);
/* Undoes bn_model_lock (lock.c). */
void bn_model_unlock(bn_model *m);

/* Per-eval activations for up to cap tokens, [cap][width] each. */
typedef struct bn_acts {
    int cap;
    float *x, *xb, *xb2;      /* residual stream and two [n_embd] temporaries */
    float *q, *k, *v, *att;   /* [n_head*hd], [n_kv*hd], [n_kv*hd], [n_head*hd] */
    float *gate, *up;         /* [n_ff] */
    float *rope;              /* [n_rot] cos/sin per token */
    float *scores;            /* attention scratch: bn_attn_scratch_floats(n_ctx, head_dim) per thread */
    int scores_threads, scores_ctx;
} bn_acts;

/* What a forward pass runs with besides a KV cache: the thread pool, bn_matmul's activation
 * quantization buffers and the activations. A context owns one, or shares its group's (batch.c):
 * the group runs one forward pass at a time, so one workspace serves all its contexts. */
typedef struct bn_workspace {
    bn_threadpool *pool;
    int max_threads;
    int n_ctx;                  /* the longest context it serves: sizes the attention scratch */
    bn_scratch scratch;
    bn_scratch converted;       /* the down product's activations, converted in the gate/up pass */
    bn_acts acts;
} bn_workspace;

int bn_workspace_init(bn_workspace *ws, int n_threads, int n_ctx);
void bn_workspace_free(bn_workspace *ws);

typedef struct bn_group bn_group;

/* Most tokens one forward call processes; longer evals are split (bounds scratch memory). */
#define BN_EVAL_CHUNK 256

struct bn_context {
    bn_model *m;
    int n_ctx, n_past;
    bn_kv_cache kv;
    int32_t *tokens;            /* [n_ctx] */
    bn_workspace own;           /* unused while the context belongs to a group */
    bn_workspace *ws;           /* &own, or the group's */
    bn_group *group;            /* contexts whose forward passes are batched together, or NULL */
    int group_depth;            /* nested generate/eval calls of this context inside the group */
    /* speculative decoding (generate.c): running ms of an eval of n tokens, 0 until measured;
     * kept from one generation to the next, since it depends on the machine, not the text */
    double eval_ms[BN_EVAL_CHUNK + 1];
    double draft_ms;            /* running ms a draft model takes per drafted token */
    bn_context *drafter;        /* a context of a smaller model that drafts, or NULL: prompt lookup */
    atomic_int paused;          /* set from any thread: generation waits between tokens */
};


/* One sequence of a forward pass's batch: tokens [first, first + n) of the batch go to context c
 * at positions c->n_past.., and attend to c's KV cache only. */
typedef struct bn_seq {
    bn_context *c;
    int first, n;
} bn_seq;

/* Runs the model with workspace ws on the batch tokens[0..n) (n <= BN_EVAL_CHUNK, already
 * validated), split into n_seqs sequences in order, storing each token's K/V in its sequence's
 * cache; does not advance any n_past. For each i < n_out, writes the logits of batch token
 * out_rows[i] to logits + i*n_vocab. A token's results do not depend on the other sequences in
 * the batch. 0, or -1 on allocation failure. */
int bn_forward(bn_workspace *ws, const bn_model *m, const bn_seq *seqs, int n_seqs, const int32_t *tokens, int n,
               const int *out_rows, int n_out, float *logits, char *err, size_t errlen);
void bn_acts_free(bn_acts *a);

/* ---- groups (batch.c): contexts whose forward passes run together ----
 * A context of a group that is inside a generation or an eval has entered the group. Its forward
 * passes wait until every entered member has one to run (or has left), and then one of them runs
 * them all as one batch on the group's workspace: each weight read serves every member. Members
 * not inside a call hold nobody up. Without a group, each of these is a no-op. */

/* Makes c a member of other's group (created with other's workspace if other has none). */
int bn_group_join(bn_context *c, bn_context *other, char *err, size_t errlen);
/* On free: c leaves its group; the last member frees the group. */
void bn_group_leave_for_good(bn_context *c);
/* Around a generation or an eval; nested calls of one context count once. */
void bn_group_enter(bn_context *c);
void bn_group_leave(bn_context *c);
/* A forward pass of c's tokens[0..n) (as bn_forward: rows relative to them, logits [n_out][n_vocab]),
 * run in a batch with the other entered members' passes. */
int bn_group_forward(bn_context *c, const int32_t *tokens, int n, const int *rows, int n_out, float *logits,
                     char *err, size_t errlen);

#endif
