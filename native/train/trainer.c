/* The distillation step: teacher logits, the student's forward and backward on every sequence
 * (one thread per share of the batch), gradient sum and clipping, AdamW. */
#include "train/trainer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "core/threadpool.h"
#include "gguf/gguf.h"
#include "quants/quants.h"
#include "train/grad_ops.h"

typedef struct {
    bn_train_acts *student, *teacher;
    float *grads, *dlogits;
    double loss, kl, nll;
} worker_state;

typedef struct {
    bn_train_shape shape;
    bn_train_layout layout;
    float *params;
} teacher_model;

struct bn_trainer {
    bn_trainer_config c;
    bn_train_layout layout;
    float *params, *effective, *m, *v;
    int64_t steps;
    teacher_model *teacher;
    bn_threadpool *pool;
    worker_state *workers;
    int n_workers;
    /* the batch being processed */
    const int32_t *batch_tokens;
    int batch;
};

/* ---- random init: splitmix64 + Box-Muller, so a seed gives the same student everywhere ---- */

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double uniform01(uint64_t *s) { return ((splitmix(s) >> 11) + 0.5) * (1.0 / 9007199254740992.0); }

static void init_params(bn_trainer *tr) {
    uint64_t seed = tr->c.seed;
    for (int i = 0; i < tr->layout.n_tensors; i++) {
        const bn_train_tensor *t = &tr->layout.tensors[i];
        float *w = tr->params + t->offset;
        int64_t n = t->rows * t->cols;
        if (t->rows == 1) {
            for (int64_t j = 0; j < n; j++) w[j] = 1.0f;
            continue;
        }
        for (int64_t j = 0; j < n; j++) {
            double r = sqrt(-2.0 * log(uniform01(&seed))), a = 2.0 * M_PI * uniform01(&seed);
            w[j] = (float)(r * cos(a) * tr->c.init_std);
        }
    }
}

/* ---- the teacher, read from a GGUF llama model ---- */

static int teacher_shape(const bn_gguf *g, bn_train_shape *s, char *err, size_t errlen) {
    bn_str arch;
    if (bn_gguf_get_str(g, "general.architecture", &arch, err, errlen)) return -1;
    if (!bn_str_eq(arch, "llama")) {
        return bn_fail(err, errlen, "the teacher is a '%.*s' model; distillation reads llama teachers", (int)arch.len, arch.ptr);
    }
    uint32_t dim, hidden, layers, heads, kv_heads;
    float base, eps;
    if (bn_gguf_get_u32(g, "llama.embedding_length", 0, &dim, err, errlen) ||
        bn_gguf_get_u32(g, "llama.feed_forward_length", 0, &hidden, err, errlen) ||
        bn_gguf_get_u32(g, "llama.block_count", 0, &layers, err, errlen) ||
        bn_gguf_get_u32(g, "llama.attention.head_count", 0, &heads, err, errlen) ||
        bn_gguf_get_u32(g, "llama.attention.head_count_kv", heads, &kv_heads, err, errlen) ||
        bn_gguf_get_f32(g, "llama.rope.freq_base", 10000.0f, &base, err, errlen) ||
        bn_gguf_get_f32(g, "llama.attention.layer_norm_rms_epsilon", 1e-5f, &eps, err, errlen)) {
        return -1;
    }
    const bn_gguf_tensor *embd = bn_gguf_find_tensor(g, "token_embd.weight");
    if (!embd) return bn_fail(err, errlen, "the teacher has no token_embd.weight");
    if (heads == 0 || dim % heads) return bn_fail(err, errlen, "the teacher's %u heads do not divide its width %u", heads, dim);
    *s = (bn_train_shape){
        .vocab = (int)embd->ne[1], .dim = (int)dim, .hidden = (int)hidden, .layers = (int)layers,
        .heads = (int)heads, .kv_heads = (int)kv_heads, .head_dim = (int)(dim / heads),
        .tied = bn_gguf_find_tensor(g, "output.weight") == NULL, .rope_base = base, .norm_eps = eps,
    };
    return 0;
}

