/* The sampler: greedy, determinism per seed, top-k/top-p/min-p semantics, repetition penalty,
 * the drawn distribution on small hand-made logit vectors, and the check of drafted tokens. */
#include <stdint.h>
#include "harness.h"
#include "model/sampler.h"

static bn_sampler_params params(float temperature, int top_k, float top_p, float min_p, uint64_t seed) {
    const bn_sampler_params p = {temperature, top_k, top_p, min_p, 1.0f, 64, seed};
    return p;
}

static int32_t sample_copy(bn_sampler *s, const float *logits, int n) {
    float tmp[4096];
    memcpy(tmp, logits, (size_t)n * sizeof(float));
    return bn_sampler_sample(s, tmp, NULL, 0);
}

/* Draws `draws` tokens and counts each id. */
static void histogram(const bn_sampler_params *p, const float *logits, int n, int draws, int *counts) {
    bn_sampler *s = bn_sampler_new(p, n);
    memset(counts, 0, (size_t)n * sizeof(int));
    for (int i = 0; i < draws; i++) counts[sample_copy(s, logits, n)]++;
    bn_sampler_free(s);
}

static void test_greedy(void) {
    const float logits[6] = {0.5f, 3.0f, -1.0f, 3.0f, 2.9f, 0.0f};
    bn_sampler_params p = params(0.0f, 0, 1.0f, 0.0f, 1);
    bn_sampler *s = bn_sampler_new(&p, 6);
    CHECK(sample_copy(s, logits, 6) == 1, "greedy picks the first maximum");
    bn_sampler_free(s);
    p = params(1.0f, 1, 1.0f, 0.0f, 7); /* top-k 1 is greedy whatever the temperature */
    s = bn_sampler_new(&p, 6);
    for (int i = 0; i < 20; i++) CHECK(sample_copy(s, logits, 6) == 1, "top-k 1 draw %d", i);
    bn_sampler_free(s);
}

static void test_seed_determinism(void) {
    enum { N = 3000 };
    static float logits[N];
    for (int i = 0; i < N; i++) logits[i] = (float)((i * 7919) % 1000) / 200.0f;
    int32_t a[50], b[50], c[50];
    const bn_sampler_params p1 = params(0.8f, 40, 0.95f, 0.05f, 42), p2 = params(0.8f, 40, 0.95f, 0.05f, 43);
    bn_sampler *s1 = bn_sampler_new(&p1, N), *s2 = bn_sampler_new(&p1, N), *s3 = bn_sampler_new(&p2, N);
    int same = 1, differ = 0;
    for (int i = 0; i < 50; i++) {
        a[i] = sample_copy(s1, logits, N);
        b[i] = sample_copy(s2, logits, N);
        c[i] = sample_copy(s3, logits, N);
        same &= a[i] == b[i];
        differ |= a[i] != c[i];
    }
    CHECK(same, "same seed gives the same tokens");
    CHECK(differ, "another seed gives other tokens");
    bn_sampler_free(s1);
    bn_sampler_free(s2);
    bn_sampler_free(s3);
}

static void test_distribution(void) {
    /* probabilities 0.5, 0.25, 0.125, 0.125 at temperature 1 */
    const float logits[4] = {logf(4.0f), logf(2.0f), 0.0f, 0.0f};
    enum { DRAWS = 20000 };
    int counts[4];
    bn_sampler_params p = params(1.0f, 0, 1.0f, 0.0f, 5);
    histogram(&p, logits, 4, DRAWS, counts);
    const double want[4] = {0.5, 0.25, 0.125, 0.125};
    for (int i = 0; i < 4; i++)
        CHECK(fabs(counts[i] / (double)DRAWS - want[i]) < 0.015, "p[%d] = %.3f, expected %.3f", i,
              counts[i] / (double)DRAWS, want[i]);
    p = params(1.0f, 2, 1.0f, 0.0f, 5); /* top-k 2: renormalized 2/3, 1/3 */
    histogram(&p, logits, 4, DRAWS, counts);
    CHECK(counts[2] == 0 && counts[3] == 0 && fabs(counts[0] / (double)DRAWS - 2.0 / 3) < 0.015,
          "top-k 2: %d %d %d %d", counts[0], counts[1], counts[2], counts[3]);
    p = params(1.0f, 0, 0.7f, 0.0f, 5); /* top-p 0.7: {0, 1} reach 0.75 */
    histogram(&p, logits, 4, DRAWS, counts);
    CHECK(counts[2] == 0 && counts[3] == 0 && counts[1] > 0, "top-p 0.7: %d %d %d %d", counts[0], counts[1],
          counts[2], counts[3]);
    p = params(1.0f, 0, 0.5f, 0.0f, 5); /* top-p 0.5: token 0 alone reaches it */
    histogram(&p, logits, 4, DRAWS, counts);
    CHECK(counts[0] == DRAWS, "top-p 0.5 keeps only the best: %d", counts[0]);
    p = params(1.0f, 0, 1.0f, 0.3f, 5); /* min-p 0.3: keeps p >= 0.15, i.e. tokens 0 and 1 */
    histogram(&p, logits, 4, DRAWS, counts);
    CHECK(counts[2] == 0 && counts[3] == 0 && counts[1] > 0, "min-p 0.3: %d %d %d %d", counts[0], counts[1],
          counts[2], counts[3]);
    p = params(0.5f, 0, 1.0f, 0.0f, 5); /* temperature 0.5 squares the ratios: 16:4:1:1 */
    histogram(&p, logits, 4, DRAWS, counts);
    CHECK(fabs(counts[0] / (double)DRAWS - 16.0 / 22) < 0.015, "temperature 0.5: p[0] = %.3f",
          counts[0] / (double)DRAWS);
}

