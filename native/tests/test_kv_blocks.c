/* KV blocks (bn_context_kv_export / bn_context_kv_import), the prompt-prefix cache's premise:
 * importing the rows of a prefix and evaluating the rest gives the logits, cache rows and greedy
 * tokens of evaluating everything cold, bit for bit, on stories260K and the tiny qwen3 models in
 * every weight type, with F32 and F16 caches, 1 or 2 threads and contexts of different sizes.
 * Refused exports and imports leave the context as it was. */
#include <stdint.h>
#include "model_harness.h"

/* A prompt of N_TOKENS whose first N_PREFIX are imported: cut nowhere special. */
#define N_TOKENS 100
#define N_PREFIX 64
#define N_GENERATE 24
#define N_CTX 128
/* Contexts that import use another size: a block does not depend on it. */
#define N_CTX_IMPORT 160

/* Evaluates ids[0..n) after what c holds; returns the logits of every one, [n][n_vocab]. */
static float *eval_logits(bn_context *c, bn_model *m, const int32_t *ids, int n) {
    char err[512];
    float *logits = malloc((size_t)n * bn_model_hparams(m)->n_vocab * sizeof(float));
    if (!logits || bn_context_eval(c, ids, n, logits, 1, err, sizeof err)) {
        fprintf(stderr, "eval: %s\n", logits ? err : "out of memory");
        exit(1);
    }
    return logits;
}

/* The block of positions [pos, pos + n) of c, malloc'd; *len gets its size. */
static uint8_t *export_block(const bn_context *c, int pos, int n, size_t *len) {
    char err[512];
    *len = bn_context_kv_bytes(c, n);
    uint8_t *block = malloc(*len ? *len : 1);
    if (!block || bn_context_kv_export(c, pos, n, block, *len, err, sizeof err)) {
        fprintf(stderr, "export: %s\n", block ? err : "out of memory");
        exit(1);
    }
    return block;
}

/* Moves positions [pos, pos + n) of from into to (which holds exactly pos positions). */
static void copy_positions(const bn_context *from, bn_context *to, int pos, int n) {
    char err[512];
    size_t len;
    uint8_t *block = export_block(from, pos, n, &len);
    CHECK(bn_context_kv_import(to, bn_context_tokens(from) + pos, n, block, len, err, sizeof err) == 0,
          "import of [%d, %d): %s", pos, pos + n, err);
    free(block);
}

/* Whether positions [pos, pos + n) hold the same tokens and the same cache bits in a and b. */
static int same_positions(const bn_context *a, const bn_context *b, int pos, int n) {
    size_t len;
    uint8_t *ra = export_block(a, pos, n, &len), *rb = export_block(b, pos, n, &len);
    const int same = memcmp(ra, rb, len) == 0 &&
                     memcmp(bn_context_tokens(a) + pos, bn_context_tokens(b) + pos, (size_t)n * sizeof(int32_t)) == 0;
    free(ra);
    free(rb);
    return same;
}

static const char *kv_name(bn_kv_type kv) { return kv == BN_KV_F16 ? "f16" : "f32"; }

/* (a), (b): a cold context evaluates all tokens in one batch (1 thread); context A evaluates the
 * prefix, then the rest (2 threads); contexts B import A's prefix in one or two pieces (1 or 2
 * threads), then evaluate the rest. Every suffix logit and every cache row must match the cold
 * context's bits. */
