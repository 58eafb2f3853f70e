/* The training pass's gradients against finite differences: every op on its own, then the whole
 * decoder; a tiny 1-bit student overfitting a few sequences; the teacher's forward against the
 * llama.cpp logits of stories260K; the sign quantizer against the Q1_0 format's own quantizer. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "quants/quants.h"
#include "train/grad_ops.h"
#include "train/trainer.h"
#include "train/transformer.h"

static uint32_t rng = 12345;

static void fill(float *x, int64_t n, float scale) {
    for (int64_t i = 0; i < n; i++) x[i] = bn_test_rand_unit(&rng) * scale;
}

static double weighted_sum(const float *y, const float *r, int64_t n) {
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) s += (double)y[i] * r[i];
    return s;
}

/* Largest |a[i] - b[i]|, b NULL meaning zeros. A branch, not fmax: aarch64 gcc 12 crashes
 * (internal compiler error in vect_transform_reduction) vectorizing an fmax reduction here. */
static double max_abs_diff(const float *a, const float *b, int64_t n) {
    double worst = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (b ? b[i] : 0.0f));
        if (d > worst) worst = d;
    }
    return worst;
}

/* Compares analytic gradients of `loss` with respect to x[0..n) with central differences, on at
 * most `samples` entries spread over x. */
typedef double (*loss_fn)(void *ctx);

/* Relative error with a floor of `floor` on the denominator, so gradients far below the typical
 * size, where float rounding of the loss dominates the difference, are judged in absolute terms. */
static void check_grad(const char *what, float *x, const float *analytic, int64_t n, int samples, loss_fn loss, void *ctx,
                       float eps, double floor, double tol) {
    int64_t stride = n > samples ? n / samples : 1;
    double worst = 0.0;
    for (int64_t i = 0; i < n; i += stride) {
        float keep = x[i];
        x[i] = keep + eps;
        double up = loss(ctx);
        x[i] = keep - eps;
        double down = loss(ctx);
        x[i] = keep;
        double numeric = (up - down) / (2.0 * eps);
        double err = fabs(numeric - analytic[i]) / (floor + fmax(fabs(numeric), fabs(analytic[i])));
        if (err > worst) worst = err;
        CHECK(err < tol, "%s[%lld]: analytic %.6g, finite differences %.6g", what, (long long)i, analytic[i], numeric);
    }
    printf("  %-26s worst relative error %.2e\n", what, worst);
}

/* ---- per-op checks: loss = sum(r * op(inputs)) ---- */

enum { T = 5, IN = 12, OUT = 7, HEADS = 4, KV = 2, HD = 6 };

typedef struct { float *x, *w, *y, *r; } linear_ctx;
static double linear_loss(void *p) {
    linear_ctx *c = p;
    bn_linear_fwd(c->y, c->x, c->w, T, IN, OUT);
    return weighted_sum(c->y, c->r, T * OUT);
}

static void test_linear(void) {
    float x[T * IN], w[OUT * IN], y[T * OUT], r[T * OUT], dx[T * IN] = {0}, dw[OUT * IN] = {0};
    fill(x, T * IN, 1), fill(w, OUT * IN, 1), fill(r, T * OUT, 1);
    bn_linear_bwd(dx, dw, r, x, w, T, IN, OUT);
    linear_ctx c = {x, w, y, r};
    check_grad("linear dx", x, dx, T * IN, 60, linear_loss, &c, 1e-2f, 1e-3, 1e-3);
    check_grad("linear dw", w, dw, OUT * IN, 84, linear_loss, &c, 1e-2f, 1e-3, 1e-3);
}

typedef struct { float *x, *w, *y, *rs, *r; } norm_ctx;
static double norm_loss(void *p) {
    norm_ctx *c = p;
    bn_rmsnorm_fwd(c->y, c->rs, c->x, c->w, T, IN, 1e-5f);
    return weighted_sum(c->y, c->r, T * IN);
}

static void test_rmsnorm(void) {
    float x[T * IN], w[IN], y[T * IN], rs[T], r[T * IN], dx[T * IN] = {0}, dw[IN] = {0};
    fill(x, T * IN, 1), fill(w, IN, 1), fill(r, T * IN, 1);
    norm_ctx c = {x, w, y, rs, r};
    norm_loss(&c);
    bn_rmsnorm_bwd(dx, dw, r, x, rs, w, T, IN);
    check_grad("rmsnorm dx", x, dx, T * IN, 60, norm_loss, &c, 1e-2f, 1e-3, 2e-3);
    check_grad("rmsnorm dw", w, dw, IN, IN, norm_loss, &c, 1e-2f, 1e-3, 2e-3);
}

