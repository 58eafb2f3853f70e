/* Token sampling in llama.cpp's order: repetition penalty, top-k, top-p, min-p, temperature,
 * seeded draw. No step sorts: top-k and top-p are selections (expected linear time), since
 * sorting a 151,936-entry vocabulary per token is wasted work; the draw needs no order. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "model/sampler.h"

typedef struct cand {
    int32_t id;
    float logit;
    float w;              /* unnormalized probability, set by the step that needs it */
} cand;

struct bn_sampler {
    bn_sampler_params p;
    int n_vocab;
    uint64_t rng[4];      /* xoshiro256** state */
    cand *cands;          /* [n_vocab] */
    uint32_t *seen;       /* [n_vocab] stamp of the penalty pass that last saw each id */
    uint32_t stamp;
};

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t xoshiro_next(uint64_t s[4]) {
    const uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

/* Uniform in [0, 1) with 53 random bits. */
static double uniform01(uint64_t s[4]) { return (double)(xoshiro_next(s) >> 11) * 0x1.0p-53; }

bn_sampler *bn_sampler_new(const bn_sampler_params *p, int n_vocab) {
    if (n_vocab <= 0) return NULL;
    bn_sampler *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->p = *p;
    s->n_vocab = n_vocab;
    s->cands = malloc((size_t)n_vocab * sizeof *s->cands);
    s->seen = calloc((size_t)n_vocab, sizeof *s->seen);
    if (!s->cands || !s->seen) {
        bn_sampler_free(s);
        return NULL;
    }
    uint64_t x = p->seed;
    for (int i = 0; i < 4; i++) s->rng[i] = splitmix64(&x);
    return s;
}

void bn_sampler_free(bn_sampler *s) {
    if (!s) return;
    free(s->cands);
    free(s->seen);
    free(s);
}

/* llama.cpp: each distinct id among the last repeat_last_n tokens is penalized once. */
static void apply_penalty(bn_sampler *s, float *logits, const int32_t *recent, int n_recent) {
    const float pen = s->p.repeat_penalty;
    if (pen == 1.0f || pen <= 0.0f || s->p.repeat_last_n <= 0 || n_recent <= 0) return;
    if (++s->stamp == 0) { /* wrapped: old stamps could collide */
        memset(s->seen, 0, (size_t)s->n_vocab * sizeof *s->seen);
        s->stamp = 1;
    }
    const int first = n_recent > s->p.repeat_last_n ? n_recent - s->p.repeat_last_n : 0;
    for (int i = first; i < n_recent; i++) {
        const int32_t id = recent[i];
        if (id < 0 || id >= s->n_vocab || s->seen[id] == s->stamp) continue;
        s->seen[id] = s->stamp;
        logits[id] = logits[id] > 0.0f ? logits[id] / pen : logits[id] * pen;
    }
}

static int argmax_first(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

/* Strict total order: higher logit first, then lower id (so results never depend on the
 * selection algorithm's tie handling). */
static int before(const cand *a, const cand *b) {
    return a->logit > b->logit || (a->logit == b->logit && a->id < b->id);
}

static void swap_cand(cand *a, cand *b) {
    const cand t = *a;
    *a = *b;
    *b = t;
}

/* Partitions c[lo..hi] (inclusive) around a median-of-three pivot; returns the pivot's final
 * index: better entries before it, worse after. */
static int partition(cand *c, int lo, int hi) {
    const int mid = lo + (hi - lo) / 2;
    if (before(&c[mid], &c[lo])) swap_cand(&c[mid], &c[lo]);
    if (before(&c[hi], &c[lo])) swap_cand(&c[hi], &c[lo]);
    if (before(&c[mid], &c[hi])) swap_cand(&c[mid], &c[hi]); /* the median now sits at hi */
    int store = lo;
    for (int i = lo; i < hi; i++)
        if (before(&c[i], &c[hi])) swap_cand(&c[i], &c[store++]);
    swap_cand(&c[store], &c[hi]);
    return store;
}

/* Rearranges c[0..n) so its first k entries are the k best (in no particular order). */
static void select_best(cand *c, int n, int k) {
    int lo = 0, hi = n - 1;
    while (lo < hi) {
        const int store = partition(c, lo, hi);
        if (store == k - 1 || store == k) return;
        if (store < k) lo = store + 1;
        else hi = store - 1;
    }
}

static float max_logit(const cand *c, int n) {
    float m = c[0].logit;
    for (int i = 1; i < n; i++)
        if (c[i].logit > m) m = c[i].logit;
    return m;
}

/* Sets each weight to exp((logit - max) / temperature); returns their sum. */
static double set_weights(cand *c, int n, float temperature) {
    const float mx = max_logit(c, n);
    double total = 0.0;
    for (int i = 0; i < n; i++) {
        c[i].w = expf((c[i].logit - mx) / temperature);
        total += c[i].w;
    }
    return total;
}

static double mass(const cand *c, int lo, int hi) {
    double m = 0.0;
    for (int i = lo; i < hi; i++) m += c[i].w;
    return m;
}

/* Moves the smallest best-first set whose probability (temperature 1) reaches p to the front
 * and returns its size (>= 1). A quickselect on probability mass: expected O(n), no sort. */
static int top_p_select(cand *c, int n, float p) {
    double need = p * set_weights(c, n, 1.0f);
    int lo = 0, hi = n; /* the set ends somewhere in (lo, hi] */
    while (hi - lo > 1) {
        const int store = partition(c, lo, hi - 1);
        const double upper = mass(c, lo, store);
        if (store > lo && upper >= need) {
            hi = store;
        } else if (upper + c[store].w >= need) {
            return store + 1;
        } else {
            need -= upper + c[store].w;
            lo = store + 1;
        }
    }
    return hi > lo ? lo + 1 : hi; /* hi == lo: rounding left p unreached, keep everything */
}

/* Keeps candidates with probability >= min_p * p_max, i.e. logit >= max + log(min_p). */
static int min_p_filter(cand *c, int n, float min_p) {
    const float cut = max_logit(c, n) + logf(min_p);
    int kept = 0;
    for (int i = 0; i < n; i++)
        if (c[i].logit >= cut) c[kept++] = c[i];
    return kept;
}

/* Softmax at the given temperature over c[0..n), then one draw. */
static int32_t draw(bn_sampler *s, cand *c, int n, float temperature) {
    const double u = uniform01(s->rng) * set_weights(c, n, temperature);
    double cum = 0.0;
    for (int i = 0; i < n; i++) {
        cum += c[i].w;
        if (u < cum) return c[i].id;
    }
    return c[n - 1].id; /* u fell in the rounding slack at the very top */
}

/* The candidates a draw chooses among (top-k, top-p, min-p of the penalized logits), at the front
 * of s->cands; returns how many. */
static int candidates(bn_sampler *s, const float *logits) {
    int n = s->n_vocab;
    for (int i = 0; i < n; i++) s->cands[i] = (cand){i, logits[i], 0.0f};
    if (s->p.top_k > 0 && s->p.top_k < n) {
        n = s->p.top_k;
        select_best(s->cands, s->n_vocab, n);
    }
    if (s->p.top_p < 1.0f) n = top_p_select(s->cands, n, s->p.top_p > 0.0f ? s->p.top_p : 0.0f);
    if (s->p.min_p > 0.0f) n = min_p_filter(s->cands, n, s->p.min_p);
    return n;
}

int32_t bn_sampler_sample(bn_sampler *s, float *logits, const int32_t *recent, int n_recent) {
    apply_penalty(s, logits, recent, n_recent);
    if (s->p.temperature <= 0.0f) return argmax_first(logits, s->n_vocab);
    return draw(s, s->cands, candidates(s, logits), s->p.temperature);
}

int32_t bn_sampler_verify(bn_sampler *s, float *logits, const int32_t *recent, int n_recent, int32_t draft,
                          int *accepted) {
    const int32_t t = bn_sampler_sample(s, logits, recent, n_recent);
    *accepted = t == draft;
    return t;
}
