/* Private interface of the kernel layer: what one weight type offers on one instruction set.
 * kernels.c holds one table row per weight type, one column per path; the scalar column
 * (kernels_scalar.c) is complete, the others are filled by the files under arch/ and declared at
 * the end of this header. A NULL entry is taken from the path the ISA extends (bn_isa_parent). */
#ifndef BN_KERNELS_IMPL_H
#define BN_KERNELS_IMPL_H

#include <stdint.h>
#include <stddef.h>
#include "arch/arch.h"
#include "kernels/kernels.h"

/* *s = dot of n elements: one weight row `w` against one activation row `a`, the activation
 * already converted to the weight type's vec_dot_type. */
typedef void (*bn_vec_dot_fn)(int64_t n, float *s, const void *w, const void *a);

/* Rows [r0, r1) of w against n_tokens activation rows (act + t * act_stride), writing
 * y[t * y_stride + r]. A GEMM reuses each weight block across the batch; it may read w->packed. */
typedef void (*bn_gemm_fn)(const bn_matrix *w, int64_t r0, int64_t r1, const void *act, size_t act_stride,
                           int n_tokens, float *y, int64_t y_stride);

/* Load-time re-layout of m, read by the gemm of the same column; vec_dot always reads the ggml
 * rows in m->data. With dst NULL it only sets m->packed_bytes (the size it needs) and
 * m->packed_layout; otherwise it also writes the layout into dst (64-byte aligned, packed_bytes
 * long) and sets m->packed. */
typedef void (*bn_pack_fn)(bn_matrix *m, void *dst);

typedef struct bn_kernel_ops {
    bn_vec_dot_fn vec_dot; /* GEMV building block */
    bn_gemm_fn gemm;       /* batched product; NULL = vec_dot per row and token */
    bn_pack_fn pack;       /* NULL = the row-major ggml layout is used as is */
    /* activation quantizer, bit-identical to the type traits' from_float; NULL = that one */
    void (*quantize)(const float *x, void *dst, int64_t n);
} bn_kernel_ops;

/* Scalar reference: ggml's generic vec_dot for each pair, same accumulation order. */
void bn_vec_dot_f32_scalar(int64_t n, float *s, const void *w, const void *a);
void bn_vec_dot_f16_scalar(int64_t n, float *s, const void *w, const void *a);
void bn_vec_dot_bf16_scalar(int64_t n, float *s, const void *w, const void *a);
void bn_vec_dot_q1_0_q8_0_scalar(int64_t n, float *s, const void *w, const void *a);
void bn_vec_dot_q8_0_q8_0_scalar(int64_t n, float *s, const void *w, const void *a);
void bn_vec_dot_q4_0_q8_0_scalar(int64_t n, float *s, const void *w, const void *a);
void bn_vec_dot_tq1_0_q8_K_scalar(int64_t n, float *s, const void *w, const void *a);
void bn_vec_dot_tq2_0_q8_K_scalar(int64_t n, float *s, const void *w, const void *a);

/* Q1_0 in 16-row tiles (kernels_q1_tiles.c), read by the NEON lookup-table gemms: tile t holds rows
 * 16t..16t+15 (zero rows pad the last); per block column, plane j (16 bytes) holds bit-byte j
 * of the 16 rows, then come their 16 fp16 scales. 18 bytes per row and block, as in the file. */
#define BN_Q1_TILE 16
#define BN_Q1_PLANES 16
#define BN_Q1_TILE_BLOCK (BN_Q1_PLANES * BN_Q1_TILE + 2 * BN_Q1_TILE)
#define BN_Q1_LAYOUT_TILE16 0x51310016
void bn_pack_q1_0_tile16(bn_matrix *m, void *dst);

/* Q1_0 in 32-row tiles for AVX2 (kernels_q1_tiles.c): tile t holds rows 32t..32t+31 (zero rows
 * pad the last); per block column, plane j (32 bytes) holds bit-byte j of the 32 rows, so one
 * 256-bit load is one plane, then come the 32 fp16 scales in the order the kernel's sums come
 * out of its int16 -> int32 widening (bn_q1_tile32_slot), so they load without shuffles. */
#define BN_Q1_TILE32 32
#define BN_Q1_TILE32_BLOCK (BN_Q1_PLANES * BN_Q1_TILE32 + 2 * BN_Q1_TILE32)
#define BN_Q1_LAYOUT_TILE32 0x51310032
void bn_pack_q1_0_tile32(bn_matrix *m, void *dst);

/* Where row r of a 32-row tile sits among the kernel's sums: four vectors of 8 (even rows of
 * r % 16 < 8, odd rows of them, even rows of r % 16 >= 8, odd rows of them), each holding
 * rows of 0-15 in its low half and of 16-31 in its high half. */
