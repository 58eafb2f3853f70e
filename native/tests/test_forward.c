/* The forward pass against reference logits: stories260K (llama) from llama2.c's run.c and
 * llama.cpp, and tiny qwen3 models in five weight types from llama.cpp; greedy generation,
 * chunked evaluation (KV cache), thread counts, and load/eval errors. */
#include <stdint.h>
#include "model_harness.h"
#include "core/common.h"

#define TOL 1e-4f

/* Parses the numbers of the JSON array that follows the nth (0-based) occurrence of "key". */
static int json_numbers(const char *text, const char *key, int nth, double *out, int max) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\"", key);
    const char *p = text;
    for (int i = 0; i <= nth; i++) {
        p = strstr(p, pat);
        if (!p) return -1;
        p += strlen(pat);
    }
    p = strchr(p, '[');
    if (!p) return -1;
    int n = 0;
    for (p++; *p && *p != ']' && n < max;) {
        char *end;
        const double v = strtod(p, &end);
        if (end == p) {
            p++;
            continue;
        }
        out[n++] = v;
        p = end;
    }
    return n;
}

static int json_ids(const char *text, const char *key, int32_t *out, int max) {
    double v[1024];
    const int n = json_numbers(text, key, 0, v, max < 1024 ? max : 1024);
    for (int i = 0; i < n; i++) out[i] = (int32_t)v[i];
    return n;
}

static char *read_text(const char *rel) {
    size_t n;
    char *buf = bn_read_fixture(rel, &n);
    char *s = realloc(buf, n + 1);
    s[n] = 0;
    return s;
}

static float max_abs_diff(const float *a, const float *b, size_t n) {
    float m = 0.0f;
    for (size_t i = 0; i < n; i++) {
        const float d = fabsf(a[i] - b[i]);
        if (!(d <= m)) m = d; /* NaN propagates as a failure */
    }
    return m;
}

/* Evaluates ids from an empty context, in two evals split at `split` (0: one batch);
 * returns [n][n_vocab] logits. */
static float *eval_all(bn_context *c, const int32_t *ids, int n, int split, int n_vocab) {
    char err[512];
    float *logits = malloc((size_t)n * n_vocab * sizeof(float));
    bn_context_truncate(c, 0);
    const int first = split > 0 ? split : n;
    if (bn_context_eval(c, ids, first, logits, 1, err, sizeof err) ||
        (first < n && bn_context_eval(c, ids + first, n - first, logits + (size_t)first * n_vocab, 1, err,
                                      sizeof err))) {
        fprintf(stderr, "eval: %s\n", err);
        exit(1);
    }
    CHECK(bn_context_n_past(c) == n, "n_past %d after %d tokens", bn_context_n_past(c), n);
    return logits;
}

typedef struct collected {
    int32_t ids[512];
    int n;
} collected;

static int collect(void *user, int32_t tok) {
    collected *c = user;
    if (c->n < 512) c->ids[c->n++] = tok;
    return 0;
}

static void run_greedy(bn_context *c, const int32_t *prompt, int n_prompt, int max_tokens, collected *out,
                       bn_generate_stats *st) {
    const bn_sampler_params sp = {.temperature = 0.0f, .repeat_penalty = 1.0f};
    bn_sampler *s = bn_sampler_new(&sp, 512);
    char err[512];
    out->n = 0;
    const int rc = bn_generate(c, s, prompt, n_prompt, max_tokens, NULL, 0, 0, collect, out, NULL, st, err,
                               sizeof err);
    CHECK(rc == 0, "generate: %s", err);
    bn_sampler_free(s);
}

static int count_equal_prefix(const int32_t *a, const int32_t *b, int n) {
    int i = 0;
    while (i < n && a[i] == b[i]) i++;
    return i;
}

