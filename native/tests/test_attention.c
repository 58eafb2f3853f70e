/* Attention (attention/attention.c and its SIMD tiles) against a double-precision reference: random
 * queries and caches, F32 and F16 entries, GQA groups of 1-4 heads, head sizes that take the SIMD
 * paths and ones that do not, contexts from one key to non-multiples of every vector width, a
 * decode token or a causal prefill batch. Each path must also give the same bits with 1, 2 or 3
 * threads and whether a batch is evaluated at once or token by token, and the SIMD paths (AVX2,
 * NEON) the bits of one scalar model of the arithmetic they share. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "attention/attention.h"
#include "harness.h"
#include "kernels/kernels.h"
#include "quants/quants.h"

static uint32_t rng = 12345;
static float frand(void) { /* uniform in [-1, 1) */
    rng = rng * 1664525u + 1013904223u;
    return (float)(rng >> 8) / 8388608.0f - 1.0f;
}

typedef struct shape {
    int n_head, n_head_kv, hd;
} shape;

typedef struct problem {
    shape sh;
    int n_ctx, kv_f16;
    int head_major;    /* the cache's layout: [n_head_kv][n_ctx][hd] (the engine's), else [n_ctx][n_head_kv][hd] */
    float *q;          /* [n_ctx][n_head][hd]: query of every position */
    float *k, *v;      /* [n_ctx][n_head_kv][hd], fp16-rounded when kv_f16 */
    void *kc, *vc;     /* the cache in its layout */
} problem;

/* Elements from one position of the cache to the next, and from one kv head to the next. */
static size_t pos_stride(const problem *p) { return p->head_major ? (size_t)p->sh.hd : (size_t)p->sh.n_head_kv * p->sh.hd; }
static size_t head_stride(const problem *p) { return p->head_major ? (size_t)p->n_ctx * p->sh.hd : (size_t)p->sh.hd; }

/* weights_only: queries in eighths up to +-12, keys in {-1, 0, 1} (every score exact in float, so
 * only the softmax rounds) and one-hot values (position j of each head has a 1 at dim j), which
 * make the outputs the weights themselves. */
static void problem_init(problem *p, shape sh, int n_ctx, int kv_f16, int weights_only, int head_major) {
    p->sh = sh;
    p->n_ctx = n_ctx;
    p->kv_f16 = kv_f16;
    p->head_major = head_major;
    const size_t nq = (size_t)n_ctx * sh.n_head * sh.hd, nkv = (size_t)n_ctx * sh.n_head_kv * sh.hd;
    p->q = malloc(nq * sizeof(float));
    p->k = malloc(nkv * sizeof(float));
    p->v = malloc(nkv * sizeof(float));
    p->kc = malloc(nkv * (kv_f16 ? 2 : 4));
    p->vc = malloc(nkv * (kv_f16 ? 2 : 4));
    for (size_t i = 0; i < nq; i++) p->q[i] = weights_only ? roundf(96.0f * frand()) / 8 : 4 * frand();
    for (size_t i = 0; i < nkv; i++) {
        const size_t pos = i / sh.hd / sh.n_head_kv, h = i / sh.hd % sh.n_head_kv;
        const size_t c = pos * pos_stride(p) + h * head_stride(p) + i % sh.hd;
        p->k[i] = weights_only ? roundf(frand()) : frand();
        p->v[i] = weights_only ? (float)(pos == i % sh.hd) : frand();
        if (kv_f16) {
            ((uint16_t *)p->kc)[c] = bn_fp32_to_fp16(p->k[i]);
            ((uint16_t *)p->vc)[c] = bn_fp32_to_fp16(p->v[i]);
            p->k[i] = bn_fp16_to_fp32(((uint16_t *)p->kc)[c]);
            p->v[i] = bn_fp16_to_fp32(((uint16_t *)p->vc)[c]);
        } else {
            ((float *)p->kc)[c] = p->k[i];
            ((float *)p->vc)[c] = p->v[i];
        }
    }
}

