/* Whole-token cost: a model loaded, its context filled to `fill` positions, then `tokens` tokens
 * decoded one at a time on the calling thread (one thread). Everything before the decode loop is
 * identical for any `tokens`, so the difference between the instruction counts of a run with N
 * tokens and one with 0 is N decoded tokens: scripts/bench-arm.sh --token counts them under qemu
 * that way, per function, and splits them into matrix products, attention and the rest.
 *
 *   bench_token MODEL.gguf <fill> <tokens> [threads]
 *
 * threads (default 1) lets a profiler on the build machine see the pool's share of a token.
 *
 * The filled positions get all-zero K/V rows (imported, not evaluated: what attention costs does
 * not depend on the values it reads), so the decoded tokens attend over fill + i positions. Prints
 * one JSON line with the kernel path. */
#include <stdio.h>
#include <stdlib.h>
#include "model/engine.h"

int main(int argc, char **argv) {
    if (argc != 4 && argc != 5) {
        fprintf(stderr, "usage: bench_token MODEL.gguf <fill> <tokens> [threads]\n");
        return 2;
    }
    const int fill = atoi(argv[2]), tokens = atoi(argv[3]), threads = argc == 5 ? atoi(argv[4]) : 1;
    char err[512];
    bn_model *m = NULL;
    const int bad_args = fill < 0 || tokens < 0 || threads < 1;
    if (bad_args || bn_model_load(argv[1], NULL, &m, err, sizeof err)) {
        fprintf(stderr, "bench_token: %s\n", bad_args ? "fill and tokens must be >= 0, threads >= 1" : err);
        return 1;
    }
    const int n_vocab = bn_model_hparams(m)->n_vocab;
    const bn_context_params cp = {fill + tokens + 1, BN_KV_F32, threads, NULL};
    bn_context *c = NULL;
    int32_t *ids = calloc((size_t)fill + 1, sizeof *ids);
    float *logits = malloc((size_t)n_vocab * sizeof *logits);
    if (!ids || !logits || bn_context_new(m, &cp, &c, err, sizeof err)) {
        fprintf(stderr, "bench_token: %s\n", ids && logits ? err : "out of memory");
        return 1;
    }
    const size_t bytes = bn_context_kv_bytes(c, fill);
    void *rows = calloc(bytes ? bytes : 1, 1);
    if (!rows || bn_context_kv_import(c, ids, fill, rows, bytes, err, sizeof err)) {
        fprintf(stderr, "bench_token: %s\n", rows ? err : "out of memory");
        return 1;
    }
    for (int i = 0; i < tokens; i++) {
        const int32_t tok = (int32_t)((i * 7919 + 13) % n_vocab);
        if (bn_context_eval(c, &tok, 1, logits, 0, err, sizeof err)) {
            fprintf(stderr, "bench_token: %s\n", err);
            return 1;
        }
    }
    char label[64];
    bn_model_kernels_label(m, label, sizeof label);
    printf("{\"path\": \"%s\", \"positions\": %d}\n", label, bn_context_n_past(c));
    free(rows);
    free(ids);
    free(logits);
    bn_context_free(c);
    bn_model_free(m);
    return 0;
}
