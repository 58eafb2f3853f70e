/* The inference engine: a model (weights bound from a GGUF file) and contexts (a KV cache,
 * a thread pool, the tokens evaluated so far). Architectures: llama and qwen3. */
#ifndef BN_ENGINE_H
#define BN_ENGINE_H

#include <stdint.h>
#include <stddef.h>
#include "gguf/gguf.h"
#include "kernels/kernels.h"
#include "model/sampler.h"

typedef enum bn_arch { BN_ARCH_LLAMA = 0, BN_ARCH_QWEN3 = 1 } bn_arch;

typedef struct bn_hparams {
    bn_arch arch;
    int n_vocab, n_embd, n_layer, n_head, n_head_kv, head_dim, n_ff, n_ctx_train;
    int n_rot;             /* rotary dimensions per head (default head_dim) */
    int rope_neox;         /* 1: rotate pairs (i, i + n_rot/2) (qwen*); 0: adjacent pairs (llama) */
    int qk_norm;           /* per-head RMSNorm of q and k before RoPE (qwen3) */
    int tied_output;       /* output = token_embd */
    float rope_base;       /* default 10000 */
    float rms_eps;
} bn_hparams;

typedef struct bn_model_params {
    const char *kernels;   /* NULL/"" = best for this CPU; else a bn_isa name (overrides BONSAI_KERNELS) */
    const char *image;     /* NULL, or the runtime image file to run from, built when unusable (model/image.h) */
    const char *image_key; /* what the weights are, as the image records it (e.g. the pack's identity) */
} bn_model_params;

/* What became of bn_model_params.image at load. */
typedef enum bn_image_state {
    BN_IMAGE_OFF = 0,      /* none was asked for */
    BN_IMAGE_USED,         /* mapped in place: nothing was decoded or repacked */
    BN_IMAGE_WRITTEN,      /* built by this load (the note says why the file there was not used) */
    BN_IMAGE_NOT_WRITTEN,  /* could not be written (the note says why); the model runs all the same */
} bn_image_state;

typedef struct bn_model bn_model;

int bn_model_load(const char *path, const bn_model_params *p, bn_model **out, char *err, size_t errlen);
/* Same, from an already-parsed GGUF; the model takes ownership of g (freed by bn_model_free). */
int bn_model_from_gguf(bn_gguf *g, const bn_model_params *p, bn_model **out, char *err, size_t errlen);
void bn_model_free(bn_model *m);
/* The image's fate at load, and a note (why an image was not used or not written; may be ""). */
bn_image_state bn_model_image_state(const bn_model *m, const char **note);
const bn_hparams *bn_model_hparams(const bn_model *m);
const bn_gguf *bn_model_gguf(const bn_model *m);
bn_isa bn_model_isa(const bn_model *m);
/* The model's kernel path as bn_kernels_label reports it for the bulk of its weights
 * ("avx2 (scalar kernels)" for TQ1_0 weights on avx2). */
void bn_model_kernels_label(const bn_model *m, char *buf, size_t len);
/* Locks the weights the forward pass reads in memory (mlock), so that memory pressure never pages
 * them out or drops their file pages: a token would then wait for the SD card. Returns 0 with
 * *bytes the bytes locked (also when they already were); -1, nothing locked, with a message naming
 * the bytes needed and the limit when the kernel refuses: beyond RLIMIT_MEMLOCK (LimitMEMLOCK= in
 * a unit, ulimit -l), short of memory, or not permitted. bn_model_free unlocks them. */
int bn_model_lock(bn_model *m, uint64_t *bytes, char *err, size_t errlen);

typedef enum bn_kv_type { BN_KV_F32 = 0, BN_KV_F16 = 1 } bn_kv_type;

typedef struct bn_context_params {
    int n_ctx;             /* <= 0: min(model's training context, 4096) */
    bn_kv_type kv_type;
    int n_threads;         /* >= 1; ignored with batch_with (the group's threads serve it) */
    /* NULL, or a context of the same model to decode together with: the generations and evals
     * that run at the same time on contexts batched together share each forward pass (every
     * weight read serves all of them), and each gets the same results as it would alone. The
     * group's thread count is set through any member, while none of them runs a call; a context
     * joins while no member of the group runs one. */
    struct bn_context *batch_with;
} bn_context_params;

typedef struct bn_context bn_context;

int bn_context_new(bn_model *m, const bn_context_params *p, bn_context **out, char *err, size_t errlen);
void bn_context_free(bn_context *c);
int bn_context_n_ctx(const bn_context *c);
/* Tokens evaluated so far (their KV entries are in the cache). */
int bn_context_n_past(const bn_context *c);
const int32_t *bn_context_tokens(const bn_context *c);
/* Forgets positions >= n_past (KV entries and tokens). */
void bn_context_truncate(bn_context *c, int n_past);
void bn_context_set_threads(bn_context *c, int n_threads);
/* Safe while an eval or a generation runs on another thread (a hot board sheds load between
 * tokens): from the next pass of the thread pool on, at most n_threads of the context's threads
 * work (1 <= n <= the count it was made or last set with; results do not depend on it). */
