/* Contexts: a KV cache (kv_cache.c), a workspace (its own, or its group's: batch.c), the evaluated
 * tokens, batched evaluation, and blocks of KV rows exported and imported. */
#include <stdlib.h>
#include <string.h>
#include "model/engine_internal.h"
#include "core/common.h"

int bn_context_new(bn_model *m, const bn_context_params *p, bn_context **out, char *err, size_t errlen) {
    *out = NULL;
    bn_context *c = calloc(1, sizeof *c);
    if (!c) return bn_fail(err, errlen, "out of memory");
    c->m = m;
    c->n_ctx = p->n_ctx > 0 ? p->n_ctx : (m->hp.n_ctx_train < 4096 ? m->hp.n_ctx_train : 4096);
    c->ws = &c->own;
    c->tokens = malloc((size_t)c->n_ctx * sizeof(int32_t));
    if (!c->tokens || (!p->batch_with && bn_workspace_init(&c->own, p->n_threads, c->n_ctx))) {
        bn_context_free(c);
        return bn_fail(err, errlen, "out of memory");
    }
    if (bn_kv_cache_init(&c->kv, &m->hp, c->n_ctx, p->kv_type, err, errlen) ||
        (p->batch_with && bn_group_join(c, p->batch_with, err, errlen))) {
        bn_context_free(c);
        return -1;
    }
    *out = c;
    return 0;
}

void bn_context_free(bn_context *c) {
    if (!c) return;
    bn_group_leave_for_good(c);
    bn_kv_cache_free(&c->kv);
    free(c->tokens);
    bn_workspace_free(&c->own);
    free(c);
}

int bn_context_n_ctx(const bn_context *c) { return c->n_ctx; }
int bn_context_n_past(const bn_context *c) { return c->n_past; }
const int32_t *bn_context_tokens(const bn_context *c) { return c->tokens; }

void bn_context_truncate(bn_context *c, int n_past) {
    /* Cache rows past n_past are simply overwritten by later evals. */
    if (n_past < 0) n_past = 0;
    if (n_past < c->n_past) c->n_past = n_past;
}

void bn_context_set_threads(bn_context *c, int n_threads) {
    bn_workspace *ws = c->ws;
    if (n_threads < 1) n_threads = 1;
    if (n_threads > ws->max_threads) {
        /* The pool cannot grow; replace it (between calls it is idle). */
        bn_threadpool *pool = bn_threadpool_new(n_threads);
        if (!pool) return; /* keep the current pool: fewer threads, still correct */
        bn_threadpool_free(ws->pool);
        ws->pool = pool;
        ws->max_threads = n_threads;
    }
    bn_threadpool_set_threads(ws->pool, n_threads);
}

void bn_context_limit_threads(bn_context *c, int n_threads) { bn_threadpool_set_threads(c->ws->pool, n_threads); }

void bn_context_pause(bn_context *c, int paused) { atomic_store(&c->paused, paused != 0); }

static int validate_eval(const bn_context *c, const int32_t *tokens, int n, char *err, size_t errlen) {
    if (n < 0 || (n > 0 && !tokens)) return bn_fail(err, errlen, "invalid token count %d", n);
    const int n_vocab = c->m->hp.n_vocab;
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= n_vocab)
            return bn_fail(err, errlen, "token id %d at index %d is out of range [0, %d)", (int)tokens[i], i,
                           n_vocab);
    if (n > c->n_ctx - c->n_past)
        return bn_fail(err, errlen, "context overflow: %d tokens in the cache + %d new > context size %d",
                       c->n_past, n, c->n_ctx);
    return 0;
}

/* Records tokens[0..n) as evaluated at n_past; the caller has stored their K/V rows there. */
static void append_tokens(bn_context *c, const int32_t *tokens, int n) {
    memcpy(c->tokens + c->n_past, tokens, (size_t)n * sizeof(int32_t));
    c->n_past += n;
}

