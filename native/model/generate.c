/* The generation loop: prompt prefix reuse, batched prompt evaluation, then sample/eval, with
 * speculative decoding by prompt lookup when asked for. */
#include <stdlib.h>
#include <time.h>
#include "model/engine_internal.h"
#include "model/sampler.h"
#include "core/common.h"

/* Drafts are the tokens after an earlier occurrence of the text's last NGRAM_MAX..NGRAM_MIN
 * tokens (the longest that occurs). One token matches too often by chance to be worth a batch. */
#define NGRAM_MAX 4
#define NGRAM_MIN 2
/* Rounds without a draft before drafting is tried again, once it stopped paying. */
#define DRAFT_RETRY_ROUNDS 32

static int common_prefix(const int32_t *a, int na, const int32_t *b, int nb) {
    int i = 0;
    while (i < na && i < nb && a[i] == b[i]) i++;
    return i;
}

/* Evaluates prompt[n_past..) into the context; logits of the last prompt token land in logits. */
static int eval_prompt(bn_context *c, const int32_t *prompt, int n_prompt, float *logits, int *n_reused,
                       char *err, size_t errlen) {
    int reused = common_prefix(bn_context_tokens(c), bn_context_n_past(c), prompt, n_prompt);
    if (reused == n_prompt) reused--; /* the last prompt token is re-evaluated for its logits */
    bn_context_truncate(c, reused);
    *n_reused = reused;
    return bn_context_eval(c, prompt + reused, n_prompt - reused, logits, 0, err, errlen);
}

/* One generation's fixed inputs and its counters. */
typedef struct gen {
    bn_context *c;
    bn_sampler *s;
    int max_tokens;
    const int32_t *stop_ids;
    int n_stop;
    bn_token_cb cb;
    void *user;
    const volatile int *cancel;
    bn_generate_stats *st;
} gen;

/* Reports a generated token; returns 1 when the generation ends with it (its finish set). */
static int emit(gen *g, int32_t tok) {
    g->st->n_generated++;
    if (g->cb && g->cb(g->user, tok)) {
        g->st->finish = BN_FINISH_CANCELLED;
        return 1;
    }
    for (int i = 0; i < g->n_stop; i++)
        if (g->stop_ids[i] == tok) {
            g->st->finish = BN_FINISH_STOP;
            return 1;
        }
    return g->st->n_generated == g->max_tokens; /* BN_FINISH_LENGTH, set at the start */
}

/* A paused context (a board too hot to go on) holds the generation here, between tokens;
 * returns 1 when it was cancelled instead. */
static int hold(gen *g) {
    const struct timespec step = {0, 20 * 1000 * 1000};
    while (atomic_load(&g->c->paused) && !(g->cancel && *g->cancel)) nanosleep(&step, NULL);
    if (!(g->cancel && *g->cancel)) return 0;
    g->st->finish = BN_FINISH_CANCELLED;
    return 1;
}

/* Samples and evaluates one token at a time; logits hold the last position's on entry. */
static int plain_loop(gen *g, float *logits, char *err, size_t errlen) {
    bn_context *c = g->c;
    for (;;) {
        if (hold(g)) return 0;
        const int32_t tok = bn_sampler_sample(g->s, logits, bn_context_tokens(c), bn_context_n_past(c));
        /* The last token needs no evaluation: nothing would read its logits. */
        if (emit(g, tok) || bn_context_n_past(c) == bn_context_n_ctx(c)) return 0;
        if (bn_context_eval(c, &tok, 1, logits, 0, err, errlen)) return -1;
    }
}

/* Up to max tokens that followed the most recent earlier occurrence of the last n tokens of
 * h[0..len) (the longest n that occurs, NGRAM_MAX down to NGRAM_MIN), copied to draft. */
static int lookup_draft(const int32_t *h, int len, int max, int32_t *draft) {
    for (int n = NGRAM_MAX; n >= NGRAM_MIN; n--) {
        if (len <= n) continue;
        const int32_t *tail = h + len - n;
        for (int i = len - n - 1; i >= 0; i--) {
            int k = 0;
            while (k < n && h[i + k] == tail[k]) k++;
            if (k < n) continue;
            int got = 0;
            for (int j = i + n; j < len && got < max; j++) draft[got++] = h[j];
            return got;
        }
    }
    return 0;
}