static void test_stories_logits(bn_context *c) {
    char *runc = read_text("stories260K/golden/greedy_empty_n256.json");
    int32_t ids[257];
    CHECK(json_ids(runc, "tokens", ids, 257) == 257, "tokens in greedy_empty_n256.json");
    size_t bytes;
    float *ref = bn_read_fixture("stories260K/golden-llamacpp/greedy_empty_n256.logits.f32", &bytes);
    CHECK(bytes == 257 * 512 * sizeof(float), "logits file size %zu", bytes);
    float *got = eval_all(c, ids, 257, 0, 512);
    const float d = max_abs_diff(got, ref, 257 * 512);
    CHECK(d <= TOL, "stories260K vs llama.cpp: max |dlogit| %g", d);
    float d_runc = 0.0f;
    for (int p = 0; p < 8; p++) {
        double v[512];
        float f[512];
        CHECK(json_numbers(runc, "logits", p, v, 512) == 512, "run.c logits at position %d", p);
        for (int i = 0; i < 512; i++) f[i] = (float)v[i];
        const float dp = max_abs_diff(got + (size_t)p * 512, f, 512);
        if (dp > d_runc) d_runc = dp;
    }
    CHECK(d_runc <= TOL, "stories260K vs run.c: max |dlogit| %g", d_runc);
    printf("stories260K: max |dlogit| %.3g vs llama.cpp (257 positions), %.3g vs run.c (8)\n", d, d_runc);
    free(got);
    free(ref);
    free(runc);
}

static void test_stories_greedy(bn_context *c) {
    char *runc = read_text("stories260K/golden/greedy_empty_n256.json");
    int32_t ids[257];
    json_ids(runc, "tokens", ids, 257);
    collected got;
    bn_generate_stats st;
    const int32_t bos = 1;
    run_greedy(c, &bos, 1, 256, &got, &st);
    CHECK(got.n == 256 && count_equal_prefix(got.ids, ids + 1, 256) == 256,
          "greedy from BOS: %d of 256 ids match", count_equal_prefix(got.ids, ids + 1, got.n));
    CHECK(st.finish == BN_FINISH_LENGTH && st.n_generated == 256, "finish %d, %d generated", st.finish,
          st.n_generated);
    printf("stories260K: greedy 256 tokens at %.0f tok/s\n", st.n_generated / (st.gen_ms / 1000.0));
    free(runc);

    char *once = read_text("stories260K/golden/greedy_once_upon_a_time_n64.json");
    int32_t want[65];
    CHECK(json_ids(once, "tokens", want, 65) == 65, "tokens in greedy_once_upon_a_time_n64.json");
    run_greedy(c, want, 5, 60, &got, &st);
    CHECK(got.n == 60 && count_equal_prefix(got.ids, want + 5, 60) == 60, "once upon a time: %d of 60 match",
          count_equal_prefix(got.ids, want + 5, got.n));
    /* The cache held BOS + the greedy story, which starts like the prompt. */
    int lcp = count_equal_prefix(ids, want, 5);
    if (lcp == 5) lcp = 4; /* the last prompt token is always re-evaluated */
    CHECK(st.n_prompt == 5 && st.n_prompt_reused == lcp, "reused %d prompt tokens, expected %d",
          st.n_prompt_reused, lcp);
    free(once);
}

static void test_eval_errors(bn_context *c) {
    char err[256];
    const int32_t good[2] = {1, 403}, bad[2] = {1, 512};
    bn_context_truncate(c, 0);
    CHECK(bn_context_eval(c, good, 2, NULL, 0, err, sizeof err) == 0, "eval: %s", err);
    CHECK(bn_context_eval(c, bad, 2, NULL, 0, err, sizeof err) == -1 && strstr(err, "512"), "bad id: %s", err);
    CHECK(bn_context_n_past(c) == 2, "n_past after a refused eval: %d", bn_context_n_past(c));
    int32_t many[600] = {0};
    CHECK(bn_context_eval(c, many, 511, NULL, 0, err, sizeof err) == -1 && strstr(err, "overflow"),
          "overflow: %s", err);
    CHECK(bn_context_n_past(c) == 2 && bn_context_tokens(c)[1] == 403, "state after overflow");
    bn_sampler_params sp = {.temperature = 0.0f, .repeat_penalty = 1.0f};
    bn_sampler *s = bn_sampler_new(&sp, 512);
    CHECK(bn_generate(c, s, many, 600, 1, NULL, 0, 0, NULL, NULL, NULL, NULL, err, sizeof err) == -1 &&
              strcmp(err, "prompt has 600 tokens, context holds 512") == 0,
          "long prompt: %s", err);
    bn_sampler_free(s);
}