static int teacher_load(teacher_model *t, const char *path, char *err, size_t errlen) {
    bn_gguf *g = NULL;
    if (bn_gguf_open(path, &g, err, errlen)) return -1;
    int rc = -1;
    if (teacher_shape(g, &t->shape, err, errlen) || bn_train_layout_init(&t->layout, &t->shape, err, errlen)) goto done;
    t->params = malloc(sizeof(float) * (size_t)t->layout.n_params);
    if (!t->params) {
        bn_fail(err, errlen, "out of memory for the teacher's %lld weights", (long long)t->layout.n_params);
        goto done;
    }
    for (int i = 0; i < t->layout.n_tensors; i++) {
        const bn_train_tensor *want = &t->layout.tensors[i];
        const bn_gguf_tensor *have = bn_gguf_find_tensor(g, want->name);
        const bn_type_traits *traits = have ? bn_type_get(have->type) : NULL;
        if (!have || have->ne[0] != (uint64_t)want->cols || have->n_elements != (uint64_t)(want->cols * want->rows)) {
            bn_fail(err, errlen, "the teacher's %s is missing or not [%lld, %lld]", want->name, (long long)want->cols, (long long)want->rows);
            goto done;
        }
        if (!traits || !traits->to_float) {
            bn_fail(err, errlen, "the teacher's %s has a type that cannot be read as floats", want->name);
            goto done;
        }
        traits->to_float(have->data, t->params + want->offset, (int64_t)have->n_elements);
    }
    rc = 0;
done:
    bn_gguf_close(g);
    return rc;
}

static void teacher_free(teacher_model *t) {
    if (!t) return;
    bn_train_layout_free(&t->layout);
    free(t->params);
    free(t);
}

/* ---- construction ---- */

void bn_trainer_free(bn_trainer *tr) {
    if (!tr) return;
    for (int i = 0; tr->workers && i < tr->n_workers; i++) {
        bn_train_acts_free(tr->workers[i].student);
        bn_train_acts_free(tr->workers[i].teacher);
        free(tr->workers[i].grads);
        free(tr->workers[i].dlogits);
    }
    free(tr->workers);
    if (tr->pool) bn_threadpool_free(tr->pool);
    teacher_free(tr->teacher);
    bn_train_layout_free(&tr->layout);
    free(tr->params);
    free(tr->effective);
    free(tr->m);
    free(tr->v);
    free(tr);
}

static int check_config(const bn_trainer_config *c, char *err, size_t errlen) {
    if (c->seq_len < 1 || c->seq_len > 8192) return bn_fail(err, errlen, "seq_len %d is not in 1..8192", c->seq_len);
    if (c->threads < 1 || c->threads > 256) return bn_fail(err, errlen, "threads %d is not in 1..256", c->threads);
    if (!(c->lr > 0) || !(c->lr_min >= 0) || c->lr_min > c->lr) return bn_fail(err, errlen, "learning rates must satisfy 0 <= lr_min <= lr, lr > 0");
    if (c->warmup_steps < 0 || c->total_steps < 1) return bn_fail(err, errlen, "total_steps must be >= 1 and warmup_steps >= 0");
    if (!(c->beta1 >= 0 && c->beta1 < 1) || !(c->beta2 >= 0 && c->beta2 < 1) || !(c->adam_eps > 0)) return bn_fail(err, errlen, "bad AdamW betas or eps");
    if (!(c->weight_decay >= 0) || !(c->clip >= 0) || !(c->kl_weight >= 0) || !(c->ce_weight >= 0) || !(c->init_std > 0)) {
        return bn_fail(err, errlen, "weight decay, clip, loss weights must be >= 0 and init_std > 0");
    }
    if (c->kl_weight == 0 && c->ce_weight == 0) return bn_fail(err, errlen, "both loss weights are 0: nothing to learn");
    if (c->quantize) {
        if (c->shape.dim % 128 || c->shape.hidden % 128 || (c->shape.heads * c->shape.head_dim) % 128) {
            return bn_fail(err, errlen, "a 1-bit student needs its width, FFN width and heads x head_dim to be multiples of 128 (Q1_0 blocks), not %d, %d, %d",
                           c->shape.dim, c->shape.hidden, c->shape.heads * c->shape.head_dim);
        }
    }
    return 0;
}