static void problem_free(problem *p) {
    free(p->q);
    free(p->k);
    free(p->v);
    free(p->kc);
    free(p->vc);
}

/* Output of the query at position pos, head h, in double. */
static void reference(const problem *p, int pos, int h, double *out) {
    const shape s = p->sh;
    const int kvh = h / (s.n_head / s.n_head_kv), n_kv = pos + 1;
    const float *q = p->q + ((size_t)pos * s.n_head + h) * s.hd;
    double *w = malloc(n_kv * sizeof(double)), max = -INFINITY, sum = 0.0;
    for (int j = 0; j < n_kv; j++) {
        const float *k = p->k + ((size_t)j * s.n_head_kv + kvh) * s.hd;
        double dot = 0.0;
        for (int i = 0; i < s.hd; i++) dot += (double)q[i] * k[i];
        w[j] = dot / sqrt((double)s.hd);
        if (w[j] > max) max = w[j];
    }
    for (int j = 0; j < n_kv; j++) sum += w[j] = exp(w[j] - max);
    for (int i = 0; i < s.hd; i++) out[i] = 0.0;
    for (int j = 0; j < n_kv; j++)
        for (int i = 0; i < s.hd; i++) out[i] += w[j] / sum * p->v[((size_t)j * s.n_head_kv + kvh) * s.hd + i];
    free(w);
}

/* Queries of positions p0 .. p0 + n - 1 through bn_attn_run on isa, split over nth threads (run
 * one after another here, each on its own scratch). */
static void run(const problem *p, bn_isa isa, int p0, int n, int nth, float *out) {
    const shape s = p->sh;
    const size_t per_thread = bn_attn_scratch_floats(p->n_ctx, s.hd);
    float *scratch = malloc(per_thread * nth * sizeof(float));
    const bn_attn a = {.q = p->q + (size_t)p0 * s.n_head * s.hd, .out = out, .k = p->kc, .v = p->vc,
                       .kv_pos_stride = pos_stride(p), .kv_head_stride = head_stride(p), .kv_f16 = p->kv_f16,
                       .n = n, .p0 = p0, .n_head = s.n_head, .n_head_kv = s.n_head_kv, .head_dim = s.hd,
                       .n_ctx = p->n_ctx, .isa = isa, .scratch = scratch};
    for (int ith = 0; ith < nth; ith++) bn_attn_run(&a, ith, nth);
    free(scratch);
}

/* Entries that differ (== comparison: a zero may come out with either sign). */
static int count_different(const float *a, const float *b, size_t n) {
    int bad = 0;
    for (size_t i = 0; i < n; i++) bad += !(a[i] == b[i]);
    return bad;
}

/* Every query of positions [p0, p0 + n) against the reference, then the same bits from other
 * thread counts and from one token at a time. tol: absolute error bound on outputs; weights:
 * the outputs are softmax weights w (a weights_only problem), each within tol relative plus one
 * float rounding of its exponent, ln w (the argument of exp is rounded once). */
static void check(const problem *p, bn_isa isa, int p0, int n, double tol, int weights, const char *what) {
    const shape s = p->sh;
    const size_t row = (size_t)s.n_head * s.hd;
    float *got = malloc(row * n * sizeof(float)), *other = malloc(row * n * sizeof(float));
    double *want = malloc(s.hd * sizeof(double)), worst = 0.0;
    run(p, isa, p0, n, 1, got);
    for (int t = 0; t < n; t++)
        for (int h = 0; h < s.n_head; h++) {
            reference(p, p0 + t, h, want);
            for (int i = 0; i < s.hd; i++) {
                const double e = fabs(got[t * row + (size_t)h * s.hd + i] - want[i]);
                const double bound = weights ? want[i] * (tol + 1.2e-7 * fabs(log(want[i] + 1e-300))) + 1e-35 : tol;
                if (e / bound > worst) worst = e / bound;
            }
        }
    CHECK(worst <= 1.0, "%s %s: h %d/%d hd %d %s %s, positions %d..%d: error %.3g of the bound", bn_isa_name(isa),
          what, s.n_head, s.n_head_kv, s.hd, p->kv_f16 ? "f16" : "f32", p->head_major ? "head-major" : "position-major",
          p0, p0 + n - 1, worst);
    for (int nth = 2; nth <= 3; nth++) {
        run(p, isa, p0, n, nth, other);
        const int bad = count_different(got, other, row * n);
        CHECK(bad == 0, "%s: %d outputs differ with %d threads (positions %d..%d)", bn_isa_name(isa), bad, nth, p0,
              p0 + n - 1);
    }
    for (int t = 0; t < n; t++) run(p, isa, p0 + t, 1, 1, other + t * row);
    const int bad = count_different(got, other, row * n);
    CHECK(bad == 0, "%s: %d outputs differ token by token (positions %d..%d)", bn_isa_name(isa), bad, p0, p0 + n - 1);
    free(got);
    free(other);
    free(want);
}