typedef struct stopper {
    collected got;
    int stop_after;
} stopper;

static int collect_then_stop(void *user, int32_t tok) {
    stopper *st = user;
    collect(&st->got, tok);
    return st->got.n >= st->stop_after;
}

/* Finish reasons: stop token, callback stop, cancel flag, full context, max_tokens 0. */
static void test_generate_controls(bn_model *m) {
    const bn_sampler_params sp = {.temperature = 0.0f, .repeat_penalty = 1.0f};
    bn_sampler *s = bn_sampler_new(&sp, 512);
    bn_context *c = new_ctx(m, 16, BN_KV_F32, 1);
    const int32_t prompt[5] = {1, 403, 407, 261, 378};
    char err[256];
    stopper st = {.stop_after = 1000};
    bn_generate_stats stats;
    bn_generate(c, s, prompt, 5, 8, NULL, 0, 0, collect_then_stop, &st, NULL, &stats, err, sizeof err);
    const int32_t third = st.got.ids[2];
    st.got.n = 0;
    bn_generate(c, s, prompt, 5, 8, &third, 1, 0, collect_then_stop, &st, NULL, &stats, err, sizeof err);
    CHECK(stats.finish == BN_FINISH_STOP && stats.n_generated == 3 && st.got.n == 3 &&
              stats.n_prompt_reused == 4,
          "stop token: finish %d after %d, reused %d", stats.finish, stats.n_generated, stats.n_prompt_reused);
    st = (stopper){.stop_after = 2};
    bn_generate(c, s, prompt, 5, 8, NULL, 0, 0, collect_then_stop, &st, NULL, &stats, err, sizeof err);
    CHECK(stats.finish == BN_FINISH_CANCELLED && stats.n_generated == 2, "callback stop: finish %d after %d",
          stats.finish, stats.n_generated);
    const volatile int cancel = 1;
    bn_generate(c, s, prompt, 5, 8, NULL, 0, 0, NULL, NULL, &cancel, &stats, err, sizeof err);
    CHECK(stats.finish == BN_FINISH_CANCELLED && stats.n_generated == 0, "cancel flag: finish %d after %d",
          stats.finish, stats.n_generated);
    bn_generate(c, s, prompt, 5, 100, NULL, 0, 0, NULL, NULL, NULL, &stats, err, sizeof err);
    CHECK(stats.finish == BN_FINISH_LENGTH && stats.n_generated == 12 && bn_context_n_past(c) == 16,
          "full context: finish %d after %d, n_past %d", stats.finish, stats.n_generated, bn_context_n_past(c));
    bn_generate(c, s, prompt, 5, 0, NULL, 0, 0, NULL, NULL, NULL, &stats, err, sizeof err);
    CHECK(stats.finish == BN_FINISH_LENGTH && stats.n_generated == 0 && bn_context_n_past(c) == 5,
          "max_tokens 0: finish %d after %d", stats.finish, stats.n_generated);
    bn_context_free(c);
    bn_sampler_free(s);
}

/* An F16 cache stays close to F32 (llama.cpp: ~0.1; activation quantization amplifies it). */
static void test_kv_f16(bn_model *m, const int32_t *ids, int n, const float *ref) {
    char err[256];
    bn_context *c = NULL;
    const bn_context_params cp = {64, BN_KV_F16, 2, NULL};
    CHECK(bn_context_new(m, &cp, &c, err, sizeof err) == 0, "f16 context: %s", err);
    float *got = eval_all(c, ids, n, 3, 512);
    const float d = max_abs_diff(got, ref, (size_t)n * 512);
    CHECK(d < 0.2f, "f16 KV cache: max |dlogit| %g", d);
    printf("F16 KV cache: max |dlogit| %.3g\n", d);
    free(got);
    bn_context_free(c);
}

/* Parses image and binds a model (NULL with err on failure); image must outlive the model. */
static bn_model *model_from_image(const uint8_t *image, size_t size, char *err, size_t errlen) {
    bn_gguf *g = calloc(1, sizeof *g);
    bn_model *m = NULL;
    if (bn_gguf_parse(image, size, g, err, errlen)) {
        free(g);
        return NULL;
    }
    bn_model_from_gguf(g, NULL, &m, err, errlen);
    return m;
}

