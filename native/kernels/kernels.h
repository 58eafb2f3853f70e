/* Matrix products between quantized weights and F32 activations.
 * The forward pass calls only bn_matmul and bn_matmul_group; how a type is multiplied on which instruction set
 * (activation quantization, repacking, SIMD path) lives behind it. */
#ifndef BN_KERNELS_H
#define BN_KERNELS_H

#include <stdint.h>
#include <stddef.h>
#include "core/threadpool.h"
#include "kernels/isa.h"

/* A weight matrix: `rows` rows of `cols` elements of `type`, row-major, row r at data + r*row_bytes.
 * `data` may point into a memory-mapped file or into a decoded buffer; the matrix never owns it.
 * `packed` is an optional load-time re-layout: in memory of the caller's (bn_matrix_prepare_into)
 * or of the matrix's own, which bn_matrix_release frees. */
typedef struct bn_matrix {
    uint32_t type;
    int64_t rows, cols;
    const uint8_t *data;
    size_t row_bytes;
    void *packed;
    size_t packed_bytes;
    int packed_layout;
    int packed_owned;    /* packed was allocated by bn_matrix_prepare (else it lives in the caller's memory) */
} bn_matrix;

/* Fills m for a row-major tensor; 0 on success. */
int bn_matrix_init(bn_matrix *m, uint32_t type, int64_t rows, int64_t cols, const void *data,
                   char *err, size_t errlen);
/* The same with no data yet: a loader sets m->data before bn_matrix_prepare_into (a pack's
 * matrices are decoded just before they are repacked). */
int bn_matrix_init_shape(bn_matrix *m, uint32_t type, int64_t rows, int64_t cols, char *err, size_t errlen);
/* Optional re-layout for the given path (may do nothing), into memory the matrix allocates. */
int bn_matrix_prepare(bn_matrix *m, bn_isa isa, char *err, size_t errlen);
/* Bytes the re-layout for isa needs (0: none), so that a model can pack all its matrices into
 * one allocation; then bn_matrix_prepare_into writes it to dst (64-byte aligned, that size; NULL
 * allocates as bn_matrix_prepare does). */
size_t bn_matrix_packed_size(bn_matrix *m, bn_isa isa);
int bn_matrix_prepare_into(bn_matrix *m, bn_isa isa, void *dst, char *err, size_t errlen);
/* Takes src, the layout bn_matrix_prepare_into wrote for isa earlier (kept in a file, mapped), as
 * m's packed layout without repacking; src must outlive m. -1 when isa packs nothing for m. */
int bn_matrix_adopt_packed(bn_matrix *m, bn_isa isa, const void *src);
void bn_matrix_release(bn_matrix *m);

/* Dequantizes row r of m into out[cols] (embedding lookup). */
void bn_matrix_get_row(const bn_matrix *m, int64_t r, float *out);

/* Scratch memory reused across calls (activation quantization buffers); grows as needed. */
typedef struct bn_scratch {
    void *buf;
    size_t size;
} bn_scratch;
void bn_scratch_free(bn_scratch *s);

/* y[t][r] = sum_c W[r][c] * x[t][c] for t < n_tokens, r < rows.
 * x is [n_tokens][cols] F32, y is [n_tokens][rows] F32 (row stride = rows).
 * Quantized weights see x quantized exactly as llama.cpp's CPU backend does (Q8_0 per 32 for
 * Q1_0/Q8_0/Q4_0, Q8_K per 256 for TQ1_0/TQ2_0, F16 for F16 weights), so results match it
 * within float rounding. Runs on all threads of pool (NULL: the calling thread alone).
 * Returns 0, or -1 on allocation failure. */
int bn_matmul(bn_threadpool *pool, bn_isa isa, const bn_matrix *w, const float *x, int n_tokens,
              float *y, bn_scratch *scratch);

/* y[i] = w[i] x for n_mats matrices applied to the same x (a layer's q, k and v; gate and up):
 * when they share type and cols, x is quantized once and one pass of the pool covers all of
 * them, its threads splitting their rows together; otherwise one bn_matmul each. */
int bn_matmul_group(bn_threadpool *pool, bn_isa isa, const bn_matrix *const *w, float *const *y, int n_mats,
                    const float *x, int n_tokens, bn_scratch *scratch);

/* What a thread runs on rows [r0, r1) of a group's products once it has computed them in every
 * matrix of the group (bn_matmul_group_then): a step that reads only those rows (SwiGLU of gate
 * and up, say) then runs in the same pass of the pool, on rows still in that thread's cache.
 * Ranges start on multiples of `align` (a power of two). */
typedef struct bn_rows_then {
    void (*fn)(void *arg, int64_t r0, int64_t r1);
    void *arg;
    int64_t align;
} bn_rows_then;

/* bn_matmul_group, the threads splitting the rows of the matrices (which must all have as many)
 * rather than the matrices, and each running then->fn on its rows as soon as they are done;
 * every row is covered by exactly one call. -1 when the row counts differ, or on allocation
 * failure. */
int bn_matmul_group_then(bn_threadpool *pool, bn_isa isa, const bn_matrix *const *w, float *const *y, int n_mats,
                         const float *x, int n_tokens, bn_scratch *scratch, const bn_rows_then *then);

/* The form the products with a matrix read activations in (Q8_0 blocks for Q1_0 weights, ...).
 * bn_matmul converts x itself, on the calling thread or in a pass of its own; a step that
 * writes x on the pool can convert the ranges it wrote instead (bn_act_convert, while they are in
 * its cache) and hand the rows to bn_matmul_converted, sparing that. */
typedef struct bn_act_form {
    void (*convert)(const float *x, void *dst, int64_t n);
    uint32_t block;      /* ranges convert on their own from multiples of this */
    size_t block_bytes;
    size_t row_bytes;    /* one token's converted row */
} bn_act_form;
int bn_act_form_get(const bn_matrix *w, bn_isa isa, bn_act_form *f);
/* Elements [begin, end) of one token's row x into its converted row; begin and end are multiples
 * of f->block (end may be the row's end). */
void bn_act_convert(const bn_act_form *f, const float *x, int64_t begin, int64_t end, void *row);
/* bn_matmul of activations already converted (n_tokens rows of bn_act_form's row_bytes). */
int bn_matmul_converted(bn_threadpool *pool, bn_isa isa, const bn_matrix *w, const void *act, int n_tokens,
                        float *y);

/* The buffer of s, grown to at least bytes (64-byte aligned); NULL when that fails. */
void *bn_scratch_reserve(bn_scratch *s, size_t bytes);

/* The path whose kernel computes the products of weight `type` on `isa` (its gemm, else its
 * vec_dot): isa itself when its own column of the kernel table holds that function, else the
 * nearest path it extends whose column does (Q1_0 on avx512: avx2; TQ1_0 on avx2: scalar). */
bn_isa bn_kernels_isa(uint32_t type, bn_isa isa);
/* What to report for `type` on `isa`: the path's name, followed by " (<path> kernels)" when
 * another path's kernels do the work ("avx512 (avx2 kernels)"). */
void bn_kernels_label(uint32_t type, bn_isa isa, char *buf, size_t len);

#endif