static void test_rope(void) {
    /* the backward of a rotation is its transpose: <R x, y> = <x, R^T y> */
    float cs[T * HD], x[T * HEADS * HD], y[T * HEADS * HD], rx[T * HEADS * HD], ry[T * HEADS * HD];
    bn_rope_table(cs, T, HD, 10000.0f);
    fill(x, T * HEADS * HD, 1), fill(y, T * HEADS * HD, 1);
    memcpy(rx, x, sizeof x), memcpy(ry, y, sizeof y);
    bn_rope_apply_seq(rx, cs, T, HEADS, HD, 0);
    bn_rope_apply_seq(ry, cs, T, HEADS, HD, 1);
    double a = weighted_sum(rx, y, T * HEADS * HD), b = weighted_sum(x, ry, T * HEADS * HD);
    CHECK(fabs(a - b) < 1e-4, "<Rx,y> %.7f vs <x,R^T y> %.7f", a, b);
    bn_rope_apply_seq(rx, cs, T, HEADS, HD, 1);
    double err = max_abs_diff(rx, x, T * HEADS * HD);
    CHECK(err < 1e-5, "R^T R x differs from x by %g", err);
}

typedef struct { float *q, *k, *v, *out, *probs, *r; } attn_ctx;
static double attn_loss(void *p) {
    attn_ctx *c = p;
    float scratch[BN_ATTENTION_SCRATCH(T, HD)];
    bn_attention_fwd(c->out, c->probs, c->q, c->k, c->v, T, HEADS, KV, HD, scratch);
    return weighted_sum(c->out, c->r, T * HEADS * HD);
}

static void test_attention(void) {
    float q[T * HEADS * HD], k[T * KV * HD], v[T * KV * HD], out[T * HEADS * HD], probs[HEADS * T * T], r[T * HEADS * HD];
    float dq[T * HEADS * HD] = {0}, dk[T * KV * HD] = {0}, dv[T * KV * HD] = {0}, scratch[BN_ATTENTION_SCRATCH(T, HD)];
    fill(q, T * HEADS * HD, 1), fill(k, T * KV * HD, 1), fill(v, T * KV * HD, 1), fill(r, T * HEADS * HD, 1);
    attn_ctx c = {q, k, v, out, probs, r};
    attn_loss(&c);
    bn_attention_bwd(dq, dk, dv, r, probs, q, k, v, T, HEADS, KV, HD, scratch);
    check_grad("attention dq", q, dq, T * HEADS * HD, 120, attn_loss, &c, 1e-2f, 1e-3, 5e-3);
    check_grad("attention dk", k, dk, T * KV * HD, 60, attn_loss, &c, 1e-2f, 1e-3, 5e-3);
    check_grad("attention dv", v, dv, T * KV * HD, 60, attn_loss, &c, 1e-2f, 1e-3, 5e-3);
    /* causality: the first position sees only itself */
    for (int h = 0; h < HEADS; h++) CHECK(probs[h * T * T] == 1.0f && probs[h * T * T + 1] == 0.0f, "head %d row 0 is not [1, 0...]", h);
}

typedef struct { float *g, *u, *h, *r; } swiglu_ctx;
static double swiglu_loss(void *p) {
    swiglu_ctx *c = p;
    bn_swiglu_fwd(c->h, c->g, c->u, T * IN);
    return weighted_sum(c->h, c->r, T * IN);
}

static void test_swiglu(void) {
    float g[T * IN], u[T * IN], h[T * IN], r[T * IN], dg[T * IN] = {0}, du[T * IN] = {0};
    fill(g, T * IN, 3), fill(u, T * IN, 1), fill(r, T * IN, 1);
    bn_swiglu_bwd(dg, du, r, g, u, T * IN);
    swiglu_ctx c = {g, u, h, r};
    check_grad("swiglu dg", g, dg, T * IN, 60, swiglu_loss, &c, 1e-2f, 1e-3, 1e-3);
    check_grad("swiglu du", u, du, T * IN, 60, swiglu_loss, &c, 1e-2f, 1e-3, 1e-3);
}

enum { V = 11 };
typedef struct { float *z, *teacher, *dz; } loss_ctx;
static double distill_loss(void *p) {
    loss_ctx *c = p;
    double kl = 0.0;
    double nll = bn_distill_loss(c->dz, c->z, c->teacher, 3, V, 0.7f, 0.3f, 1.0f, &kl);
    return 0.7 * kl + 0.3 * nll;
}