/* top-p over a large vocabulary (exercises the widening partial sort) against a full sort. */
static void test_top_p_large(void) {
    enum { N = 4096 };
    static float logits[N];
    for (int i = 0; i < N; i++) logits[i] = (float)((i * 2654435761u) % 4096) / 1024.0f;
    /* ids sorted by logit give the smallest set reaching 0.9; count it by brute force */
    double total = 0.0, cum = 0.0;
    float mx = -1e30f;
    for (int i = 0; i < N; i++) mx = logits[i] > mx ? logits[i] : mx;
    for (int i = 0; i < N; i++) total += exp((double)logits[i] - mx);
    float cut = mx;
    for (float v = mx; cum < 0.9 * total; v -= 1.0f / 1024.0f) {
        for (int i = 0; i < N; i++)
            if (logits[i] == v) cum += exp((double)logits[i] - mx);
        cut = v;
    }
    const bn_sampler_params p = params(1.0f, 0, 0.9f, 0.0f, 11);
    bn_sampler *s = bn_sampler_new(&p, N);
    int below = 0;
    for (int i = 0; i < 500; i++) below += logits[sample_copy(s, logits, N)] < cut;
    CHECK(below == 0, "top-p 0.9 drew %d tokens outside the nucleus", below);
    bn_sampler_free(s);
}

static void test_penalty(void) {
    float logits[4] = {2.0f, 1.9f, -1.0f, 0.5f};
    const bn_sampler_params p = {0.0f, 0, 1.0f, 0.0f, 2.0f, 2, 1};
    bn_sampler *s = bn_sampler_new(&p, 4);
    const int32_t recent[3] = {0, 2, 2}; /* last 2: {2}; token 0 is outside the window */
    CHECK(bn_sampler_sample(s, logits, recent, 3) == 0 && logits[2] == -2.0f && logits[0] == 2.0f,
          "window of 2, distinct ids penalized once: %g %g", logits[0], logits[2]);
    const int32_t recent2[2] = {3, 0};
    CHECK(bn_sampler_sample(s, logits, recent2, 2) == 1 && logits[0] == 1.0f && logits[3] == 0.25f,
          "positive logits divided: %g %g", logits[0], logits[3]);
    bn_sampler_free(s);
}

/* Speculative decoding's check of a draft: whatever the draft (likely, unlikely, outside top-k,
 * impossible), it returns the very tokens plain draws with the same seed return (so they are
 * distributed as those), and accepts the draft exactly when it returns it; greedy returns the
 * argmax. */
static void test_verify(void) {
    const float logits[4] = {logf(4.0f), logf(2.0f), 0.0f, 0.0f};
    enum { DRAWS = 40000 };
    const struct {
        bn_sampler_params p;
        double want[4];
    } cases[] = {
        {params(1.0f, 0, 1.0f, 0.0f, 9), {0.5, 0.25, 0.125, 0.125}},
        {params(1.0f, 2, 1.0f, 0.0f, 9), {2.0 / 3, 1.0 / 3, 0, 0}},
        {params(0.5f, 0, 1.0f, 0.0f, 9), {16.0 / 22, 4.0 / 22, 1.0 / 22, 1.0 / 22}},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
        for (int32_t draft = 0; draft < 4; draft++) {
            bn_sampler *s = bn_sampler_new(&cases[c].p, 4), *plain = bn_sampler_new(&cases[c].p, 4);
            int counts[4] = {0}, lied = 0, differs = 0;
            for (int i = 0; i < DRAWS; i++) {
                float tmp[4];
                memcpy(tmp, logits, sizeof tmp);
                int accepted = -1;
                const int32_t t = bn_sampler_verify(s, tmp, NULL, 0, draft, &accepted);
                counts[t]++;
                lied |= accepted != (t == draft);
                differs |= t != sample_copy(plain, logits, 4);
            }
            bn_sampler_free(plain);
            CHECK(!lied, "case %zu draft %d: accepted disagrees with the token returned", c, (int)draft);
            CHECK(!differs, "case %zu draft %d: not the tokens plain draws with the seed give", c, (int)draft);
            for (int i = 0; i < 4; i++)
                CHECK(fabs(counts[i] / (double)DRAWS - cases[c].want[i]) < 0.012,
                      "case %zu draft %d: p[%d] = %.4f, expected %.4f", c, (int)draft, i, counts[i] / (double)DRAWS,
                      cases[c].want[i]);
            bn_sampler_free(s);
        }
    const bn_sampler_params greedy = params(0.0f, 0, 1.0f, 0.0f, 1);
    bn_sampler *s = bn_sampler_new(&greedy, 4);
    float tmp[4];
    int accepted;
    memcpy(tmp, logits, sizeof tmp);
    CHECK(bn_sampler_verify(s, tmp, NULL, 0, 0, &accepted) == 0 && accepted, "greedy accepts the argmax");
    memcpy(tmp, logits, sizeof tmp);
    CHECK(bn_sampler_verify(s, tmp, NULL, 0, 1, &accepted) == 0 && !accepted, "greedy refuses another token");
    bn_sampler_free(s);
}

int main(void) {
    test_greedy();
    test_verify();
    test_seed_determinism();
    test_distribution();
    test_top_p_large();
    test_penalty();
    return bn_test_done("test_sampler");
}
