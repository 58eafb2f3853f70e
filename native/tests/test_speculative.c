/* Speculative decoding by prompt lookup (bn_generate with draft_max > 0): greedy output is the
 * plain greedy output token for token, with the same finish and the same context left behind,
 * on stories260K and the tiny qwen3 models; drafts are accepted where the text repeats; stops,
 * max_tokens and a full context end it where they end plain decoding; sampled output is plain
 * sampling's with the same seed; a draft model's drafts (another context) are checked the same way. The sampler's
 * accept/reject rule is checked for its distribution in test_sampler. BONSAI_TEST_QUICK=1 (runs
 * under qemu) checks two draft lengths and one tiny qwen3 model. */
#include <stdint.h>
#include "model_harness.h"
#include "model/sampler.h"

#define MAX_OUT 256

typedef struct run {
    int32_t ids[MAX_OUT];
    int n;
    bn_generate_stats st;
    int32_t context[1024];
    int n_context;
} run;

static int collect(void *user, int32_t tok) {
    run *r = user;
    if (r->n < MAX_OUT) r->ids[r->n++] = tok;
    return 0;
}

static void generate(bn_model *m, int n_ctx, const int32_t *prompt, int n_prompt, int max_tokens, const int32_t *stops,
                     int n_stops, int draft, float temperature, run *out) {
    bn_context *c = new_ctx(m, n_ctx, BN_KV_F32, 2);
    const bn_sampler_params sp = {temperature, 40, 0.95f, 0.05f, 1.0f, 64, 1234};
    bn_sampler *s = bn_sampler_new(&sp, bn_model_hparams(m)->n_vocab);
    char err[512];
    out->n = 0;
    CHECK(bn_generate(c, s, prompt, n_prompt, max_tokens, stops, n_stops, draft, collect, out, NULL, &out->st, err,
                      sizeof err) == 0,
          "generate (draft %d): %s", draft, err);
    out->n_context = bn_context_n_past(c);
    memcpy(out->context, bn_context_tokens(c), (size_t)out->n_context * sizeof(int32_t));
    bn_sampler_free(s);
    bn_context_free(c);
}

static int same_run(const run *a, const run *b) {
    return a->n == b->n && memcmp(a->ids, b->ids, (size_t)a->n * sizeof(int32_t)) == 0 &&
           a->st.finish == b->st.finish && a->n_context == b->n_context &&
           memcmp(a->context, b->context, (size_t)a->n_context * sizeof(int32_t)) == 0;
}

static void test_model_expecting(const char *rel, const char *name, int expect_accepted) {
    bn_model *m = load(rel);
    /* The model's own greedy text, then a prompt that repeats its start: continuing it repeats
     * text the prompt holds, which is what prompt lookup drafts from. */
    const int32_t bos = 1;
    static run first, plain, spec;
    generate(m, 512, &bos, 1, 120, NULL, 0, 0, 0.0f, &first);
    int32_t prompt[200];
    int n_prompt = 0;
    prompt[n_prompt++] = bos;
    for (int i = 0; i < 100 && i < first.n; i++) prompt[n_prompt++] = first.ids[i];
    for (int i = 0; i < 12 && i < first.n; i++) prompt[n_prompt++] = first.ids[i];

    const int drafts[] = {8, 1, 4, 32};
    const size_t n_drafts = getenv("BONSAI_TEST_QUICK") ? 2 : sizeof drafts / sizeof drafts[0];
    for (size_t d = 0; d < n_drafts; d++) {
        generate(m, 512, prompt, n_prompt, 150, NULL, 0, 0, 0.0f, &plain);
        generate(m, 512, prompt, n_prompt, 150, NULL, 0, drafts[d], 0.0f, &spec);
        CHECK(same_run(&plain, &spec), "%s draft %d: greedy output or context differs (%d vs %d tokens)", name,
              drafts[d], spec.n, plain.n);
        CHECK(spec.st.n_accepted <= spec.st.n_drafted && spec.st.n_drafted <= spec.n * drafts[d],
              "%s draft %d: %d accepted of %d drafted", name, drafts[d], spec.st.n_accepted, spec.st.n_drafted);
        if (expect_accepted)
            CHECK(spec.st.n_accepted > 0, "%s draft %d: no draft was accepted (%d drafted)", name, drafts[d],
                  spec.st.n_drafted);
        CHECK(plain.st.n_drafted == 0, "%s: plain decoding drafted", name);
    }
    /* where plain decoding ends: every max_tokens, a stop token met mid-draft, a full context */
    for (int max = 1; max <= 12; max++) {
        generate(m, 512, prompt, n_prompt, max, NULL, 0, 0, 0.0f, &plain);
        generate(m, 512, prompt, n_prompt, max, NULL, 0, 8, 0.0f, &spec);
        CHECK(same_run(&plain, &spec), "%s max_tokens %d: differs", name, max);
    }
    generate(m, 512, prompt, n_prompt, 150, NULL, 0, 0, 0.0f, &plain);
    for (int at = 3; at < plain.n && at < 40; at += 7) {
        const int32_t stop = plain.ids[at];
        run p2, s2;
        generate(m, 512, prompt, n_prompt, 150, &stop, 1, 0, 0.0f, &p2);
        generate(m, 512, prompt, n_prompt, 150, &stop, 1, 8, 0.0f, &s2);
        CHECK(same_run(&p2, &s2) && s2.st.finish == BN_FINISH_STOP, "%s stop at %d: differs", name, at);
    }
    for (int room = 1; room <= 9; room += 4) {
        generate(m, n_prompt + room, prompt, n_prompt, 150, NULL, 0, 0, 0.0f, &plain);
        generate(m, n_prompt + room, prompt, n_prompt, 150, NULL, 0, 8, 0.0f, &spec);
        CHECK(same_run(&plain, &spec) && spec.n == room + 1, "%s context with room %d: %d tokens", name, room, spec.n);
    }
    /* sampled: the tokens of plain sampling with the same seed, whatever was drafted */
    run a, b;
    generate(m, 512, prompt, n_prompt, 80, NULL, 0, 0, 0.8f, &a);
    generate(m, 512, prompt, n_prompt, 80, NULL, 0, 8, 0.8f, &b);
    CHECK(same_run(&a, &b), "%s: sampled with drafts differs from plain sampling with the seed", name);
    bn_model_free(m);
}