static void test_isa(bn_isa isa) {
    /* Bonsai's groups of 2 heads of 128, 4-head groups, one shared head (MQA), stories260K's
     * 8-wide heads, and sizes off the 8 lanes (the scalar path under AVX2 and NEON). */
    const shape shapes[] = {{4, 2, 128}, {8, 2, 64}, {3, 1, 16}, {8, 4, 8}, {2, 1, 12}, {2, 2, 5}};
    /* (first position, queries): decode at 1 key, 7, 9, 64, 100 keys; prefill from 0 (one tile
     * and several, with a ragged last tile) and after a prefix */
    const int runs[][2] = {{0, 1}, {6, 1}, {8, 1}, {63, 1}, {99, 1}, {0, 37}, {0, 3}, {5, 27}, {40, 60}};
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++)
        for (int f16 = 0; f16 <= 1; f16++)
            for (int head_major = 0; head_major <= 1; head_major++) {
                problem p;
                problem_init(&p, shapes[si], 100, f16, 0, head_major);
                for (size_t ri = 0; ri < sizeof runs / sizeof *runs; ri++)
                    check(&p, isa, runs[ri][0], runs[ri][1], 1e-5, 0, "values");
                problem_free(&p);
            }
    /* The softmax weights themselves, over a wide range of scores (up to about +-60 once scaled
     * by 1/sqrt(hd)): exp within a few ulp. */
    for (int f16 = 0; f16 <= 1; f16++) {
        const shape sh = {4, 2, 128};
        problem p;
        problem_init(&p, sh, 128, f16, 1, 1);
        check(&p, isa, 0, 128, 6e-7, 1, "weights");
        check(&p, isa, 127, 1, 6e-7, 1, "weights");
        problem_free(&p);
    }
}

/* ---- the SIMD tiles' arithmetic (arch/x86/attention_avx2.c and arch/arm/attention_neon.c
 * share it, lane for lane) in plain C, with every rounding where they round: each must give
 * these bits. Lane l of 8 sums elements l, l + 8, ...; a score's tree adds lanes (0+1) + (4+5)
 * and (2+3) + (6+7), then those two; the weights' sum, (0+4) + (2+6) and (1+5) + (3+7). */

/* As written: no contraction of a multiply and an add into one rounding. */
#pragma GCC optimize("fp-contract=off")

static float score_tree(const float l[8]) { return ((l[0] + l[1]) + (l[4] + l[5])) + ((l[2] + l[3]) + (l[6] + l[7])); }
static float sum_tree(const float l[8]) { return ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7])); }

/* The tiles' e^x: n = nearest(x log2 e), f = x - n ln2 (ln2 in two parts, each fused), e^f by
 * its degree-7 Taylor polynomial (Horner, fused), times 2^n; 0 below -87.33. */