static void test_distill_loss(void) {
    float z[V], teacher[V], dz[V], analytic[V];
    fill(z, V, 3), fill(teacher, V, 3);
    loss_ctx c = {z, teacher, dz};
    double kl = 0.0;
    bn_distill_loss(analytic, z, teacher, 3, V, 0.7f, 0.3f, 1.0f, &kl);
    CHECK(kl > 0.0, "KL of two different distributions is %g", kl);
    check_grad("distill loss dz", z, analytic, V, V, distill_loss, &c, 1e-2f, 1e-3, 1e-3);
    /* a student equal to the teacher has KL 0 and no KL gradient */
    bn_distill_loss(dz, teacher, teacher, 3, V, 1.0f, 0.0f, 1.0f, &kl);
    double g = max_abs_diff(dz, NULL, V);
    CHECK(fabs(kl) < 1e-9 && g < 1e-6, "KL(p||p) = %g, max |grad| %g", kl, g);
}

/* ---- the whole decoder ---- */

typedef struct {
    bn_train_shape s;
    bn_train_layout layout;
    bn_train_acts *acts;
    float *params, *teacher, *dlogits;
    int32_t tokens[T + 1];
} model_ctx;

static double model_loss(void *p) {
    model_ctx *c = p;
    bn_train_forward(&c->s, &c->layout, c->params, c->tokens, T, c->acts);
    const float *z = bn_train_acts_logits(c->acts);
    double sum = 0.0;
    for (int t = 0; t < T; t++) {
        double kl = 0.0;
        double nll = bn_distill_loss(c->dlogits + t * c->s.vocab, z + t * c->s.vocab, c->teacher + t * c->s.vocab,
                                     c->tokens[t + 1], c->s.vocab, 0.5f, 0.5f, 1.0f, &kl);
        sum += 0.5 * kl + 0.5 * nll;
    }
    return sum;
}

static void test_model(int tied) {
    model_ctx c = {.s = {.vocab = 13, .dim = 8, .hidden = 12, .layers = 2, .heads = 4, .kv_heads = 2, .head_dim = 4,
                         .tied = tied, .rope_base = 10000.0f, .norm_eps = 1e-5f}};
    char err[256];
    CHECK(bn_train_layout_init(&c.layout, &c.s, err, sizeof err) == 0, "%s", err);
    c.acts = bn_train_acts_new(&c.s, T);
    c.params = malloc(sizeof(float) * c.layout.n_params);
    float *grads = calloc((size_t)c.layout.n_params, sizeof(float));
    c.teacher = malloc(sizeof(float) * T * c.s.vocab);
    c.dlogits = malloc(sizeof(float) * T * c.s.vocab);
    fill(c.params, c.layout.n_params, 0.6f);
    for (int i = 0; i < c.layout.n_tensors; i++) {
        const bn_train_tensor *t = &c.layout.tensors[i];
        if (t->rows == 1) {
            for (int j = 0; j < t->cols; j++) c.params[t->offset + j] += 1.0f;
        }
    }
    fill(c.teacher, T * c.s.vocab, 2);
    for (int t = 0; t <= T; t++) c.tokens[t] = (t * 5 + 3) % c.s.vocab;
    c.tokens[2] = c.tokens[4]; /* a repeated token: its embedding row gets two gradients */
    model_loss(&c);
    bn_train_backward(&c.s, &c.layout, c.params, grads, c.tokens, T, c.dlogits, c.acts);
    for (int i = 0; i < c.layout.n_tensors; i++) {
        const bn_train_tensor *t = &c.layout.tensors[i];
        char what[64];
        snprintf(what, sizeof what, "%s%s", tied ? "tied " : "", t->name);
        check_grad(what, c.params + t->offset, grads + t->offset, t->rows * t->cols, 24, model_loss, &c, 1e-2f, 5e-3, 2e-2);
    }
    bn_train_acts_free(c.acts);
    bn_train_layout_free(&c.layout);
    free(c.params), free(grads), free(c.teacher), free(c.dlogits);
}

/* ---- the sign quantizer is the GGUF's Q1_0 ---- */

static void test_sign_quantize(void) {
    enum { ROWS = 3, N = 256 };
    float w[ROWS * N], q[ROWS * N], back[ROWS * N];
    fill(w, ROWS * N, 0.05f);
    w[7] = 0.0f; /* zero counts as positive in Q1_0 */
    bn_sign_quantize(q, w, ROWS, N);
    const bn_type_traits *t = bn_type_get(BN_TYPE_Q1_0);
    uint8_t blocks[ROWS * N / 128 * 18];
    t->from_float(w, blocks, ROWS * N);
    t->to_float(blocks, back, ROWS * N);
    CHECK(memcmp(q, back, sizeof q) == 0, "sign quantization differs from Q1_0 quantize + dequantize");
}

/* ---- a 1-bit student learns a few sequences by heart ---- */