bn_trainer *bn_trainer_new(const bn_trainer_config *config, const char *teacher_path, char *err, size_t errlen) {
    if (check_config(config, err, errlen)) return NULL;
    bn_trainer *tr = calloc(1, sizeof *tr);
    if (!tr) {
        bn_fail(err, errlen, "out of memory");
        return NULL;
    }
    tr->c = *config;
    if (bn_train_layout_init(&tr->layout, &tr->c.shape, err, errlen)) goto fail;
    if (teacher_path) {
        tr->teacher = calloc(1, sizeof *tr->teacher);
        if (!tr->teacher || teacher_load(tr->teacher, teacher_path, err, errlen)) goto fail;
        if (tr->teacher->shape.vocab != tr->c.shape.vocab) {
            bn_fail(err, errlen, "the teacher's vocabulary has %d tokens, the student's %d", tr->teacher->shape.vocab, tr->c.shape.vocab);
            goto fail;
        }
    }
    const size_t bytes = sizeof(float) * (size_t)tr->layout.n_params;
    tr->params = malloc(bytes), tr->effective = malloc(bytes), tr->m = calloc(1, bytes), tr->v = calloc(1, bytes);
    tr->n_workers = tr->c.threads;
    tr->workers = calloc((size_t)tr->n_workers, sizeof *tr->workers);
    tr->pool = bn_threadpool_new(tr->n_workers);
    if (!tr->params || !tr->effective || !tr->m || !tr->v || !tr->workers || !tr->pool) goto oom;
    const int T = tr->c.seq_len + 1;
    for (int i = 0; i < tr->n_workers; i++) {
        worker_state *w = &tr->workers[i];
        w->student = bn_train_acts_new(&tr->c.shape, T);
        w->grads = malloc(bytes);
        w->dlogits = malloc(sizeof(float) * (size_t)T * tr->c.shape.vocab);
        if (tr->teacher) w->teacher = bn_train_acts_new(&tr->teacher->shape, T);
        if (!w->student || !w->grads || !w->dlogits || (tr->teacher && !w->teacher)) goto oom;
    }
    init_params(tr);
    return tr;
oom:
    bn_fail(err, errlen, "out of memory for the trainer (%lld parameters, %d threads)", (long long)tr->layout.n_params, tr->n_workers);
fail:
    bn_trainer_free(tr);
    return NULL;
}

/* ---- the step ---- */

static void refresh_effective(bn_trainer *tr) {
    memcpy(tr->effective, tr->params, sizeof(float) * (size_t)tr->layout.n_params);
    if (!tr->c.quantize) return;
    for (int i = 0; i < tr->layout.n_tensors; i++) {
        const bn_train_tensor *t = &tr->layout.tensors[i];
        if (t->rows > 1) bn_sign_quantize(tr->effective + t->offset, tr->params + t->offset, t->rows, t->cols);
    }
}

static int check_tokens(const bn_trainer *tr, const int32_t *tokens, int64_t n, char *err, size_t errlen) {
    for (int64_t i = 0; i < n; i++) {
        if (tokens[i] < 0 || tokens[i] >= tr->c.shape.vocab) {
            return bn_fail(err, errlen, "token %d at %lld is outside the vocabulary (0..%d)", tokens[i], (long long)i, tr->c.shape.vocab - 1);
        }
    }
    return 0;
}