static float lanes_exp(float x) {
    const int keep = x >= -87.33f;
    x = x > -87.33f ? x : -87.33f;
    const float n = nearbyintf(x * 1.44269504f);
    const float f = fmaf(-n, 1.428606820309417e-6f, fmaf(-n, 0.693145751953125f, x));
    const float c[] = {1.0f / 720, 1.0f / 120, 1.0f / 24, 1.0f / 6, 0.5f, 1.0f, 1.0f};
    float p = 1.0f / 5040;
    for (int i = 0; i < 7; i++) p = fmaf(p, f, c[i]);
    const uint32_t bits = (uint32_t)((int)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return keep ? p * scale : 0.0f;
}

/* Output of the query at position pos, head h (hd a multiple of 8), as the SIMD tiles compute it. */
static void lanes_reference(const problem *p, int pos, int h, float *out) {
    const shape s = p->sh;
    const int kvh = h / (s.n_head / s.n_head_kv), n = pos + 1;
    const float *q = p->q + ((size_t)pos * s.n_head + h) * s.hd;
    float *w = malloc(n * sizeof(float)), max = -INFINITY, sum[8] = {0};
    for (int j = 0; j < n; j++) {
        const float *k = p->k + ((size_t)j * s.n_head_kv + kvh) * s.hd;
        float lane[8] = {0};
        for (int i = 0; i < s.hd; i++) lane[i % 8] = fmaf(q[i], k[i], lane[i % 8]);
        w[j] = score_tree(lane);
        max = w[j] > max ? w[j] : max;
    }
    for (int j = 0; j < n; j++) sum[j % 8] += w[j] = lanes_exp((w[j] - max) * (1.0f / sqrtf((float)s.hd)));
    const float inv = 1.0f / sum_tree(sum);
    for (int i = 0; i < s.hd; i++) out[i] = 0.0f;
    for (int j = 0; j < n; j++)
        for (int i = 0; i < s.hd; i++)
            out[i] = fmaf(w[j] * inv, p->v[((size_t)j * s.n_head_kv + kvh) * s.hd + i], out[i]);
    free(w);
}

/* A SIMD path's tile (head sizes a multiple of 8) against lanes_reference, bit for bit, in
 * decode and in prefill batches, F32 and F16 caches, both layouts. */
static void test_lanes(bn_isa isa) {
    const shape shapes[] = {{4, 2, 128}, {8, 2, 64}, {8, 4, 8}, {3, 1, 16}};
    const int runs[][2] = {{0, 1}, {8, 1}, {98, 1}, {0, 37}, {5, 27}, {40, 60}};
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++)
        for (int f16 = 0; f16 <= 1; f16++)
            for (int head_major = 0; head_major <= 1; head_major++) {
                const shape sh = shapes[si];
                problem p;
                problem_init(&p, sh, 100, f16, 0, head_major);
                for (size_t ri = 0; ri < sizeof runs / sizeof *runs; ri++) {
                    const int p0 = runs[ri][0], n = runs[ri][1];
                    const size_t row = (size_t)sh.n_head * sh.hd;
                    float *got = malloc(row * n * sizeof(float)), *want = malloc(row * n * sizeof(float));
                    run(&p, isa, p0, n, 1, got);
                    for (int t = 0; t < n; t++)
                        for (int h = 0; h < sh.n_head; h++)
                            lanes_reference(&p, p0 + t, h, want + t * row + (size_t)h * sh.hd);
                    const int bad = count_different(got, want, row * n);
                    CHECK(bad == 0, "%s vs the lanes model: h %d/%d hd %d %s, positions %d..%d: %d outputs differ",
                          bn_isa_name(isa), sh.n_head, sh.n_head_kv, sh.hd, f16 ? "f16" : "f32", p0, p0 + n - 1, bad);
                    free(got);
                    free(want);
                }
                problem_free(&p);
            }
}

int main(void) {
    test_isa(BN_ISA_SCALAR);
    bn_isa best;
    char err[128];
    if (bn_isa_select(&best, err, sizeof err) == 0 && best != BN_ISA_SCALAR) {
        test_isa(best);
        test_lanes(best);
    }
    return bn_test_done("test_attention");
}
