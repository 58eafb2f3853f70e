/* Groups: contexts of one model decoded together (continuous batching). Decode reads every weight
 * once per token, so one stream is bound by memory bandwidth; a forward pass over the tokens of
 * several streams reads each weight once for all of them. Members that are inside a generation or
 * an eval (entered) hand their forward passes to the group; when every entered member has one
 * waiting, the member that sees it first runs them as one batch on the group's workspace (its
 * pool, scratch and activations) and wakes the others. Members join and leave between their
 * steps, so a new generation starts at the next step, and one that ends holds nobody up. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include "core/common.h"
#include "model/engine_internal.h"

/* A member's forward pass, queued until its batch has run. */
typedef struct request {
    bn_context *c;
    const int32_t *tokens;
    int n;
    const int *rows;
    int n_out;
    float *logits;
    int done, rc;
    char err[256];
    struct request *next;
} request;

struct bn_group {
    bn_workspace ws;
    pthread_mutex_t mu;
    pthread_cond_t changed;    /* a request queued or finished, or a member left */
    int members, entered, queued;
    int running;               /* a batch runs now */
    request *head, *tail;      /* first come, first run */
    float *logits;             /* a batch's logits rows, before they are copied to each request */
    size_t logits_rows;
};

int bn_group_join(bn_context *c, bn_context *other, char *err, size_t errlen) {
    if (other->m != c->m) return bn_fail(err, errlen, "contexts decoded together must share one model");
    bn_group *g = other->group;
    if (!g) {
        g = calloc(1, sizeof *g);
        if (!g) return bn_fail(err, errlen, "out of memory");
        pthread_mutex_init(&g->mu, NULL);
        pthread_cond_init(&g->changed, NULL);
        g->ws = other->own; /* the group takes over other's workspace: its pool and buffers */
        memset(&other->own, 0, sizeof other->own);
        other->ws = &g->ws;
        other->group = g;
        g->members = 1;
    }
    pthread_mutex_lock(&g->mu);
    if (c->n_ctx > g->ws.n_ctx) g->ws.n_ctx = c->n_ctx; /* the attention scratch grows at the next pass */
    c->group = g;
    c->ws = &g->ws;
    g->members++;
    pthread_mutex_unlock(&g->mu);
    return 0;
}

void bn_group_leave_for_good(bn_context *c) {
    bn_group *g = c->group;
    if (!g) return;
    c->group = NULL;
    c->ws = &c->own;
    pthread_mutex_lock(&g->mu);
    const int last = --g->members == 0;
    pthread_mutex_unlock(&g->mu);
    if (!last) return;
    bn_workspace_free(&g->ws);
    pthread_mutex_destroy(&g->mu);
    pthread_cond_destroy(&g->changed);
    free(g->logits);
    free(g);
}

void bn_group_enter(bn_context *c) {
    bn_group *g = c->group;
    if (!g || c->group_depth++ > 0) return;
    pthread_mutex_lock(&g->mu);
    g->entered++;
    pthread_mutex_unlock(&g->mu);
}

void bn_group_leave(bn_context *c) {
    bn_group *g = c->group;
    if (!g || --c->group_depth > 0) return;
    pthread_mutex_lock(&g->mu);
    g->entered--;
    pthread_cond_broadcast(&g->changed); /* the others may be all that is left to wait for */
    pthread_mutex_unlock(&g->mu);
}

/* Room for rows rows of logits in the batch buffer. */
static int reserve_logits(bn_group *g, const bn_model *m, size_t rows) {
    if (rows <= g->logits_rows) return 0;
    float *p = realloc(g->logits, rows * (size_t)m->hp.n_vocab * sizeof(float));
    if (!p) return -1;
    g->logits = p;
    g->logits_rows = rows;
    return 0;
}

/* Runs taken[0..n_taken) as one forward pass; called without the lock, by one thread at a time. */
static int run_batch(bn_group *g, request *const *taken, int n_taken, char *err, size_t errlen) {
    const bn_model *m = taken[0]->c->m;
    if (n_taken == 1) { /* alone: straight into its own logits */
        const request *r = taken[0];
        const bn_seq alone = {r->c, 0, r->n};
        return bn_forward(&g->ws, m, &alone, 1, r->tokens, r->n, r->rows, r->n_out, r->logits, err, errlen);
    }
    bn_seq seqs[BN_EVAL_CHUNK];
    int32_t tokens[BN_EVAL_CHUNK];
    int rows[BN_EVAL_CHUNK], n = 0, n_out = 0;
    for (int i = 0; i < n_taken; i++) {
        const request *r = taken[i];
        seqs[i] = (bn_seq){r->c, n, r->n};
        memcpy(tokens + n, r->tokens, (size_t)r->n * sizeof *tokens);
        for (int j = 0; j < r->n_out; j++) rows[n_out++] = n + r->rows[j];
        n += r->n;
    }
    if (reserve_logits(g, m, (size_t)n_out)) return bn_fail(err, errlen, "out of memory for a batch's logits");
    if (bn_forward(&g->ws, m, seqs, n_taken, tokens, n, rows, n_out, g->logits, err, errlen)) return -1;
    const size_t row_bytes = (size_t)m->hp.n_vocab * sizeof(float);
    const float *out = g->logits;
    for (int i = 0; i < n_taken; i++) {
        if (taken[i]->n_out) memcpy(taken[i]->logits, out, (size_t)taken[i]->n_out * row_bytes);
        out += (size_t)taken[i]->n_out * m->hp.n_vocab;
    }
    return 0;
}

/* With the lock held: takes the queued requests that fit one pass (first come first), runs them
 * with the lock released, and marks them done. */
static void lead(bn_group *g) {
    request *taken[BN_EVAL_CHUNK] = {0};
    int n_taken = 0, n = 0;
    while (g->head && n + g->head->n <= BN_EVAL_CHUNK) {
        request *r = g->head;
        g->head = r->next;
        taken[n_taken++] = r;
        n += r->n;
    }
    if (!g->head) g->tail = NULL;
    g->queued -= n_taken;
    g->running = 1;
    pthread_mutex_unlock(&g->mu);
    char err[256] = "";
    const int rc = run_batch(g, taken, n_taken, err, sizeof err);
    pthread_mutex_lock(&g->mu);
    for (int i = 0; i < n_taken; i++) {
        taken[i]->rc = rc;
        if (rc) memcpy(taken[i]->err, err, sizeof err);
        taken[i]->done = 1;
    }
    g->running = 0;
    pthread_cond_broadcast(&g->changed);
}

int bn_group_forward(bn_context *c, const int32_t *tokens, int n, const int *rows, int n_out, float *logits,
                     char *err, size_t errlen) {
    bn_group *g = c->group;
    request r = {.c = c, .tokens = tokens, .n = n, .rows = rows, .n_out = n_out, .logits = logits};
    pthread_mutex_lock(&g->mu);
    if (g->tail) g->tail->next = &r;
    else g->head = &r;
    g->tail = &r;
    g->queued++;
    pthread_cond_broadcast(&g->changed);
    while (!r.done) {
        /* Every entered member has its pass queued: nothing more can join this batch. */
        if (!g->running && g->queued == g->entered) lead(g);
        else pthread_cond_wait(&g->changed, &g->mu);
    }
    pthread_mutex_unlock(&g->mu);
    return r.rc ? bn_fail(err, errlen, "%s", r.err) : 0;
}