static void step_worker(void *arg, int ith, int nth) {
    bn_trainer *tr = arg;
    worker_state *w = &tr->workers[ith];
    const bn_train_shape *s = &tr->c.shape;
    const int T = tr->c.seq_len, V = s->vocab;
    const float scale = 1.0f / ((float)tr->batch * T);
    memset(w->grads, 0, sizeof(float) * (size_t)tr->layout.n_params);
    w->loss = w->kl = w->nll = 0.0;
    for (int b = ith; b < tr->batch; b += nth) {
        const int32_t *seq = tr->batch_tokens + (int64_t)b * (T + 1);
        const float *teacher_logits = NULL;
        if (tr->teacher && tr->c.kl_weight > 0) {
            bn_train_forward(&tr->teacher->shape, &tr->teacher->layout, tr->teacher->params, seq, T, w->teacher);
            teacher_logits = bn_train_acts_logits(w->teacher);
        }
        bn_train_forward(s, &tr->layout, tr->effective, seq, T, w->student);
        const float *z = bn_train_acts_logits(w->student);
        for (int t = 0; t < T; t++) {
            double kl = 0.0;
            const float *tl = teacher_logits ? teacher_logits + (int64_t)t * V : NULL;
            double nll = bn_distill_loss(w->dlogits + (int64_t)t * V, z + (int64_t)t * V, tl, seq[t + 1], V,
                                         tl ? tr->c.kl_weight : 0.0f, tr->c.ce_weight, scale, &kl);
            w->nll += nll, w->kl += kl;
            w->loss += (tl ? tr->c.kl_weight * kl : 0.0) + tr->c.ce_weight * nll;
        }
        bn_train_backward(s, &tr->layout, tr->effective, w->grads, seq, T, w->dlogits, w->student);
    }
}

typedef struct {
    bn_trainer *tr;
    double lr, clip_scale;
} update_args;

/* Sums the workers' gradients into worker 0's over [begin, end). */
static void reduce_range(const void *arg, long begin, long end) {
    const bn_trainer *tr = arg;
    float *g0 = tr->workers[0].grads;
    for (int i = 1; i < tr->n_workers; i++) {
        const float *gi = tr->workers[i].grads;
        for (long j = begin; j < end; j++) g0[j] += gi[j];
    }
}

static void adamw_tensor(bn_trainer *tr, const bn_train_tensor *t, double lr, double clip_scale) {
    const bn_trainer_config *c = &tr->c;
    const double b1c = 1.0 - pow(c->beta1, (double)(tr->steps + 1)), b2c = 1.0 - pow(c->beta2, (double)(tr->steps + 1));
    /* norms are not decayed: shrinking them only fights the normalization */
    const float decay = t->rows > 1 ? (float)(lr * c->weight_decay) : 0.0f;
    const float step = (float)(lr / b1c), inv_b2c = (float)(1.0 / b2c);
    float *w = tr->params + t->offset, *m = tr->m + t->offset, *v = tr->v + t->offset;
    const float *g = tr->workers[0].grads + t->offset;
    for (int64_t j = 0; j < t->rows * t->cols; j++) {
        float gj = g[j] * (float)clip_scale;
        m[j] = c->beta1 * m[j] + (1.0f - c->beta1) * gj;
        v[j] = c->beta2 * v[j] + (1.0f - c->beta2) * gj * gj;
        w[j] -= step * m[j] / (sqrtf(v[j] * inv_b2c) + c->adam_eps) + decay * w[j];
    }
}

double bn_trainer_lr_at(const bn_trainer_config *c, int64_t step) {
    if (step < c->warmup_steps) return c->lr * (double)(step + 1) / c->warmup_steps;
    double span = c->total_steps - c->warmup_steps;
    double p = span > 0 ? (double)(step - c->warmup_steps) / span : 1.0;
    if (p > 1.0) p = 1.0;
    return c->lr_min + 0.5 * (c->lr - c->lr_min) * (1.0 + cos(M_PI * p));
}

