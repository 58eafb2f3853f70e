/* Contexts decoded together (model/batch.c): while several generations and evals run at once on
 * contexts batched with each other, every one gets the logits bits and the tokens it gets alone,
 * on stories260K and the tiny qwen3 models, with F32 and F16 caches side by side, contexts of
 * different sizes, members that start late and members that stop early. */
#include <pthread.h>
#include <stdint.h>
#include <time.h>
#include "model_harness.h"
#include "model/sampler.h"

#define N_MEMBERS 3
#define N_GENERATE 24

static bn_context *batched_ctx(bn_model *m, int n_ctx, bn_kv_type kv, bn_context *with) {
    char err[512];
    bn_context *c = NULL;
    const bn_context_params cp = {n_ctx, kv, 2, with};
    CHECK(bn_context_new(m, &cp, &c, err, sizeof err) == 0, "batched context: %s", err);
    return c;
}

/* What one member does: a prompt evaluated with every position's logits, then single tokens. */
typedef struct member {
    bn_context *c;
    const int32_t *ids;
    int n_prompt, n_steps;
    int start_delay_ms;
    float *logits;           /* [n_prompt + n_steps][n_vocab] */
    int n_vocab, rc;
    /* generation */
    int max_tokens;
    float temperature;
    int32_t out[N_GENERATE];
    int n_out;
} member;

static void sleep_ms(int ms) {
    const struct timespec t = {0, (long)ms * 1000000L};
    nanosleep(&t, NULL);
}

static void *eval_member(void *arg) {
    member *mb = arg;
    char err[512];
    sleep_ms(mb->start_delay_ms);
    mb->rc = bn_context_eval(mb->c, mb->ids, mb->n_prompt, mb->logits, 1, err, sizeof err);
    for (int s = 0; s < mb->n_steps && mb->rc == 0; s++)
        mb->rc = bn_context_eval(mb->c, mb->ids + mb->n_prompt + s, 1,
                                 mb->logits + (size_t)(mb->n_prompt + s) * mb->n_vocab, 0, err, sizeof err);
    if (mb->rc) fprintf(stderr, "eval: %s\n", err);
    return NULL;
}

static int record(void *user, int32_t tok) {
    member *mb = user;
    mb->out[mb->n_out++] = tok;
    return 0;
}

static void *generate_member(void *arg) {
    member *mb = arg;
    char err[512];
    sleep_ms(mb->start_delay_ms);
    const bn_sampler_params sp = {mb->temperature, 40, 0.95f, 0.05f, 1.1f, 64, 7};
    bn_sampler *s = bn_sampler_new(&sp, mb->n_vocab);
    mb->n_out = 0;
    mb->rc = bn_generate(mb->c, s, mb->ids, mb->n_prompt, mb->max_tokens, NULL, 0, 0, record, mb, NULL, NULL, err,
                         sizeof err);
    if (mb->rc) fprintf(stderr, "generate: %s\n", err);
    bn_sampler_free(s);
    return NULL;
}

static void run_all(member *mbs, void *(*fn)(void *)) {
    pthread_t th[N_MEMBERS];
    for (int i = 0; i < N_MEMBERS; i++) pthread_create(&th[i], NULL, fn, &mbs[i]);
    for (int i = 0; i < N_MEMBERS; i++) pthread_join(th[i], NULL);
}