static void test_reuse(bn_model *m, const char *name, bn_kv_type kv, const int32_t *ids) {
    const int vocab = bn_model_hparams(m)->n_vocab, n_rest = N_TOKENS - N_PREFIX;
    const size_t rest_bytes = (size_t)n_rest * vocab * sizeof(float);
    bn_context *cold = new_ctx(m, N_CTX, kv, 1), *a = new_ctx(m, N_CTX, kv, 2);
    float *want = eval_logits(cold, m, ids, N_TOKENS);
    free(eval_logits(a, m, ids, N_PREFIX));
    float *split = eval_logits(a, m, ids + N_PREFIX, n_rest);
    CHECK(memcmp(split, want + (size_t)N_PREFIX * vocab, rest_bytes) == 0,
          "%s %s: logits of a prefill split at %d differ from one batch", name, kv_name(kv), N_PREFIX);
    CHECK(same_positions(cold, a, 0, N_TOKENS), "%s %s: cache rows of a split prefill differ from one batch", name,
          kv_name(kv));

    /* the cuts between pieces of the prefix, ending at N_PREFIX */
    static const int cuts[][2] = {{N_PREFIX}, {32, N_PREFIX}, {23, N_PREFIX}};
    const int n_variants = sizeof cuts / sizeof cuts[0];
    int identical = 0;
    for (int v = 0; v < n_variants; v++) {
        bn_context *b = new_ctx(m, N_CTX_IMPORT, kv, 1 + v % 2);
        for (int i = 0, pos = 0; pos < N_PREFIX; pos = cuts[v][i], i++) copy_positions(a, b, pos, cuts[v][i] - pos);
        CHECK(bn_context_n_past(b) == N_PREFIX && same_positions(a, b, 0, N_PREFIX),
              "%s %s: an import round trip changed the prefix (n_past %d)", name, kv_name(kv), bn_context_n_past(b));
        float *got = eval_logits(b, m, ids + N_PREFIX, n_rest);
        const int same_logits = memcmp(got, want + (size_t)N_PREFIX * vocab, rest_bytes) == 0;
        const int same_rows = same_positions(cold, b, 0, N_TOKENS);
        CHECK(same_logits && same_rows, "%s %s: import of %d in pieces cut at %d: logits %s, cache rows %s", name,
              kv_name(kv), N_PREFIX, cuts[v][0], same_logits ? "same" : "DIFFER", same_rows ? "same" : "DIFFER");
        identical += same_logits && same_rows;
        free(got);
        bn_context_free(b);
    }
    printf("%-18s %s KV: %d of %d imports of %d then eval of %d bit-identical to one batch (pieces 64, 32+32, "
           "23+41; 1/2 threads)\n", name, kv_name(kv), identical, n_variants, N_PREFIX, n_rest);
    free(want);
    free(split);
    bn_context_free(a);
    bn_context_free(cold);
}

typedef struct collected {
    int32_t ids[N_GENERATE];
    int n;
} collected;

static int collect(void *user, int32_t tok) {
    collected *c = user;
    if (c->n < N_GENERATE) c->ids[c->n++] = tok;
    return 0;
}

static collected run_greedy(bn_context *c, bn_model *m, const int32_t *prompt, bn_generate_stats *st) {
    const bn_sampler_params sp = {.temperature = 0.0f, .repeat_penalty = 1.0f};
    bn_sampler *s = bn_sampler_new(&sp, bn_model_hparams(m)->n_vocab);
    char err[512];
    collected out = {.n = 0};
    CHECK(bn_generate(c, s, prompt, N_TOKENS, N_GENERATE, NULL, 0, 0, collect, &out, NULL, st, err, sizeof err) == 0,
          "generate: %s", err);
    bn_sampler_free(s);
    return out;
}

/* (c): greedy generation after importing a prefix of the prompt gives the cold tokens and reuses
 * the prefix; after importing a block the prompt leaves part-way, it reuses the shared part. */