static int32_t argmax(const float *x, int n) {
    int32_t best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

/* The draft model's greedy continuation of h[0..len), max tokens into draft: its context first
 * takes up the text (keeping the prefix it already holds). No draft (0) when the text does not fit
 * its context; -1 on an eval error. logits: room for the vocabulary. */
static int model_draft(bn_context *d, const int32_t *h, int len, int max, int32_t *draft, float *logits, char *err,
                       size_t errlen) {
    if (len + max > bn_context_n_ctx(d)) return 0;
    int reuse = common_prefix(bn_context_tokens(d), bn_context_n_past(d), h, len);
    if (reuse == len) reuse--; /* the last token is evaluated again for its logits */
    bn_context_truncate(d, reuse);
    if (bn_context_eval(d, h + reuse, len - reuse, logits, 0, err, errlen)) return -1;
    for (int i = 0; i < max; i++) {
        draft[i] = argmax(logits, d->m->hp.n_vocab);
        if (i + 1 < max && bn_context_eval(d, &draft[i], 1, logits, 0, err, errlen)) return -1;
    }
    return max;
}

/* How long a draft pays to check, learned while generating: a batch of 1 + k tokens costs more
 * than one token (how much more depends on the machine and the model: on a board where weights
 * stream from memory, little; where the kernels are compute-bound, nearly k times), and yields
 * 1 + a + ... + a^k tokens when each draft token is accepted with probability a. Each round takes
 * the length with the most expected tokens per millisecond, 0 (plain decoding) included. */
typedef struct drafting {
    int max;
    double accept;                     /* running estimate of a */
    double *cost;                      /* the context's eval_ms */
    double *draft_ms;                  /* the context's draft_ms: a draft model's time per token */
    int plain_rounds;                  /* left before drafting is tried again */
} drafting;

/* Checking n - 1 drafted tokens with the next one: the batch, measured or guessed from one
 * token's cost (optimistically, so that lengths get tried), and drafting them. */
static double batch_cost(const drafting *d, int n) {
    const double batch = d->cost[n] > 0 ? d->cost[n] : d->cost[1] * (1.0 + 0.25 * (n - 1));
    return batch + (n - 1) * *d->draft_ms;
}

static int draft_length(drafting *d, int room) {
    if (d->cost[1] <= 0) return 0; /* first learn what a plain token costs */
    if (d->plain_rounds > 0) {
        if (--d->plain_rounds == 0) d->accept = d->accept > 0.6 ? d->accept : 0.6; /* try again */
        return 0;
    }
    const int most = d->max < room ? d->max : room;
    int best = 0;
    double best_rate = 1.0 / d->cost[1], expected = 1.0, term = 1.0;
    for (int k = 1; k <= most; k++) {
        term *= d->accept;
        expected += term;
        const double rate = expected / batch_cost(d, 1 + k);
        if (rate > best_rate) best = k, best_rate = rate;
    }
    if (best == 0) d->plain_rounds = DRAFT_RETRY_ROUNDS;
    return best;
}

static void learn(double *running, double ms) { *running = *running > 0 ? 0.8 * *running + 0.2 * ms : ms; }

/* drafted tokens were checked and the first `accepted` kept (a refusal ended the check if fewer). */
static void learn_acceptance(drafting *d, int drafted, int accepted) {
    for (int i = 0; i < accepted; i++) d->accept = 0.9 * d->accept + 0.1;
    if (accepted < drafted) d->accept *= 0.9;
}

/* Speculative decoding: the sampled token and the draft after it are evaluated in one batch;
 * each draft token is checked against the logits before it (bn_sampler_verify), and the first
 * one refused is replaced by the sampler's own token, which the next round evaluates. Logits
 * hold the last position's on entry; buf has room for (draft_max + 1) rows of logits. */
static int speculative_loop(gen *g, int draft_max, float *logits, float *buf, int32_t *batch, char *err,
                            size_t errlen) {
    bn_context *c = g->c;
    const int n_vocab = c->m->hp.n_vocab;
    drafting d = {.max = draft_max, .accept = 0.6, .cost = c->eval_ms, .draft_ms = &c->draft_ms};
    if (hold(g)) return 0;
    int32_t next = bn_sampler_sample(g->s, logits, bn_context_tokens(c), bn_context_n_past(c));
    if (emit(g, next)) return 0;
    for (;;) {
        const int base = bn_context_n_past(c); /* where next goes */
        if (base == bn_context_n_ctx(c) || hold(g)) return 0;
        /* room: the context, and max_tokens (the draft and the token after it) */
        int room = bn_context_n_ctx(c) - base - 1, left = g->max_tokens - g->st->n_generated - 1;
        room = room < left ? room : left;
        const int want = draft_length(&d, room);
        /* the text so far with next at its end, then the draft, in one batch */
        batch[0] = next;
        int k = 0;
        if (want > 0) {
            c->tokens[base] = next; /* the drafts read the history in place; the eval writes it again */
            const double t0 = bn_now_ms();
            k = c->drafter ? model_draft(c->drafter, c->tokens, base + 1, want, batch + 1, buf, err, errlen)
                           : lookup_draft(c->tokens, base + 1, want, batch + 1);
            if (k < 0) return -1;
            if (c->drafter && k > 0) learn(&c->draft_ms, (bn_now_ms() - t0) / k);
        }
        const double t0 = bn_now_ms();
        if (bn_context_eval(c, batch, 1 + k, k ? buf : logits, k > 0, err, errlen)) return -1;
        learn(&d.cost[1 + k], bn_now_ms() - t0);
        int accepted = 0;
        for (int j = 0; j <= k; j++) {
            float *row = k ? buf + (size_t)j * n_vocab : logits;
            int kept = 0;
            const int32_t y = j < k ? bn_sampler_verify(g->s, row, bn_context_tokens(c), base + 1 + j, batch[1 + j], &kept)
                                    : bn_sampler_sample(g->s, row, bn_context_tokens(c), base + 1 + j);
            accepted += kept;
            const int done = emit(g, y);
            /* the context keeps what is accepted and not the token just emitted: the next round
             * (or the next generation's prefix reuse) evaluates it */
            if (done || !kept) bn_context_truncate(c, base + 1 + j);
            if (done) {
                g->st->n_drafted += j < k ? j + 1 : k;
                g->st->n_accepted += accepted;
                return 0;
            }
            if (!kept) {
                next = y;
                break;
            }
        }
        g->st->n_drafted += k;
        g->st->n_accepted += accepted;
        learn_acceptance(&d, k, accepted);
    }
}

int bn_generate(bn_context *c, bn_sampler *s, const int32_t *prompt, int n_prompt, int max_tokens,
                const int32_t *stop_ids, int n_stop, int draft_max, bn_token_cb cb, void *user,
                const volatile int *cancel, bn_generate_stats *stats, char *err, size_t errlen) {
    bn_generate_stats st = {0};
    st.n_prompt = n_prompt;
    st.finish = BN_FINISH_LENGTH;
    if (n_prompt <= 0 || !prompt) return bn_fail(err, errlen, "empty prompt");
    if (n_prompt > bn_context_n_ctx(c))
        return bn_fail(err, errlen, "prompt has %d tokens, context holds %d", n_prompt, bn_context_n_ctx(c));
    if (draft_max < 0 || draft_max >= BN_EVAL_CHUNK)
        return bn_fail(err, errlen, "draft length %d is outside [0, %d)", draft_max, BN_EVAL_CHUNK);
    const size_t row = (size_t)c->m->hp.n_vocab * sizeof(float);
    float *logits = malloc(row), *buf = draft_max ? malloc(row * (size_t)(draft_max + 1)) : NULL;
    int32_t *batch = draft_max ? malloc((size_t)(draft_max + 1) * sizeof(int32_t)) : NULL;
    if (!logits || (draft_max && (!buf || !batch))) {
        free(logits);
        free(buf);
        free(batch);
        return bn_fail(err, errlen, "out of memory");
    }
    bn_group_enter(c); /* its evals are batched with the group's other generations' */
    const double t0 = bn_now_ms();
    int rc = eval_prompt(c, prompt, n_prompt, logits, &st.n_prompt_reused, err, errlen);
    const double t1 = bn_now_ms();
    st.prompt_ms = t1 - t0;
    gen g = {c, s, max_tokens, stop_ids, n_stop, cb, user, cancel, &st};
    if (rc == 0 && max_tokens > 0)
        rc = draft_max ? speculative_loop(&g, draft_max, logits, buf, batch, err, errlen)
                       : plain_loop(&g, logits, err, errlen);
    st.gen_ms = bn_now_ms() - t1;
    bn_group_leave(c);
    free(logits);
    free(buf);
    free(batch);
    if (stats) *stats = st;
    return rc;
}
