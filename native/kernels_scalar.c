/* Scalar dot products: the reference every SIMD path is tested against. Each follows ggml's
 * generic code's accumulation order (exact integer sums per block, then the float scaling in
 * the same sequence), so results equal llama.cpp's scalar build bit for bit. */
#include <string.h>
#include "kernels_impl.h"
#include "quants.h"

/* Every product is rounded before it is added, as in ggml's x86 build that produced the
 * fixtures: without this, compilers fuse multiply-adds on ARM and the reference drifts. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

/* Plain float formats: products in f32, summed in double, as ggml's ggml_vec_dot_f32/f16/bf16
 * do without SIMD. Inlined with a constant loader, so each caller gets its own tight loop. */
static inline float load_f32(const void *p, int64_t i) { return ((const float *)p)[i]; }
static inline float load_f16(const void *p, int64_t i) { return bn_fp16_to_fp32(((const uint16_t *)p)[i]); }
static inline float load_bf16(const void *p, int64_t i) { return bn_bf16_to_fp32(((const uint16_t *)p)[i]); }

static inline float dot_floats(int64_t n, const void *w, const void *a, float (*load)(const void *, int64_t)) {
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) sum += (double)(load(w, i) * load(a, i));
    return (float)sum;
}

void bn_vec_dot_f32_scalar(int64_t n, float *s, const void *w, const void *a) { *s = dot_floats(n, w, a, load_f32); }
void bn_vec_dot_f16_scalar(int64_t n, float *s, const void *w, const void *a) { *s = dot_floats(n, w, a, load_f16); }
void bn_vec_dot_bf16_scalar(int64_t n, float *s, const void *w, const void *a) { *s = dot_floats(n, w, a, load_bf16); }

/* Q1_0 x Q8_0: one Q1_0 block spans four Q8_0 blocks. Per Q8_0 block an exact integer sum of
 * +-q, scaled by that block's d into a float partial; the partial is scaled by the Q1_0 d. */
void bn_vec_dot_q1_0_q8_0_scalar(int64_t n, float *s, const void *w, const void *a) {
    const bn_block_q1_0 *x = w;
    const bn_block_q8_0 *y = a;
    float sumf = 0.0f;
    for (int64_t i = 0; i < n / BN_QK1_0; i++) {
        float partial = 0.0f;
        for (int k = 0; k < 4; k++) {
            const bn_block_q8_0 *yb = &y[i * 4 + k];
            const uint8_t *b = &x[i].qs[k * 4];
            uint32_t bits = b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
            int isum = 0;
            for (int j = 0; j < BN_QK8_0; j++) {
                /* branch-free +-q (neg is 0 or -1), which compilers vectorize */
                int neg = (int)((bits >> j) & 1) - 1;
                isum += (yb->qs[j] ^ neg) - neg;
            }
            partial += bn_fp16_to_fp32(yb->d) * (float)isum;
        }
        sumf += bn_fp16_to_fp32(x[i].d) * partial;
    }
    *s = sumf;
}

void bn_vec_dot_q8_0_q8_0_scalar(int64_t n, float *s, const void *w, const void *a) {
    const bn_block_q8_0 *x = w, *y = a;
    float sumf = 0.0f;
    for (int64_t i = 0; i < n / BN_QK8_0; i++) {
        int isum = 0;
        for (int j = 0; j < BN_QK8_0; j++) isum += x[i].qs[j] * y[i].qs[j];
        sumf += (float)isum * (bn_fp16_to_fp32(x[i].d) * bn_fp16_to_fp32(y[i].d));
    }
    *s = sumf;
}

void bn_vec_dot_q4_0_q8_0_scalar(int64_t n, float *s, const void *w, const void *a) {
    const bn_block_q4_0 *x = w;
    const bn_block_q8_0 *y = a;
    float sumf = 0.0f;
    for (int64_t i = 0; i < n / BN_QK4_0; i++) {
        int isum = 0;
        for (int j = 0; j < BN_QK4_0 / 2; j++) {
            isum += ((x[i].qs[j] & 0x0f) - 8) * y[i].qs[j];
            isum += ((x[i].qs[j] >> 4) - 8) * y[i].qs[j + BN_QK4_0 / 2];
        }
        /* ggml scales by the weight d first, then by the activation d (not by their product) */
        sumf += (float)isum * bn_fp16_to_fp32(x[i].d) * bn_fp16_to_fp32(y[i].d);
    }
    *s = sumf;
}

/* Ternary x Q8_K: an exact integer sum over the whole 256-block, scaled once by d_w * d_a. */
static inline float dot_ternary(int64_t n, const uint8_t *w, size_t block_bytes, const bn_block_q8_K *y,
                                void (*trits)(const void *, int8_t[BN_QK_K])) {
    float sumf = 0.0f;
    int8_t t[BN_QK_K];
    for (int64_t i = 0; i < n / BN_QK_K; i++, w += block_bytes) {
        uint16_t h;
        memcpy(&h, w + block_bytes - 2, 2); /* both ternary types keep their d last */
        trits(w, t);
        int isum = 0;
        for (int j = 0; j < BN_QK_K; j++) isum += t[j] * y[i].qs[j];
        sumf += (float)isum * (bn_fp16_to_fp32(h) * y[i].d);
    }
    return sumf;
}

void bn_vec_dot_tq1_0_q8_K_scalar(int64_t n, float *s, const void *w, const void *a) {
    *s = dot_ternary(n, w, sizeof(bn_block_tq1_0), a, bn_tq1_0_trits);
}
void bn_vec_dot_tq2_0_q8_K_scalar(int64_t n, float *s, const void *w, const void *a) {
    *s = dot_ternary(n, w, sizeof(bn_block_tq2_0), a, bn_tq2_0_trits);
}
