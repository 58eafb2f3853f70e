/* Quantization-aware distillation: a student whose matrices are 1-bit (Q1_0 semantics) in the
 * forward pass, with latent F32 weights updated through a straight-through estimator, learning
 * from a float teacher's logits (KL) and/or the data (cross-entropy), with AdamW, warm-up +
 * cosine decay and gradient clipping. Sequences of a batch are spread over the threads, each
 * with its own activations and gradients, summed before the update. */
#ifndef BN_TRAINER_H
#define BN_TRAINER_H

#include <stddef.h>
#include <stdint.h>

#include "train/transformer.h"

typedef struct bn_trainer_config {
    bn_train_shape shape;
    int seq_len;        /* positions per training sequence (a sequence holds seq_len + 1 tokens) */
    int quantize;       /* 1: matrices are sign x per-128 scale in the forward pass (QAT); 0: float */
    int threads;
    float lr, lr_min;   /* peak and final learning rate */
    int warmup_steps, total_steps;
    float beta1, beta2, adam_eps, weight_decay, clip;
    float kl_weight, ce_weight;
    float init_std;
    uint64_t seed;
} bn_trainer_config;

typedef struct bn_train_metrics {
    double loss;        /* weighted KL + CE per position */
    double kl;          /* KL(teacher || student) per position (0 without a teacher) */
    double nll;         /* student NLL of the data per position */
    double grad_norm;   /* before clipping */
    double lr;
    int64_t step;       /* steps done, after this one */
} bn_train_metrics;

typedef struct bn_trainer bn_trainer;

/* teacher: a GGUF llama model (any type the engine dequantizes) with the student's vocabulary,
 * or NULL to train on data alone. */
bn_trainer *bn_trainer_new(const bn_trainer_config *config, const char *teacher_path, char *err, size_t errlen);
void bn_trainer_free(bn_trainer *tr);

/* One optimizer step on batch sequences of seq_len + 1 token ids each (position t predicts t + 1). */
int bn_trainer_step(bn_trainer *tr, const int32_t *tokens, int batch, bn_train_metrics *out, char *err, size_t errlen);

/* Sum of the student's NLL (or the teacher's, when teacher is set) over positions 1..n-1 of one
 * sequence of n <= seq_len + 1 tokens, the forward as the exported model runs it. */
int bn_trainer_score(bn_trainer *tr, int teacher, const int32_t *tokens, int n, double *nll_sum, char *err, size_t errlen);

/* Teacher logits of one sequence, [n][vocab] (n <= seq_len + 1), for tests against the engine. */
int bn_trainer_teacher_logits(bn_trainer *tr, const int32_t *tokens, int n, float *out, char *err, size_t errlen);

const bn_train_layout *bn_trainer_layout(const bn_trainer *tr);
/* The latent weights, AdamW's two moments (each n_params floats) and the step count: what a
 * checkpoint saves and a resume restores. */
float *bn_trainer_params(bn_trainer *tr);
float *bn_trainer_moment(bn_trainer *tr, int which);
int64_t *bn_trainer_steps(bn_trainer *tr);
/* The weights as the forward pass uses them (sign-quantized matrices when quantize is set). */
const float *bn_trainer_effective_params(bn_trainer *tr);

/* The learning rate at step (0-based): linear warm-up, then cosine decay to lr_min. */
double bn_trainer_lr_at(const bn_trainer_config *c, int64_t step);

#endif