static void test_model(const char *rel, const char *name) {
    bn_model *m = load(rel);
    const int n_vocab = bn_model_hparams(m)->n_vocab;
    /* different prompt lengths (one longer than a batch, so it is evaluated in chunks) */
    const int prompts[N_MEMBERS] = {7, 300, 33}, steps[N_MEMBERS] = {12, 5, 20}, delays[N_MEMBERS] = {0, 0, 30};
    const int n_ctx[N_MEMBERS] = {400, 512, 64};
    const bn_kv_type kv[N_MEMBERS] = {BN_KV_F32, BN_KV_F16, BN_KV_F32};
    int32_t *ids[N_MEMBERS];
    member alone[N_MEMBERS], together[N_MEMBERS];
    bn_context *group[N_MEMBERS];
    for (int i = 0; i < N_MEMBERS; i++) {
        const int n = prompts[i] + steps[i];
        ids[i] = malloc((size_t)n * sizeof(int32_t));
        random_ids(ids[i], n, n_vocab, 100u + (unsigned)i);
        group[i] = batched_ctx(m, n_ctx[i], kv[i], i ? group[0] : NULL);
        for (member *mb = &alone[i]; mb; mb = mb == &alone[i] ? &together[i] : NULL) {
            *mb = (member){.ids = ids[i], .n_prompt = prompts[i], .n_steps = steps[i], .n_vocab = n_vocab,
                           .logits = malloc((size_t)n * n_vocab * sizeof(float))};
        }
        alone[i].c = new_ctx(m, n_ctx[i], kv[i], 2);
        together[i].c = group[i];
        together[i].start_delay_ms = delays[i];
        eval_member(&alone[i]);
    }
    run_all(together, eval_member);
    for (int i = 0; i < N_MEMBERS; i++) {
        const size_t bytes = (size_t)(prompts[i] + steps[i]) * n_vocab * sizeof(float);
        CHECK(together[i].rc == 0 && memcmp(alone[i].logits, together[i].logits, bytes) == 0,
              "%s: member %d's logits differ from its run alone", name, i);
        CHECK(bn_context_n_past(group[i]) == prompts[i] + steps[i], "%s: member %d holds %d positions", name, i,
              bn_context_n_past(group[i]));
    }

    /* Generations: greedy and sampled, one stopping early, one starting late. */
    const int max_tokens[N_MEMBERS] = {N_GENERATE, 3, N_GENERATE};
    const float temps[N_MEMBERS] = {0, 0.8f, 0.7f};
    for (int i = 0; i < N_MEMBERS; i++) {
        bn_context_truncate(alone[i].c, 0);
        bn_context_truncate(group[i], 0);
        member *pair[2] = {&alone[i], &together[i]};
        for (int k = 0; k < 2; k++) {
            pair[k]->n_prompt = prompts[i] < 40 ? prompts[i] : 40;
            pair[k]->max_tokens = max_tokens[i];
            pair[k]->temperature = temps[i];
        }
        generate_member(&alone[i]);
    }
    run_all(together, generate_member);
    for (int i = 0; i < N_MEMBERS; i++)
        CHECK(together[i].rc == 0 && together[i].n_out == alone[i].n_out &&
                  memcmp(together[i].out, alone[i].out, (size_t)alone[i].n_out * sizeof(int32_t)) == 0,
              "%s: member %d generated other tokens together (%d) than alone (%d)", name, i, together[i].n_out,
              alone[i].n_out);

    for (int i = 0; i < N_MEMBERS; i++) { /* the group outlives the context that made it */
        bn_context_free(alone[i].c);
        bn_context_free(group[i]);
        free(alone[i].logits);
        free(together[i].logits);
        free(ids[i]);
    }
    bn_model_free(m);
}

/* A context of another model cannot join. */
static void test_refusal(void) {
    bn_model *a = load("stories260K/stories260K.gguf"), *b = load("stories260K/stories260K.gguf");
    bn_context *ca = new_ctx(a, 32, BN_KV_F32, 1), *cb = NULL;
    char err[512] = "";
    const bn_context_params cp = {32, BN_KV_F32, 1, ca};
    CHECK(bn_context_new(b, &cp, &cb, err, sizeof err) == -1 && cb == NULL && strstr(err, "share one model"),
          "a context of another model joined: %s", err);
    bn_context_free(ca);
    bn_model_free(a);
    bn_model_free(b);
}

int main(void) {
    test_refusal();
    test_model("stories260K/stories260K.gguf", "stories260K");
    const char *const types[] = {"f32", "q8_0", "q1_0", "tq1_0"};
    each_tiny_qwen3(types, 4, test_model);
    return bn_test_done("test_batch");
}