/* One chunk of an eval: a forward pass of this context alone, or with its group's. */
static int forward_chunk(bn_context *c, const int32_t *tokens, int n, const int *rows, int n_out, float *logits,
                         char *err, size_t errlen) {
    if (c->group) return bn_group_forward(c, tokens, n, rows, n_out, logits, err, errlen);
    const bn_seq alone = {c, 0, n};
    return bn_forward(c->ws, c->m, &alone, 1, tokens, n, rows, n_out, logits, err, errlen);
}

int bn_context_eval(bn_context *c, const int32_t *tokens, int n, float *logits, int all_logits,
                    char *err, size_t errlen) {
    if (validate_eval(c, tokens, n, err, errlen)) return -1;
    bn_group_enter(c);
    const int n_past0 = c->n_past, n_vocab = c->m->hp.n_vocab;
    int rows[BN_EVAL_CHUNK];
    for (int off = 0; off < n; off += BN_EVAL_CHUNK) {
        const int nb = n - off < BN_EVAL_CHUNK ? n - off : BN_EVAL_CHUNK;
        int n_out = 0;
        float *out = logits;
        if (logits && all_logits) {
            for (; n_out < nb; n_out++) rows[n_out] = n_out;
            out = logits + (size_t)off * n_vocab;
        } else if (logits && off + nb == n) {
            rows[n_out++] = nb - 1;
        }
        if (forward_chunk(c, tokens + off, nb, rows, n_out, out, err, errlen)) {
            c->n_past = n_past0; /* forget the chunks already evaluated: the call failed as a whole */
            bn_group_leave(c);
            return -1;
        }
        append_tokens(c, tokens + off, nb);
    }
    bn_group_leave(c);
    return 0;
}

int bn_context_set_drafter(bn_context *c, bn_context *drafter, char *err, size_t errlen) {
    if (drafter && (drafter == c || drafter->m->hp.n_vocab != c->m->hp.n_vocab))
        return bn_fail(err, errlen, drafter == c ? "a context cannot draft for itself"
                                                 : "a draft model needs the same vocabulary (%d tokens, not %d)",
                       c->m->hp.n_vocab, drafter->m->hp.n_vocab);
    c->drafter = drafter;
    return 0;
}

size_t bn_context_kv_bytes(const bn_context *c, int n_tokens) {
    return n_tokens < 0 || n_tokens > c->n_ctx ? 0 : bn_kv_cache_block_bytes(&c->kv, n_tokens);
}

int bn_context_kv_export(const bn_context *c, int pos, int n, void *dst, size_t dst_len, char *err, size_t errlen) {
    if (pos < 0 || n < 0 || n > c->n_past - pos)
        return bn_fail(err, errlen, "KV export of %d positions from %d: only positions [0, %d) are evaluated", n, pos,
                       c->n_past);
    const size_t bytes = bn_context_kv_bytes(c, n);
    if (dst_len != bytes || (n > 0 && !dst))
        return bn_fail(err, errlen, "KV export of %d positions needs a buffer of %zu bytes, got %zu", n, bytes,
                       dst ? dst_len : 0);
    if (n > 0) bn_kv_cache_export(&c->kv, pos, n, dst);
    return 0;
}

int bn_context_kv_import(bn_context *c, const int32_t *tokens, int n, const void *src, size_t src_len, char *err,
                         size_t errlen) {
    if (validate_eval(c, tokens, n, err, errlen)) return -1;
    const size_t bytes = bn_context_kv_bytes(c, n);
    if (src_len != bytes || (n > 0 && !src))
        return bn_fail(err, errlen, "KV import of %d positions needs %zu bytes, got %zu", n, bytes, src ? src_len : 0);
    if (n == 0) return 0;
    bn_kv_cache_import(&c->kv, c->n_past, n, src);
    append_tokens(c, tokens, n);
    return 0;
}
