/* Scalar dot products: the reference every SIMD path is tested against. Q1_0, Q8_0, Q4_0 and
 * the float formats follow ggml's generic code's accumulation order (exact integer sums per
 * block, then the float scaling in the same sequence), so they equal llama.cpp's scalar build
 * bit for bit; the ternary types follow llama.cpp's x86 order (see dot_ternary). */
#include <math.h>
#include <string.h>
#include "kernels/kernels_impl.h"
#include "quants/quants.h"

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

/* bit_bytes[v][i] = bit i of v: the 8 weights of a Q1_0 byte as 0/1 bytes, ready for an
 * int8 multiply-add (a table in L1 instead of per-bit shifts, which SSE2 cannot vectorize). */
#define BN_BITS1(v) {(v) & 1, (v) >> 1 & 1, (v) >> 2 & 1, (v) >> 3 & 1, (v) >> 4 & 1, (v) >> 5 & 1, (v) >> 6 & 1, (v) >> 7 & 1}
#define BN_BITS4(v) BN_BITS1(v), BN_BITS1((v) + 1), BN_BITS1((v) + 2), BN_BITS1((v) + 3)
#define BN_BITS16(v) BN_BITS4(v), BN_BITS4((v) + 4), BN_BITS4((v) + 8), BN_BITS4((v) + 12)
#define BN_BITS64(v) BN_BITS16(v), BN_BITS16((v) + 16), BN_BITS16((v) + 32), BN_BITS16((v) + 48)
static const uint8_t bit_bytes[256][8] = {BN_BITS64(0), BN_BITS64(64), BN_BITS64(128), BN_BITS64(192)};

/* sum_j (bit_j ? q_j : -q_j) over 32 weights, as 2 * sum(bit * q) - sum(q). */
static inline int signed_sum_32(const uint8_t bits[4], const int8_t q[32]) {
    int sum_on = 0, sum_all = 0;
    for (int b = 0; b < 4; b++)
        for (int i = 0; i < 8; i++) sum_on += bit_bytes[bits[b]][i] * q[8 * b + i];
    for (int j = 0; j < 32; j++) sum_all += q[j];
    return 2 * sum_on - sum_all;
}

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
            partial += bn_fp16_to_fp32(yb->d) * (float)signed_sum_32(&x[i].qs[k * 4], yb->qs);
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

/* Ternary x Q8_K in the float order of llama.cpp's x86 build (its AVX2 kernels for both
 * ternary types), not of ggml's generic code. The two differ in the last bits, and that is
 * enough to flip a later Q8_K rounding and move logits by ~0.05 on qwen3-tiny; the x86 order
 * is the one llama.cpp's published outputs come from, so every CPU reproduces them.
 * Eight integer lanes: lane k sums code * q over the elements at offsets 4k..4k+3 of each
 * 32-element group (code = trit + 1 in {0,1,2}) minus bsums[2k] + bsums[2k+1], which makes the
 * lanes add up to sum(trit * q). Each lane is scaled by d_w * d_a into its own float
 * accumulator with a fused multiply-add (as the compiler fuses llama.cpp's mul + add); the
 * eight are reduced pairwise at the end. */
#define BN_TQ_LANES 8

static void ternary_lanes(const int8_t t[BN_QK_K], const bn_block_q8_K *y, int lanes[BN_TQ_LANES]) {
    for (int k = 0; k < BN_TQ_LANES; k++) lanes[k] = -(y->bsums[2 * k] + y->bsums[2 * k + 1]);
    for (int e = 0; e < BN_QK_K; e++) lanes[(e % 32) / 4] += (t[e] + 1) * y->qs[e];
}

static float reduce_lanes(const float acc[BN_TQ_LANES]) {
    float r[4];
    for (int k = 0; k < 4; k++) r[k] = acc[k + 4] + acc[k];
    return (r[0] + r[2]) + (r[1] + r[3]);
}

static inline float dot_ternary(int64_t n, const uint8_t *w, size_t block_bytes, const bn_block_q8_K *y,
                                void (*trits)(const void *, int8_t[BN_QK_K])) {
    float acc[BN_TQ_LANES] = {0};
    int8_t t[BN_QK_K];
    int lanes[BN_TQ_LANES];
    for (int64_t i = 0; i < n / BN_QK_K; i++, w += block_bytes) {
        uint16_t h;
        memcpy(&h, w + block_bytes - 2, 2); /* both ternary types keep their d last */
        trits(w, t);
        ternary_lanes(t, &y[i], lanes);
        float d = y[i].d * bn_fp16_to_fp32(h);
        for (int k = 0; k < BN_TQ_LANES; k++) acc[k] = fmaf((float)lanes[k], d, acc[k]);
    }
    return reduce_lanes(acc);
}

void bn_vec_dot_tq1_0_q8_K_scalar(int64_t n, float *s, const void *w, const void *a) {
    *s = dot_ternary(n, w, sizeof(bn_block_tq1_0), a, bn_tq1_0_trits);
}
void bn_vec_dot_tq2_0_q8_K_scalar(int64_t n, float *s, const void *w, const void *a) {
    *s = dot_ternary(n, w, sizeof(bn_block_tq2_0), a, bn_tq2_0_trits);
}