static void test_overfit(void) {
    bn_trainer_config cfg = {
        .shape = {.vocab = 32, .dim = 128, .hidden = 128, .layers = 1, .heads = 4, .kv_heads = 2, .head_dim = 32,
                  .tied = 1, .rope_base = 10000.0f, .norm_eps = 1e-5f},
        .seq_len = 16, .quantize = 1, .threads = 2, .lr = 1e-2f, .lr_min = 1e-3f, .warmup_steps = 10, .total_steps = 300,
        .beta1 = 0.9f, .beta2 = 0.99f, .adam_eps = 1e-8f, .weight_decay = 0.0f, .clip = 1.0f,
        .kl_weight = 0.0f, .ce_weight = 1.0f, .init_std = 0.02f, .seed = 7,
    };
    char err[256];
    bn_trainer *tr = bn_trainer_new(&cfg, NULL, err, sizeof err);
    CHECK(tr != NULL, "%s", err);
    if (!tr) return;
    int32_t tokens[4][17];
    uint32_t s = 99;
    for (int b = 0; b < 4; b++) {
        for (int t = 0; t < 17; t++) tokens[b][t] = (int32_t)((bn_test_rand_unit(&s) + 1.0f) * 16.0f) % 32;
    }
    bn_train_metrics m = {0}, first = {0};
    for (int step = 0; step < cfg.total_steps; step++) {
        CHECK(bn_trainer_step(tr, &tokens[0][0], 4, &m, err, sizeof err) == 0, "%s", err);
        if (step == 0) first = m;
    }
    printf("  overfit: NLL %.3f -> %.4f in %lld steps (1-bit forward)\n", first.nll, m.nll, (long long)m.step);
    CHECK(first.nll > 3.0, "the first NLL %.3f is not near ln 32", first.nll);
    CHECK(m.nll < 0.05, "after %d steps the NLL is still %.4f", cfg.total_steps, m.nll);
    /* the score path runs the same quantized forward */
    double sum = 0;
    CHECK(bn_trainer_score(tr, 0, tokens[1], 17, &sum, err, sizeof err) == 0, "%s", err);
    CHECK(sum / 16 < 0.1, "scored NLL %.4f after overfitting", sum / 16);
    int32_t bad[17] = {0};
    bad[5] = 32;
    CHECK(bn_trainer_step(tr, bad, 1, &m, err, sizeof err) == -1 && strstr(err, "outside the vocabulary"), "a bad token id is refused: %s", err);
    bn_trainer_free(tr);
}

/* ---- the teacher forward is llama.cpp's ---- */

static void test_teacher_matches_llamacpp(void) {
    const int32_t ids[37] = {1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401, 396,
                             267, 337, 410, 408, 419, 292, 411, 322, 265, 282, 295, 433, 426, 385, 328, 432, 358, 394};
    size_t size = 0;
    float *golden = bn_read_fixture("stories260K/golden-llamacpp/once_upon_a_time_n32.logits.f32", &size);
    CHECK(size == sizeof(float) * 37 * 512, "golden size %zu", size);
    bn_trainer_config cfg = {
        .shape = {.vocab = 512, .dim = 128, .hidden = 128, .layers = 1, .heads = 4, .kv_heads = 4, .head_dim = 32,
                  .tied = 1, .rope_base = 10000.0f, .norm_eps = 1e-5f},
        .seq_len = 64, .quantize = 1, .threads = 1, .lr = 1e-3f, .total_steps = 1, .beta1 = 0.9f, .beta2 = 0.99f,
        .adam_eps = 1e-8f, .kl_weight = 1.0f, .init_std = 0.02f,
    };
    char err[256];
    bn_trainer *tr = bn_trainer_new(&cfg, bn_fixture("stories260K/stories260K.gguf"), err, sizeof err);
    CHECK(tr != NULL, "%s", err);
    if (!tr) return;
    float *logits = malloc(sizeof(float) * 37 * 512);
    CHECK(bn_trainer_teacher_logits(tr, ids, 37, logits, err, sizeof err) == 0, "%s", err);
    double worst = max_abs_diff(logits, golden, 37 * 512);
    printf("  teacher vs llama.cpp: max |dlogit| %.2e over 37 x 512\n", worst);
    CHECK(worst < 1e-4, "teacher logits differ from llama.cpp's by %g", worst);
    free(logits);
    free(golden);
    bn_trainer_free(tr);
    bn_trainer_config wrong = cfg;
    wrong.shape.vocab = 500;
    CHECK(bn_trainer_new(&wrong, bn_fixture("stories260K/stories260K.gguf"), err, sizeof err) == NULL && strstr(err, "vocabulary"),
          "a student with another vocabulary is refused: %s", err);
    CHECK(bn_trainer_new(&cfg, "/nonexistent.gguf", err, sizeof err) == NULL, "a missing teacher is refused");
}

int main(void) {
    test_linear();
    test_rmsnorm();
    test_rope();
    test_attention();
    test_swiglu();
    test_distill_loss();
    test_model(0);
    test_model(1);
    test_sign_quantize();
    test_overfit();
    test_teacher_matches_llamacpp();
    return bn_test_done("test_train_grad");
}
