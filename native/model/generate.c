/* The generation loop: prompt prefix reuse, batched prompt evaluation, then sample/eval. */
#include <stdlib.h>
#include <time.h>
#include "model/engine_internal.h"
#include "core/common.h"

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

static int is_stop(int32_t tok, const int32_t *stop_ids, int n_stop) {
    for (int i = 0; i < n_stop; i++)
        if (stop_ids[i] == tok) return 1;
    return 0;
}

/* A paused context (a board too hot to go on) holds the generation here, between tokens. */
static void wait_while_paused(bn_context *c, const volatile int *cancel) {
    const struct timespec step = {0, 20 * 1000 * 1000};
    while (atomic_load(&c->paused) && !(cancel && *cancel)) nanosleep(&step, NULL);
}

/* Samples and evaluates until a finish condition; logits hold the last position's on entry. */
static int sample_loop(bn_context *c, bn_sampler *s, float *logits, int max_tokens, const int32_t *stop_ids,
                       int n_stop, bn_token_cb cb, void *user, const volatile int *cancel,
                       bn_generate_stats *st, char *err, size_t errlen) {
    st->finish = BN_FINISH_LENGTH;
    while (st->n_generated < max_tokens) {
        wait_while_paused(c, cancel);
        if (cancel && *cancel) {
            st->finish = BN_FINISH_CANCELLED;
            return 0;
        }
        const int32_t tok = bn_sampler_sample(s, logits, bn_context_tokens(c), bn_context_n_past(c));
        st->n_generated++;
        if (cb && cb(user, tok)) {
            st->finish = BN_FINISH_CANCELLED;
            return 0;
        }
        if (is_stop(tok, stop_ids, n_stop)) {
            st->finish = BN_FINISH_STOP;
            return 0;
        }
        /* The last token needs no evaluation: nothing would read its logits. */
        if (st->n_generated == max_tokens || bn_context_n_past(c) == bn_context_n_ctx(c)) return 0;
        if (bn_context_eval(c, &tok, 1, logits, 0, err, errlen)) return -1;
    }
    return 0;
}

int bn_generate(bn_context *c, bn_sampler *s, const int32_t *prompt, int n_prompt, int max_tokens,
                const int32_t *stop_ids, int n_stop, bn_token_cb cb, void *user,
                const volatile int *cancel, bn_generate_stats *stats, char *err, size_t errlen) {
    bn_generate_stats st = {0};
    st.n_prompt = n_prompt;
    if (n_prompt <= 0 || !prompt) return bn_fail(err, errlen, "empty prompt");
    if (n_prompt > bn_context_n_ctx(c))
        return bn_fail(err, errlen, "prompt has %d tokens, context holds %d", n_prompt, bn_context_n_ctx(c));
    float *logits = malloc((size_t)c->m->hp.n_vocab * sizeof(float));
    if (!logits) return bn_fail(err, errlen, "out of memory");
    bn_group_enter(c); /* its evals are batched with the group's other generations' */
    const double t0 = bn_now_ms();
    int rc = eval_prompt(c, prompt, n_prompt, logits, &st.n_prompt_reused, err, errlen);
    const double t1 = bn_now_ms();
    st.prompt_ms = t1 - t0;
    if (rc == 0)
        rc = sample_loop(c, s, logits, max_tokens, stop_ids, n_stop, cb, user, cancel, &st, err, errlen);
    st.gen_ms = bn_now_ms() - t1;
    bn_group_leave(c);
    free(logits);
    if (stats) *stats = st;
    return rc;
}