static void test_generate(bn_model *m, const char *name, bn_kv_type kv, const int32_t *ids) {
    int32_t other[N_TOKENS];
    memcpy(other, ids, sizeof other);
    const int diverge = 41;
    other[diverge] = ids[diverge] == 0 ? 1 : 0;
    for (int p = 0; p < 2; p++) {
        const int32_t *prompt = p ? other : ids;
        const int shared = p ? diverge : N_PREFIX;
        bn_generate_stats cold_st, warm_st;
        bn_context *cold = new_ctx(m, N_CTX, kv, 1), *warm = new_ctx(m, N_CTX_IMPORT, kv, 2), *src = new_ctx(m, N_CTX, kv, 2);
        const collected want = run_greedy(cold, m, prompt, &cold_st);
        free(eval_logits(src, m, ids, N_PREFIX));
        copy_positions(src, warm, 0, N_PREFIX);
        const collected got = run_greedy(warm, m, prompt, &warm_st);
        CHECK(want.n == N_GENERATE && got.n == want.n && memcmp(got.ids, want.ids, sizeof want.ids) == 0,
              "%s %s: greedy after an import of %d (prompt shares %d) differs from cold", name, kv_name(kv), N_PREFIX,
              shared);
        CHECK(cold_st.n_prompt_reused == 0 && warm_st.n_prompt_reused == shared,
              "%s %s: reused %d prompt tokens after the import, expected %d (cold %d)", name, kv_name(kv),
              warm_st.n_prompt_reused, shared, cold_st.n_prompt_reused);
        CHECK(bn_context_n_past(warm) == bn_context_n_past(cold) && same_positions(cold, warm, 0, bn_context_n_past(cold)),
              "%s %s: cache after generate differs", name, kv_name(kv));
        bn_context_free(src);
        bn_context_free(warm);
        bn_context_free(cold);
    }
}

/* A block is 2 * n_layer parts, each the rows of its positions in order: the parts of a block
 * are the parts of the blocks of its two halves, joined. */
static void test_layout(bn_model *m) {
    const bn_hparams *hp = bn_model_hparams(m);
    const size_t row = (size_t)hp->n_head_kv * hp->head_dim * sizeof(float);
    bn_context *c = new_ctx(m, 16, BN_KV_F32, 1);
    int32_t ids[10];
    random_ids(ids, 10, hp->n_vocab, 3);
    free(eval_logits(c, m, ids, 10));
    size_t len;
    uint8_t *whole = export_block(c, 0, 10, &len), *first = export_block(c, 0, 4, &len),
            *second = export_block(c, 4, 6, &len);
    int joined = 1;
    for (int part = 0; part < 2 * hp->n_layer; part++) {
        const uint8_t *p = whole + (size_t)part * 10 * row;
        joined &= memcmp(p, first + (size_t)part * 4 * row, 4 * row) == 0 &&
                  memcmp(p + 4 * row, second + (size_t)part * 6 * row, 6 * row) == 0;
    }
    CHECK(joined, "the block of [0, 10) is not the blocks of [0, 4) and [4, 10) joined part by part");
    free(second);
    free(first);
    free(whole);
    bn_context_free(c);
}

/* (d): every refusal says why and changes nothing: not n_past, not the tokens, not the rows, not
 * the caller's buffer. */
