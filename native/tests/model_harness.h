/* Models and contexts for the tests of the forward pass and the KV cache: a fixture model loaded,
 * a context made, or the test stops with the reason. */
#ifndef BN_TEST_MODEL_HARNESS_H
#define BN_TEST_MODEL_HARNESS_H

#include "harness.h"
#include "model/engine.h"

static inline bn_model *load(const char *rel) {
    char err[512];
    bn_model *m = NULL;
    if (bn_model_load(bn_fixture(rel), NULL, &m, err, sizeof err)) {
        fprintf(stderr, "load %s: %s\n", rel, err);
        exit(1);
    }
    return m;
}

static inline bn_context *new_ctx(bn_model *m, int n_ctx, bn_kv_type kv, int threads) {
    char err[512];
    bn_context *c = NULL;
    const bn_context_params cp = {n_ctx, kv, threads, NULL};
    if (bn_context_new(m, &cp, &c, err, sizeof err)) {
        fprintf(stderr, "context: %s\n", err);
        exit(1);
    }
    return c;
}

/* n token ids below vocab, the same for a seed every run. */
static inline void random_ids(int32_t *ids, int n, int vocab, uint32_t seed) {
    for (int i = 0; i < n; i++) {
        const int id = (int)((bn_test_rand_unit(&seed) + 1.0f) * 0.5f * (float)vocab);
        ids[i] = id < vocab ? id : vocab - 1;
    }
}

/* test(path, name) on the tiny qwen3 fixture model of each of the n weight types. */
static inline void each_tiny_qwen3(const char *const *types, int n, void (*test)(const char *rel, const char *name)) {
    for (int i = 0; i < n; i++) {
        char rel[128], name[64];
        snprintf(rel, sizeof rel, "qwen3-tiny/models/tiny-qwen3-%s.gguf", types[i]);
        snprintf(name, sizeof name, "qwen3-tiny %s", types[i]);
        test(rel, name);
    }
}

#endif
