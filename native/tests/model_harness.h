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

#endif