static inline int bn_q1_tile32_slot(int r) { return r / 8 % 2 * 16 + r % 2 * 8 + r / 16 * 4 + r % 8 / 2; }

/* Q1_0 in 64-row tiles for AVX-512 (kernels_q1_tiles.c): the tile32 layout at twice the width,
 * so one 512-bit load (one cache line) is one plane of 64 rows; then the 64 fp16 scales in the
 * order of bn_q1_tile64_slot. */
#define BN_Q1_TILE64 64
#define BN_Q1_TILE64_BLOCK (BN_Q1_PLANES * BN_Q1_TILE64 + 2 * BN_Q1_TILE64)
#define BN_Q1_LAYOUT_TILE64 0x51310064
void bn_pack_q1_0_tile64(bn_matrix *m, void *dst);

/* bn_q1_tile32_slot for four 128-bit lanes of 16 rows: four vectors of 16 (even rows of
 * r % 16 < 8, odd rows of them, even rows of r % 16 >= 8, odd rows of them), each holding 4
 * rows of each lane, lane r / 16 at 4 * (r / 16). */
static inline int bn_q1_tile64_slot(int r) { return r % 16 / 8 * 32 + r % 2 * 16 + r / 16 * 4 + r % 8 / 2; }

/* x86 AVX2 + FMA + F16C (arch/x86/kernels_avx2.c: compiled on x86-64 only, chosen at run time). */
#if defined(BN_HAVE_X86_KERNELS)
void bn_vec_dot_q1_0_q8_0_avx2(int64_t n, float *s, const void *w, const void *a);
void bn_gemm_q1_0_q8_0_avx2(const bn_matrix *w, int64_t r0, int64_t r1, const void *act, size_t act_stride,
                            int n_tokens, float *y, int64_t y_stride);
void bn_vec_dot_q8_0_q8_0_avx2(int64_t n, float *s, const void *w, const void *a);
void bn_vec_dot_tq2_0_q8_K_avx2(int64_t n, float *s, const void *w, const void *a);
void bn_quantize_q8_0_avx2(const float *x, void *dst, int64_t n);
/* The lookup tables of the Q1_0 gemms (arch/x86/kernels_avx2.c, read by the AVX-512 one too): of
 * one token's Q8_0 row `act`, blocks [i0, i0 + nblk): per Q1_0 block 32 groups of 4 activations,
 * each BN_Q1_GROUP_TABLE bytes (the 16 low parts of its signed subset sums, then the 16 high
 * parts), and the 4 * nblk Q8_0 scales divided by 8 into d8. */
#define BN_Q1_GROUP_TABLE 32
void bn_q1_tables_avx2(const void *act, int64_t i0, int64_t nblk, uint8_t *tab, float *d8);
/* AVX-512 F + BW + VL + VNNI (arch/x86/kernels_avx512.c: same build and run-time choice), and
 * the same gemm looking its tables up by VBMI's vpermb (the avx512vbmi path; same layout). */
void bn_gemm_q1_0_q8_0_avx512(const bn_matrix *w, int64_t r0, int64_t r1, const void *act, size_t act_stride,
                              int n_tokens, float *y, int64_t y_stride);
void bn_gemm_q1_0_q8_0_avx512vbmi(const bn_matrix *w, int64_t r0, int64_t r1, const void *act, size_t act_stride,
                                  int n_tokens, float *y, int64_t y_stride);
#endif

/* aarch64 NEON (arch/arm/kernels_neon.c: compiled on aarch64 only; plain armv8.0, every board). */
#if defined(BN_HAVE_ARM_KERNELS)
void bn_gemm_q1_0_q8_0_neon(const bn_matrix *w, int64_t r0, int64_t r1, const void *act, size_t act_stride,
                            int n_tokens, float *y, int64_t y_stride);
void bn_vec_dot_q8_0_q8_0_neon(int64_t n, float *s, const void *w, const void *a);
void bn_quantize_q8_0_neon(const float *x, void *dst, int64_t n);
void bn_vec_dot_tq2_0_q8_K_neon(int64_t n, float *s, const void *w, const void *a);
void bn_vec_dot_tq1_0_q8_K_neon(int64_t n, float *s, const void *w, const void *a);
/* armv8.2 dotprod (arch/arm/kernels_dotprod.c: per-function target attribute, chosen at run time) */
void bn_vec_dot_q8_0_q8_0_dotprod(int64_t n, float *s, const void *w, const void *a);
void bn_vec_dot_tq2_0_q8_K_dotprod(int64_t n, float *s, const void *w, const void *a);
#endif

/* The ops of weight `type` on `isa`, scalar fallbacks filled in; -1 for a type without kernels. */
int bn_kernel_ops_get(uint32_t type, bn_isa isa, bn_kernel_ops *out);

#endif