/* A draft model: a second context of the same model drafts exactly the greedy continuation, so
 * every draft is accepted and the output is plain greedy decoding's. (A drafter of another
 * vocabulary is refused: test/engine.test.ts, with a synthetic model of Qwen3's.) */
static void test_draft_model(void) {
    bn_model *m = load("stories260K/stories260K.gguf");
    bn_context *c = new_ctx(m, 512, BN_KV_F32, 2), *d = new_ctx(m, 512, BN_KV_F32, 1);
    char err[512];
    CHECK(bn_context_set_drafter(c, c, err, sizeof err) == -1 && strstr(err, "itself"), "self as drafter: %s", err);
    CHECK(bn_context_set_drafter(c, d, err, sizeof err) == 0, "drafter: %s", err);
    const bn_sampler_params sp = {0};
    bn_sampler *s = bn_sampler_new(&sp, bn_model_hparams(m)->n_vocab);
    const int32_t bos = 1;
    static run plain, drafted;
    generate(m, 512, &bos, 1, 200, NULL, 0, 0, 0.0f, &plain);
    drafted.n = 0;
    for (int round = 0; round < 2; round++) { /* the second reuses what both contexts hold */
        drafted.n = 0;
        CHECK(bn_generate(c, s, &bos, 1, 200, NULL, 0, 8, collect, &drafted, NULL, &drafted.st, err, sizeof err) == 0,
              "generate with a draft model: %s", err);
        CHECK(drafted.n == plain.n && memcmp(drafted.ids, plain.ids, (size_t)plain.n * sizeof(int32_t)) == 0,
              "round %d: output with a draft model differs from plain greedy", round);
        /* once drafting is seen to cost what it saves (a draft model as large as the model), it stops */
        CHECK((round > 0 || drafted.st.n_drafted > 0) && drafted.st.n_accepted == drafted.st.n_drafted,
              "round %d: the model drafting for itself got %d of %d accepted", round, drafted.st.n_accepted,
              drafted.st.n_drafted);
    }
    bn_sampler_free(s);
    bn_context_free(c);
    bn_context_free(d);
    bn_model_free(m);
}

/* The tiny qwen3 models do not repeat their prompt's text: drafts may all be refused there. */
static void test_model(const char *rel, const char *name) { test_model_expecting(rel, name, 0); }

int main(void) {
    test_draft_model();
    test_model_expecting("stories260K/stories260K.gguf", "stories260K", 1);
    const char *const types[] = {"q1_0", "f32", "tq2_0"};
    each_tiny_qwen3(types, getenv("BONSAI_TEST_QUICK") ? 1 : 3, test_model);
    char err[512];
    bn_model *m = load("stories260K/stories260K.gguf");
    bn_context *c = new_ctx(m, 64, BN_KV_F32, 1);
    const bn_sampler_params sp = {0};
    bn_sampler *s = bn_sampler_new(&sp, 512);
    const int32_t bos = 1;
    CHECK(bn_generate(c, s, &bos, 1, 4, NULL, 0, 256, NULL, NULL, NULL, NULL, err, sizeof err) == -1 &&
              strstr(err, "draft length 256"),
          "a draft of 256: %s", err);
    bn_sampler_free(s);
    bn_context_free(c);
    bn_model_free(m);
    return bn_test_done("test_speculative");
}
