/* ggml block formats: the type table, fp16/bf16 conversion, dequantization and quantization.
 * Byte layouts are ggml's exactly (see BACKGROUND.md); ids are ggml's type ids. */
#ifndef BN_QUANTS_H
#define BN_QUANTS_H

#include <stdint.h>
#include <stddef.h>

enum bn_type {
    BN_TYPE_F32 = 0,
    BN_TYPE_F16 = 1,
    BN_TYPE_Q4_0 = 2,
    BN_TYPE_Q8_0 = 8,
    BN_TYPE_Q8_K = 15,
    BN_TYPE_BF16 = 30,
    BN_TYPE_TQ1_0 = 34,
    BN_TYPE_TQ2_0 = 35,
    BN_TYPE_Q1_0 = 41,
};

#define BN_QK1_0 128
#define BN_QK8_0 32
#define BN_QK4_0 32
#define BN_QK_K 256

typedef struct { uint16_t d; uint8_t qs[BN_QK1_0 / 8]; } bn_block_q1_0;       /* 18 bytes */
typedef struct { uint16_t d; int8_t qs[BN_QK8_0]; } bn_block_q8_0;            /* 34 bytes */
typedef struct { uint16_t d; uint8_t qs[BN_QK4_0 / 2]; } bn_block_q4_0;       /* 18 bytes */
typedef struct { float d; int8_t qs[BN_QK_K]; int16_t bsums[BN_QK_K / 16]; } bn_block_q8_K; /* 292 */
typedef struct { uint8_t qs[(BN_QK_K - 4 * BN_QK_K / 64) / 5]; uint8_t qh[BN_QK_K / 64]; uint16_t d; } bn_block_tq1_0; /* 54 */
typedef struct { uint8_t qs[BN_QK_K / 4]; uint16_t d; } bn_block_tq2_0;       /* 66 */

typedef void (*bn_to_float_fn)(const void *src, float *dst, int64_t n);
typedef void (*bn_from_float_fn)(const float *src, void *dst, int64_t n);

typedef struct bn_type_traits {
    const char *name;        /* ggml's lower-case name, e.g. "q1_0" */
    uint32_t block_size;     /* elements per block */
    uint32_t block_bytes;    /* bytes per block */
    bn_to_float_fn to_float; /* NULL for activation-only types (Q8_K) */
    bn_from_float_fn from_float; /* ggml's reference quantizer, bit-exact */
    uint32_t vec_dot_type;   /* the type activations are converted to for a dot with this weight type */
} bn_type_traits;

/* NULL for ids the engine does not know. */
const bn_type_traits *bn_type_get(uint32_t type);
/* The id of the type whose traits name is `name` ("q1_0"): 0, or -1 when there is none. */
int bn_type_from_name(const char *name, uint32_t *out);
/* A human description of an id the engine refuses (known forks' ids get a specific message). */
const char *bn_type_unknown_reason(uint32_t type);

float bn_fp16_to_fp32(uint16_t h);
uint16_t bn_fp32_to_fp16(float f);   /* round-to-nearest-even, as ggml */
float bn_bf16_to_fp32(uint16_t h);
uint16_t bn_fp32_to_bf16(float f);   /* as ggml_compute_fp32_to_bf16 */

/* The 256 weights of one bn_block_tq1_0 / bn_block_tq2_0 as -1/0/+1 in element order
 * (dequantized = trit * d); shared by the dequantizers and the scalar dot products. */
void bn_tq1_0_trits(const void *block, int8_t out[BN_QK_K]);
void bn_tq2_0_trits(const void *block, int8_t out[BN_QK_K]);

/* Bytes of a row of n elements of type t; 0 if n is not a multiple of the block size or t unknown. */
uint64_t bn_row_bytes(uint32_t type, uint64_t n);

#endif