void bn_context_limit_threads(bn_context *c, int n_threads);
/* Safe from any thread: while paused, a running generation waits before its next token (a
 * cancel still ends it). */
void bn_context_pause(bn_context *c, int paused);

/* Evaluates tokens[0..n) at positions n_past.. and appends them. logits: NULL, or
 * [n][n_vocab] when all_logits, else [n_vocab] for the last token. Fails (leaving the context
 * unchanged) when a token id is out of range or the context would overflow. */
int bn_context_eval(bn_context *c, const int32_t *tokens, int n, float *logits, int all_logits,
                    char *err, size_t errlen);

/* KV blocks: the cache rows of a run of positions, to store and import into a context that holds
 * the same tokens before them, instead of evaluating those tokens again. A block is the rows of
 * every layer, layer after layer: its n key rows, then its n value rows; a row is n_head_kv *
 * head_dim elements of the context's KV type (F32, or IEEE binary16 as raw 16 bits), host byte
 * order. An imported block gives the bits an eval of its tokens would have written, so the logits
 * that follow are bit-identical, provided it comes from a context of the same model file, KV type
 * and kernel path (the attention kernels of two paths round differently), and it is imported
 * where it was exported from: after the same tokens, at the same positions (the keys carry their
 * positions' RoPE). The thread count and the context size do not matter. */

/* Bytes of the block of n_tokens positions; 0 when n_tokens is outside [0, n_ctx]. */
size_t bn_context_kv_bytes(const bn_context *c, int n_tokens);
/* Copies the block of positions [pos, pos + n) into dst, whose size dst_len must be
 * bn_context_kv_bytes(c, n). Fails when the positions are not all evaluated (pos + n > n_past). */
int bn_context_kv_export(const bn_context *c, int pos, int n, void *dst, size_t dst_len, char *err, size_t errlen);
/* Appends n positions at n_past as if tokens[0..n) had been evaluated there: their K/V rows from
 * the block src (src_len must be bn_context_kv_bytes(c, n)) and their ids, so bn_generate reuses
 * them as a prompt prefix. Fails (leaving the context unchanged) when a token id is out of range,
 * the context would overflow or src_len is wrong. */
int bn_context_kv_import(bn_context *c, const int32_t *tokens, int n, const void *src, size_t src_len, char *err,
                         size_t errlen);

typedef enum bn_finish {
    BN_FINISH_STOP = 0,      /* a stop token was produced (it is reported, then generation ends) */
    BN_FINISH_LENGTH = 1,    /* max_tokens reached, or the context is full */
    BN_FINISH_CANCELLED = 2, /* *cancel became non-zero or the callback asked to stop */
} bn_finish;

typedef struct bn_generate_stats {
    int n_prompt;            /* prompt tokens given */
    int n_prompt_reused;     /* of those, already in the KV cache (common prefix) */
    int n_generated;
    int n_drafted;           /* speculative decoding: draft tokens checked, and of those accepted */
    int n_accepted;
    double prompt_ms, gen_ms;
    bn_finish finish;
} bn_generate_stats;

/* Speculative decoding with a draft model: drafter (a context of a smaller model with the same
 * vocabulary, or NULL for prompt lookup again) follows c's text and proposes its greedy
 * continuation. It is c's to use while c generates: no other call may run on it meanwhile. Fails
 * when the vocabularies differ. */
int bn_context_set_drafter(bn_context *c, bn_context *drafter, char *err, size_t errlen);

/* Called for each generated token, as soon as it is sampled; return non-zero to stop. */
typedef int (*bn_token_cb)(void *user, int32_t token);

/* Generates after prompt: reuses the longest common prefix of the context's tokens and prompt
 * (always re-evaluating at least the last prompt token), evaluates the rest, then samples up to
 * max_tokens tokens, stopping after a token in stop_ids. cancel is polled between tokens.
 * draft_max > 0 turns on speculative decoding by prompt lookup: up to draft_max tokens that
 * followed an earlier occurrence of the text's last few tokens (in the prompt or the text so far)
 * are evaluated with the next token in one batch and kept as far as the sampler accepts them.
 * The output is the same token for token as without drafts, for a sampling seed too. The
 * draft length follows what drafts gain on this machine and model: each round takes the length
 * with the most expected tokens per millisecond (from the acceptance so far and the measured cost
 * of a batch and of drafting), plain decoding included, so it turns itself off where drafts do
 * not pay. With a drafter (bn_context_set_drafter), a smaller model drafts instead of the lookup. */
int bn_generate(bn_context *c, bn_sampler *s, const int32_t *prompt, int n_prompt, int max_tokens,
                const int32_t *stop_ids, int n_stop, int draft_max, bn_token_cb cb, void *user,
                const volatile int *cancel, bn_generate_stats *stats, char *err, size_t errlen);

#endif