int bn_trainer_step(bn_trainer *tr, const int32_t *tokens, int batch, bn_train_metrics *out, char *err, size_t errlen) {
    if (batch < 1) return bn_fail(err, errlen, "a batch needs at least one sequence");
    if (check_tokens(tr, tokens, (int64_t)batch * (tr->c.seq_len + 1), err, errlen)) return -1;
    refresh_effective(tr);
    tr->batch_tokens = tokens, tr->batch = batch;
    bn_threadpool_set_threads(tr->pool, batch < tr->n_workers ? batch : tr->n_workers);
    int used = bn_threadpool_threads(tr->pool);
    for (int i = used; i < tr->n_workers; i++) memset(tr->workers[i].grads, 0, sizeof(float) * (size_t)tr->layout.n_params);
    bn_threadpool_run(tr->pool, step_worker, tr);
    bn_threadpool_set_threads(tr->pool, tr->n_workers);
    bn_parallel_ranges(tr->pool, (long)tr->layout.n_params, 16, 1 << 16, reduce_range, tr);

    double sq = 0.0;
    const float *g = tr->workers[0].grads;
    for (int64_t j = 0; j < tr->layout.n_params; j++) sq += (double)g[j] * g[j];
    const double norm = sqrt(sq);
    if (!isfinite(norm)) return bn_fail(err, errlen, "the gradient is not finite at step %lld: lower the learning rate", (long long)tr->steps);
    const double clip_scale = tr->c.clip > 0 && norm > tr->c.clip ? tr->c.clip / norm : 1.0;
    const double lr = bn_trainer_lr_at(&tr->c, tr->steps);
    for (int i = 0; i < tr->layout.n_tensors; i++) adamw_tensor(tr, &tr->layout.tensors[i], lr, clip_scale);
    tr->steps++;

    double loss = 0, kl = 0, nll = 0;
    for (int i = 0; i < used; i++) loss += tr->workers[i].loss, kl += tr->workers[i].kl, nll += tr->workers[i].nll;
    const double positions = (double)batch * tr->c.seq_len;
    *out = (bn_train_metrics){.loss = loss / positions, .kl = kl / positions, .nll = nll / positions,
                              .grad_norm = norm, .lr = lr, .step = tr->steps};
    return 0;
}

int bn_trainer_score(bn_trainer *tr, int teacher, const int32_t *tokens, int n, double *nll_sum, char *err, size_t errlen) {
    if (n < 2 || n > tr->c.seq_len + 1) return bn_fail(err, errlen, "a scored sequence has 2..%d tokens, not %d", tr->c.seq_len + 1, n);
    if (teacher && !tr->teacher) return bn_fail(err, errlen, "there is no teacher");
    if (check_tokens(tr, tokens, n, err, errlen)) return -1;
    worker_state *w = &tr->workers[0];
    const int V = tr->c.shape.vocab;
    if (teacher) {
        bn_train_forward(&tr->teacher->shape, &tr->teacher->layout, tr->teacher->params, tokens, n - 1, w->teacher);
    } else {
        refresh_effective(tr);
        bn_train_forward(&tr->c.shape, &tr->layout, tr->effective, tokens, n - 1, w->student);
    }
    const float *z = bn_train_acts_logits(teacher ? w->teacher : w->student);
    double sum = 0.0;
    for (int t = 0; t + 1 < n; t++) {
        sum += bn_distill_loss(w->dlogits, z + (int64_t)t * V, NULL, tokens[t + 1], V, 0.0f, 1.0f, 1.0f, NULL);
    }
    *nll_sum = sum;
    return 0;
}

int bn_trainer_teacher_logits(bn_trainer *tr, const int32_t *tokens, int n, float *out, char *err, size_t errlen) {
    if (!tr->teacher) return bn_fail(err, errlen, "there is no teacher");
    if (n < 1 || n > tr->c.seq_len + 1) return bn_fail(err, errlen, "a sequence has 1..%d tokens, not %d", tr->c.seq_len + 1, n);
    if (check_tokens(tr, tokens, n, err, errlen)) return -1;
    bn_train_acts *a = tr->workers[0].teacher;
    bn_train_forward(&tr->teacher->shape, &tr->teacher->layout, tr->teacher->params, tokens, n, a);
    memcpy(out, bn_train_acts_logits(a), sizeof(float) * (size_t)n * tr->c.shape.vocab);
    return 0;
}

const bn_train_layout *bn_trainer_layout(const bn_trainer *tr) { return &tr->layout; }
float *bn_trainer_params(bn_trainer *tr) { return tr->params; }
float *bn_trainer_moment(bn_trainer *tr, int which) { return which ? tr->v : tr->m; }
int64_t *bn_trainer_steps(bn_trainer *tr) { return &tr->steps; }

const float *bn_trainer_effective_params(bn_trainer *tr) {
    refresh_effective(tr);
    return tr->effective;
}
