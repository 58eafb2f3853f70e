/* Token sampling: repetition penalty, then top-k, top-p, min-p, temperature and a seeded draw
 * (llama.cpp's order). temperature <= 0 is greedy: the first index of the maximum after the
 * penalty. The same seed and inputs give the same tokens. */
#ifndef BN_SAMPLER_H
#define BN_SAMPLER_H

#include <stdint.h>

typedef struct bn_sampler_params {
    float temperature;    /* <= 0: greedy */
    int top_k;            /* <= 0: off */
    float top_p;          /* >= 1: off */
    float min_p;          /* <= 0: off */
    float repeat_penalty; /* 1: off */
    int repeat_last_n;    /* how many recent tokens the penalty looks at */
    uint64_t seed;
} bn_sampler_params;

typedef struct bn_sampler bn_sampler;

bn_sampler *bn_sampler_new(const bn_sampler_params *p, int n_vocab);
void bn_sampler_free(bn_sampler *s);
/* Picks a token from logits[n_vocab] (which it may modify). recent holds the tokens seen so far
 * (prompt and generated), oldest first; the penalty uses the last repeat_last_n of them. */
int32_t bn_sampler_sample(bn_sampler *s, float *logits, const int32_t *recent, int n_recent);
/* Speculative decoding's check of a drafted token: the token this position gets, and whether it
 * is the draft. It is bn_sampler_sample's draw (one draw per position, as without drafts), so the
 * output is the same token for token as without drafts, for a seed too; a draft proposed with
 * certainty is kept with probability p(draft), as the standard accept/reject rule keeps it. */
int32_t bn_sampler_verify(bn_sampler *s, float *logits, const int32_t *recent, int n_recent, int32_t draft,
                          int *accepted);

#endif