static void test_errors(bn_model *m) {
    const bn_hparams *hp = bn_model_hparams(m);
    char err[512];
    bn_context *c = new_ctx(m, 16, BN_KV_F16, 1);
    int32_t ids[16];
    random_ids(ids, 16, hp->n_vocab, 7);
    free(eval_logits(c, m, ids, 10));
    const size_t one = bn_context_kv_bytes(c, 1);
    CHECK(one == 2 * (size_t)hp->n_layer * hp->n_head_kv * hp->head_dim * sizeof(uint16_t), "f16 bytes of one: %zu",
          one);
    CHECK(bn_context_kv_bytes(c, 10) == 10 * one && bn_context_kv_bytes(c, 16) == 16 * one &&
              bn_context_kv_bytes(c, 0) == 0 && bn_context_kv_bytes(c, -1) == 0 && bn_context_kv_bytes(c, 17) == 0,
          "kv_bytes outside [0, n_ctx]");
    bn_context *f32 = new_ctx(m, 16, BN_KV_F32, 1);
    CHECK(bn_context_kv_bytes(f32, 3) == 2 * 3 * one, "f32 bytes of three: %zu", bn_context_kv_bytes(f32, 3));
    bn_context_free(f32);

    size_t len;
    uint8_t *before = export_block(c, 0, 10, &len);
    uint8_t *buf = malloc(16 * one);
    memset(buf, 0xA5, 16 * one);
    const struct {
        int pos, n;
        size_t len;
        const char *says;
    } bad_exports[] = {
        {5, 6, 6 * one, "only positions [0, 10) are evaluated"},
        {-1, 2, 2 * one, "from -1"},
        {0, -1, 0, "KV export of -1 positions"},
        {11, 0, 0, "from 11"},
        {0, 3, 3 * one - 1, "needs a buffer of"},
        {0, 3, 3 * one + 1, "needs a buffer of"},
    };
    for (size_t i = 0; i < sizeof bad_exports / sizeof bad_exports[0]; i++) {
        err[0] = 0;
        CHECK(bn_context_kv_export(c, bad_exports[i].pos, bad_exports[i].n, buf, bad_exports[i].len, err, sizeof err) ==
                      -1 &&
                  strstr(err, bad_exports[i].says),
              "export %d at %d: %s", bad_exports[i].n, bad_exports[i].pos, err);
    }
    CHECK(bn_context_kv_export(c, 0, 3, NULL, 3 * one, err, sizeof err) == -1 && strstr(err, "got 0"),
          "export into NULL: %s", err);
    int untouched = 1;
    for (size_t i = 0; i < 16 * one; i++) untouched &= buf[i] == 0xA5;
    CHECK(untouched, "a refused export wrote into the buffer");
    CHECK(bn_context_kv_export(c, 10, 0, NULL, 0, err, sizeof err) == 0, "empty export: %s", err);

    int32_t bad_ids[7];
    memcpy(bad_ids, ids, sizeof bad_ids);
    bad_ids[4] = hp->n_vocab;
    CHECK(bn_context_kv_import(c, ids, 7, buf, 7 * one, err, sizeof err) == -1 && strstr(err, "overflow"),
          "import past n_ctx: %s", err);
    CHECK(bn_context_kv_import(c, ids, 3, buf, 3 * one + 1, err, sizeof err) == -1 && strstr(err, "needs"),
          "import of a long block: %s", err);
    CHECK(bn_context_kv_import(c, ids, 3, buf, 3 * one - 1, err, sizeof err) == -1 && strstr(err, "needs"),
          "import of a short block: %s", err);
    CHECK(bn_context_kv_import(c, ids, 3, NULL, 3 * one, err, sizeof err) == -1 && strstr(err, "got 0"),
          "import from NULL: %s", err);
    CHECK(bn_context_kv_import(c, bad_ids, 5, buf, 5 * one, err, sizeof err) == -1 && strstr(err, "out of range"),
          "import of a bad token id: %s", err);
    CHECK(bn_context_kv_import(c, ids, -1, buf, 0, err, sizeof err) == -1 && strstr(err, "invalid token count"),
          "import of -1: %s", err);
    CHECK(bn_context_kv_import(c, NULL, 0, NULL, 0, err, sizeof err) == 0, "empty import: %s", err);
    uint8_t *after = export_block(c, 0, 10, &len);
    CHECK(bn_context_n_past(c) == 10 && memcmp(bn_context_tokens(c), ids, 10 * sizeof(int32_t)) == 0 &&
              memcmp(before, after, len) == 0,
          "refused imports changed the context (n_past %d)", bn_context_n_past(c));
    CHECK(bn_context_kv_import(c, ids + 10, 6, buf, 6 * one, err, sizeof err) == 0 && bn_context_n_past(c) == 16,
          "an import that fills the context: %s", err);
    free(after);
    free(before);
    free(buf);
    bn_context_free(c);
}

static void test_model(const char *rel, const char *name) {
    bn_model *m = load(rel);
    int32_t ids[N_TOKENS];
    random_ids(ids, N_TOKENS, bn_model_hparams(m)->n_vocab, 12345);
    const bn_kv_type kvs[] = {BN_KV_F32, BN_KV_F16};
    for (int k = 0; k < 2; k++) {
        test_reuse(m, name, kvs[k], ids);
        test_generate(m, name, kvs[k], ids);
    }
    bn_model_free(m);
}

int main(void) {
    test_model("stories260K/stories260K.gguf", "stories260K");
    bn_model *stories = load("stories260K/stories260K.gguf");
    test_layout(stories);
    test_errors(stories);
    bn_model_free(stories);
    const char *const types[] = {"f32", "q8_0", "q1_0", "tq2_0", "tq1_0"};
    each_tiny_qwen3(types, 5, test_model);
    return bn_test_done("test_kv_blocks");
}