/* The stories GGUF image with one tensor name's bytes replaced, or one of its dimensions
 * changed (patch_dim >= 0: ne[patch_dim] = value). */
static uint8_t *patched_image(const char *name, const char *new_name, int patch_dim, uint64_t value,
                              size_t *size) {
    uint8_t *image = bn_read_fixture("stories260K/stories260K.gguf", size);
    const size_t len = strlen(name);
    uint8_t *at = NULL;
    for (size_t i = 0; i + len < *size && !at; i++)
        if (memcmp(image + i, name, len) == 0 && image[i - 1] == 0) at = image + i; /* after a u64 length */
    CHECK(at != NULL, "tensor name %s in the image", name);
    if (new_name) memcpy(at, new_name, strlen(new_name));
    if (patch_dim >= 0) memcpy(at + len + 4 + 8 * patch_dim, &value, 8); /* after u32 n_dims */
    return image;
}

static int load_patched(const char *name, const char *new_name, int patch_dim, uint64_t value, char *err,
                        size_t errlen) {
    size_t size;
    uint8_t *image = patched_image(name, new_name, patch_dim, value, &size);
    bn_model *m = model_from_image(image, size, err, errlen);
    bn_model_free(m);
    free(image);
    return m ? 0 : -1;
}

/* Without output.weight the output is tied to token_embd (bit-identical in this file). */
static void test_tied_output(void) {
    char err[256];
    size_t size;
    uint8_t *image = patched_image("output.weight", "outpux.weight", -1, 0, &size);
    bn_model *m = model_from_image(image, size, err, sizeof err);
    CHECK(m && bn_model_hparams(m)->tied_output, "tied model: %s", m ? "not tied" : err);
    if (m) {
        float *ref = bn_read_fixture("stories260K/golden-llamacpp/greedy_empty_n256.logits.f32", &size);
        char *runc = read_text("stories260K/golden/greedy_empty_n256.json");
        int32_t ids[8];
        json_ids(runc, "tokens", ids, 8);
        bn_context *c = new_ctx(m, 16, BN_KV_F32, 1);
        float *got = eval_all(c, ids, 8, 0, 512);
        const float d = max_abs_diff(got, ref, 8 * 512);
        CHECK(d <= TOL, "tied output: max |dlogit| %g", d);
        free(got);
        free(runc);
        free(ref);
        bn_context_free(c);
    }
    bn_model_free(m);
    free(image);
}

/* A GGUF holding only general.architecture = arch. */
static int load_arch_only(const char *arch, char *err, size_t errlen) {
    static uint8_t image[256];
    const char *key = "general.architecture";
    const uint32_t version = 3, str_type = 8;
    const uint64_t n_tensors = 0, n_kv = 1, key_len = strlen(key), val_len = strlen(arch);
    uint8_t *p = image;
#define PUT(src, len) (memcpy(p, src, len), p += (len))
    PUT("GGUF", 4);
    PUT(&version, 4);
    PUT(&n_tensors, 8);
    PUT(&n_kv, 8);
    PUT(&key_len, 8);
    PUT(key, key_len);
    PUT(&str_type, 4);
    PUT(&val_len, 8);
    PUT(arch, val_len);
#undef PUT
    bn_gguf *g = calloc(1, sizeof *g);
    bn_model *m = NULL;
    int rc = bn_gguf_parse(image, (uint64_t)(p - image), g, err, errlen);
    if (rc == 0) rc = bn_model_from_gguf(g, NULL, &m, err, errlen);
    else free(g);
    bn_model_free(m);
    return rc;
}

static void test_load_errors(void) {
    char err[256];
    CHECK(load_patched("blk.0.attn_q.weight", NULL, 1, 63, err, sizeof err) == -1 &&
              strcmp(err, "tensor 'blk.0.attn_q.weight' has shape [64, 63], expected [64, 64]") == 0,
          "shape: %s", err);
    CHECK(load_patched("output_norm.weight", "output_xorm.weight", -1, 0, err, sizeof err) == -1 &&
              strcmp(err, "missing tensor 'output_norm.weight'") == 0,
          "missing: %s", err);
    CHECK(load_arch_only("gpt2", err, sizeof err) == -1 && strcmp(err, "unsupported architecture 'gpt2'") == 0,
          "gpt2: %s", err);
}

static void test_qwen3(const char *type, int check_greedy) {
    char rel[256];
    snprintf(rel, sizeof rel, "qwen3-tiny/models/tiny-qwen3-%s.gguf", type);
    bn_model *m = load(rel);
    const bn_hparams *hp = bn_model_hparams(m);
    CHECK(hp->arch == BN_ARCH_QWEN3 && hp->n_layer == 2 && hp->n_embd == 256 && hp->n_head == 4 &&
              hp->n_head_kv == 2 && hp->head_dim == 128 && hp->n_rot == 128 && hp->n_ff == 768 &&
              hp->rope_neox && hp->qk_norm && !hp->tied_output && hp->rope_base == 1e6f,
          "%s hparams", type);
    snprintf(rel, sizeof rel, "qwen3-tiny/golden/%s.once_upon_a_time_n32.json", type);
    char *json = read_text(rel);
    int32_t ids[37];
    CHECK(json_ids(json, "prompt_ids", ids, 5) == 5 && json_ids(json, "generated_ids", ids + 5, 32) == 32,
          "%s golden ids", type);
    snprintf(rel, sizeof rel, "qwen3-tiny/golden/%s.once_upon_a_time_n32.logits.f32", type);
    size_t bytes;
    float *ref = bn_read_fixture(rel, &bytes);
    CHECK(bytes == 37 * 512 * sizeof(float), "%s logits size", type);

    bn_context *c = new_ctx(m, 0, BN_KV_F32, 1);
    float *one = eval_all(c, ids, 37, 0, 512);
    bn_context_set_threads(c, 2);
    float *split = eval_all(c, ids, 37, 5, 512);
    const float d1 = max_abs_diff(one, ref, 37 * 512), d2 = max_abs_diff(split, ref, 37 * 512);
    CHECK(d1 <= TOL && d2 <= TOL, "%s: max |dlogit| %g (1 thread), %g (2 threads, split)", type, d1, d2);
    if (check_greedy) test_kv_f16(m, ids, 37, ref);
    printf("qwen3-tiny %-5s: max |dlogit| %.3g (1 thread, one batch), %.3g (2 threads, 5 + 32)\n", type, d1, d2);
    if (check_greedy) {
        collected got;
        bn_generate_stats st;
        run_greedy(c, ids, 5, 32, &got, &st);
        CHECK(got.n == 32 && count_equal_prefix(got.ids, ids + 5, 32) == 32, "%s greedy: %d of 32 match", type,
              count_equal_prefix(got.ids, ids + 5, got.n));
    }
    free(one);
    free(split);
    free(ref);
    free(json);
    bn_context_free(c);
    bn_model_free(m);
}

int main(void) {
    bn_model *m = load("stories260K/stories260K.gguf");
    const bn_hparams *hp = bn_model_hparams(m);
    CHECK(hp->arch == BN_ARCH_LLAMA && hp->n_vocab == 512 && hp->n_embd == 64 && hp->n_layer == 5 &&
              hp->n_head == 8 && hp->n_head_kv == 4 && hp->head_dim == 8 && hp->n_ff == 172 && hp->n_rot == 8 &&
              !hp->tied_output && !hp->rope_neox && !hp->qk_norm && hp->rope_base == 10000.0f,
          "stories260K hparams");
    bn_context *c = new_ctx(m, 512, BN_KV_F32, 1);
    test_stories_logits(c);
    test_stories_greedy(c);
    test_eval_errors(c);
    test_generate_controls(m);
    bn_context_free(c);
    bn_model_free(m);
    test_load_errors();
    test_tied_output();
    const char *types[] = {"f32", "q8_0", "q1_0", "tq2_0", "tq1_0"};
    for (int i = 0; i < 5; i++) test_qwen3(types[i], i < 2);
    return bn_test_done("test_forward");
}
