/* The kernel layer: the per-type kernel table, weight matrices and the threaded matmul. Adding
 * a SIMD kernel for a type is one entry in kernel_table plus the function in arch/<family>/;
 * anything left NULL falls back along bn_isa_parent to scalar. */
#include <stdlib.h>
#include <string.h>
#include "core/common.h"
#include "kernels/kernels_impl.h"
#include "quants/quants.h"

/* ---- the kernel table: one row per weight type, one column per instruction set ---- */

typedef struct bn_kernel_row {
    uint32_t type; /* the activation type is bn_type_get(type)->vec_dot_type */
    bn_kernel_ops ops[BN_ISA_COUNT];
} bn_kernel_row;

/* Columns of the paths under arch/ exist only in builds for their architecture (arch/arch.h). */
static const bn_kernel_row kernel_table[] = {
    {.type = BN_TYPE_F32, .ops = {[BN_ISA_SCALAR] = {.vec_dot = bn_vec_dot_f32_scalar}}},
    {.type = BN_TYPE_F16, .ops = {[BN_ISA_SCALAR] = {.vec_dot = bn_vec_dot_f16_scalar}}},
    {.type = BN_TYPE_BF16, .ops = {[BN_ISA_SCALAR] = {.vec_dot = bn_vec_dot_bf16_scalar}}},
    {.type = BN_TYPE_Q4_0, .ops = {[BN_ISA_SCALAR] = {.vec_dot = bn_vec_dot_q4_0_q8_0_scalar}}},
    {.type = BN_TYPE_Q8_0,
     .ops = {[BN_ISA_SCALAR] = {.vec_dot = bn_vec_dot_q8_0_q8_0_scalar},
             BN_X86_ENTRY([BN_ISA_AVX2] = {.vec_dot = bn_vec_dot_q8_0_q8_0_avx2, .quantize = bn_quantize_q8_0_avx2})
             BN_ARM_ENTRY([BN_ISA_NEON] = {.vec_dot = bn_vec_dot_q8_0_q8_0_neon, .quantize = bn_quantize_q8_0_neon})
             BN_ARM_ENTRY([BN_ISA_DOTPROD] = {.vec_dot = bn_vec_dot_q8_0_q8_0_dotprod})}},
    {.type = BN_TYPE_Q1_0,
     .ops = {[BN_ISA_SCALAR] = {.vec_dot = bn_vec_dot_q1_0_q8_0_scalar},
             BN_X86_ENTRY([BN_ISA_AVX2] = {.vec_dot = bn_vec_dot_q1_0_q8_0_avx2, .gemm = bn_gemm_q1_0_q8_0_avx2,
                                           .pack = bn_pack_q1_0_tile32, .quantize = bn_quantize_q8_0_avx2})
             BN_X86_ENTRY([BN_ISA_AVX512] = {.gemm = bn_gemm_q1_0_q8_0_avx512, .pack = bn_pack_q1_0_tile64})
             BN_X86_ENTRY([BN_ISA_AVX512VBMI] = {.gemm = bn_gemm_q1_0_q8_0_avx512vbmi, .pack = bn_pack_q1_0_tile64})
             BN_ARM_ENTRY([BN_ISA_NEON] = {.gemm = bn_gemm_q1_0_q8_0_neon, .pack = bn_pack_q1_0_tile16,
                                           .quantize = bn_quantize_q8_0_neon})}},
    {.type = BN_TYPE_TQ1_0,
     .ops = {[BN_ISA_SCALAR] = {.vec_dot = bn_vec_dot_tq1_0_q8_K_scalar},
             BN_ARM_ENTRY([BN_ISA_NEON] = {.vec_dot = bn_vec_dot_tq1_0_q8_K_neon})}},
    {.type = BN_TYPE_TQ2_0,
     .ops = {[BN_ISA_SCALAR] = {.vec_dot = bn_vec_dot_tq2_0_q8_K_scalar},
             BN_X86_ENTRY([BN_ISA_AVX2] = {.vec_dot = bn_vec_dot_tq2_0_q8_K_avx2})
             BN_ARM_ENTRY([BN_ISA_NEON] = {.vec_dot = bn_vec_dot_tq2_0_q8_K_neon})
             BN_ARM_ENTRY([BN_ISA_DOTPROD] = {.vec_dot = bn_vec_dot_tq2_0_q8_K_dotprod})}},
};

static const bn_kernel_row *kernel_row(uint32_t type) {
    for (size_t i = 0; i < sizeof kernel_table / sizeof kernel_table[0]; i++)
        if (kernel_table[i].type == type) return &kernel_table[i];
    return NULL;
}

int bn_kernel_ops_get(uint32_t type, bn_isa isa, bn_kernel_ops *out) {
    const bn_kernel_row *row = kernel_row(type);
    if (!row || (unsigned)isa >= BN_ISA_COUNT) return -1;
    *out = row->ops[isa];
    /* walk up to scalar, taking each missing entry from the nearest path that has it; a gemm
     * and the layout it reads are inherited together */
    for (bn_isa p = isa; p != BN_ISA_SCALAR;) {
        p = bn_isa_parent(p);
        if (!out->vec_dot) out->vec_dot = row->ops[p].vec_dot;
        if (!out->quantize) out->quantize = row->ops[p].quantize;
        if (!out->gemm && !out->pack) {
            out->gemm = row->ops[p].gemm;
            out->pack = row->ops[p].pack;
        }
    }
    return 0;
}

bn_isa bn_kernels_isa(uint32_t type, bn_isa isa) {
    bn_kernel_ops ops;
    if (bn_kernel_ops_get(type, isa, &ops) != 0) return isa;
    const bn_kernel_row *row = kernel_row(type);
    /* the nearest column holding the function that computes the products: the gemm when there is
     * one (bn_matmul then uses it for every batch), else the vec_dot */
    while (isa != BN_ISA_SCALAR &&
           (ops.gemm ? row->ops[isa].gemm != ops.gemm : row->ops[isa].vec_dot != ops.vec_dot))
        isa = bn_isa_parent(isa);
    return isa;
}

void bn_kernels_label(uint32_t type, bn_isa isa, char *buf, size_t len) {
    const bn_isa runs = bn_kernels_isa(type, isa);
    if (runs == isa)
        snprintf(buf, len, "%s", bn_isa_name(isa));
    else
        snprintf(buf, len, "%s (%s kernels)", bn_isa_name(isa), bn_isa_name(runs));
}

/* ---- weight matrices ---- */

int bn_matrix_init(bn_matrix *m, uint32_t type, int64_t rows, int64_t cols, const void *data,
                   char *err, size_t errlen) {
    if (bn_matrix_init_shape(m, type, rows, cols, err, errlen)) return -1;
    if (!data) return bn_fail(err, errlen, "%s matrix has no data", bn_type_get(type)->name);
    m->data = data;
    return 0;
}

int bn_matrix_init_shape(bn_matrix *m, uint32_t type, int64_t rows, int64_t cols, char *err, size_t errlen) {
    memset(m, 0, sizeof *m);
    const bn_type_traits *t = bn_type_get(type);
    if (!t || !kernel_row(type)) return bn_fail(err, errlen, "no kernels for weight type %u", (unsigned)type);
    if (rows <= 0 || cols <= 0 || cols % t->block_size)
        return bn_fail(err, errlen, "bad %s matrix shape %lld x %lld (block size %u)", t->name, (long long)rows,
                       (long long)cols, t->block_size);
    m->type = type;
    m->rows = rows;
    m->cols = cols;
    m->row_bytes = (size_t)bn_row_bytes(type, (uint64_t)cols);
    return 0;
}

size_t bn_matrix_packed_size(bn_matrix *m, bn_isa isa) {
    bn_kernel_ops ops;
    if (m->packed || bn_kernel_ops_get(m->type, isa, &ops) != 0 || !ops.pack) return 0;
    ops.pack(m, NULL);
    return m->packed_bytes;
}

int bn_matrix_prepare_into(bn_matrix *m, bn_isa isa, void *dst, char *err, size_t errlen) {
    bn_kernel_ops ops;
    if (bn_kernel_ops_get(m->type, isa, &ops) != 0) return bn_fail(err, errlen, "no kernels for type %u", m->type);
    if (!ops.pack || m->packed) return 0;
    void *own = NULL;
    if (!dst) {
        ops.pack(m, NULL);
        dst = own = bn_alloc_streamed(m->packed_bytes);
        if (!dst)
            return bn_fail(err, errlen, "out of memory packing a %lld x %lld matrix", (long long)m->rows,
                           (long long)m->cols);
    }
    ops.pack(m, dst);
    m->packed_owned = own != NULL;
    if (own) bn_advise_huge(own, m->packed_bytes); /* after packing, as for a model (model/model.c) */
    return 0;
}

int bn_matrix_adopt_packed(bn_matrix *m, bn_isa isa, const void *src) {
    bn_kernel_ops ops;
    if (bn_kernel_ops_get(m->type, isa, &ops) != 0 || !ops.pack || m->packed) return -1;
    ops.pack(m, NULL);
    m->packed = (void *)src; /* read only, as every packed layout is after packing */
    return 0;
}

int bn_matrix_prepare(bn_matrix *m, bn_isa isa, char *err, size_t errlen) {
    return bn_matrix_prepare_into(m, isa, NULL, err, errlen);
}

void bn_matrix_release(bn_matrix *m) {
    if (m->packed_owned) free(m->packed);
    m->packed_owned = 0;
    m->packed = NULL;
    m->packed_bytes = 0;
    m->packed_layout = 0;
}

void bn_matrix_get_row(const bn_matrix *m, int64_t r, float *out) {
    bn_type_get(m->type)->to_float(m->data + (size_t)r * m->row_bytes, out, m->cols);
}

/* ---- scratch ---- */

/* Cache-line aligned, so the batch never shares a line with unrelated data. */
void *bn_scratch_reserve(bn_scratch *s, size_t bytes) {
    if (s->size >= bytes) return s->buf;
    size_t size = (bytes + 63) & ~(size_t)63;
    void *buf = aligned_alloc(64, size);
    if (!buf) return NULL;
    free(s->buf);
    s->buf = buf;
    s->size = size;
    return buf;
}

void bn_scratch_free(bn_scratch *s) {
    free(s->buf);
    s->buf = NULL;
    s->size = 0;
}

/* ---- activation forms ---- */

static bn_act_form act_form(const bn_matrix *w, const bn_kernel_ops *ops) {
    const uint32_t type = bn_type_get(w->type)->vec_dot_type;
    const bn_type_traits *at = bn_type_get(type);
    return (bn_act_form){.convert = ops->quantize ? ops->quantize : at->from_float,
                         .block = at->block_size,
                         .block_bytes = at->block_bytes,
                         .row_bytes = (size_t)bn_row_bytes(type, (uint64_t)w->cols)};
}

int bn_act_form_get(const bn_matrix *w, bn_isa isa, bn_act_form *f) {
    bn_kernel_ops ops;
    if (bn_kernel_ops_get(w->type, isa, &ops) != 0) return -1;
    *f = act_form(w, &ops);
    return 0;
}

void bn_act_convert(const bn_act_form *f, const float *x, int64_t begin, int64_t end, void *row) {
    f->convert(x + begin, (uint8_t *)row + (size_t)(begin / f->block) * f->block_bytes, end - begin);
}

/* ---- matmul ---- */

/* Output rows are split in multiples of 32 so that threads never share a cache line of y, nor
 * (for the tiled layouts of up to 32 rows a tile) a weight tile. A 64-row tile (AVX-512) that a
 * split cuts is computed by both threads, each writing its own rows: with 2 threads the Bonsai
 * shapes (rows a multiple of 128) are never cut. */
#define BN_ROW_ALIGN 32
/* Activation rows kept hot while a weight row is streamed across them. */
#define BN_TOKEN_TILE 8
/* Matrices one job may cover (q, k and v of a layer). */
#define BN_MAX_GROUP 4

typedef struct {
    const bn_matrix *w[BN_MAX_GROUP];
    float *y[BN_MAX_GROUP];
    int n_mats;
    bn_kernel_ops ops;
    int n_tokens;
    size_t act_stride;         /* bytes per activation row */
    const uint8_t *act;        /* what the dots read: converted rows, or x itself (F32) */
    const bn_rows_then *then;  /* NULL: the threads split the matrices' rows one after another */
    int64_t align;             /* rows per unit of the split */
} matmul_job;

/* The conversion of x into the activations of a job (bn_matmul_group's own pass). */
typedef struct {
    bn_act_form form;
    const float *x;
    int64_t cols;
    int n_tokens;
    uint8_t *act;
} convert_job;

/* Converts this thread's share of the activation blocks. The rows are contiguous and cols is a
 * multiple of the block size, so the whole batch converts as one flat array. */
static void convert_task(void *arg, int ith, int nth) {
    const convert_job *c = arg;
    long b0, b1;
    const long blocks = (long)(c->n_tokens * (c->cols / (int64_t)c->form.block));
    bn_split_range(blocks, 1, ith, nth, &b0, &b1);
    if (b0 < b1)
        c->form.convert(c->x + b0 * (long)c->form.block, c->act + (size_t)b0 * c->form.block_bytes,
                        (b1 - b0) * (int64_t)c->form.block);
}

static void vec_dot_rows(const matmul_job *j, const bn_matrix *w, float *y, int64_t r0, int64_t r1) {
    for (int t0 = 0; t0 < j->n_tokens; t0 += BN_TOKEN_TILE) {
        int t1 = t0 + BN_TOKEN_TILE < j->n_tokens ? t0 + BN_TOKEN_TILE : j->n_tokens;
        for (int64_t r = r0; r < r1; r++) {
            const uint8_t *wr = w->data + (size_t)r * w->row_bytes;
            for (int t = t0; t < t1; t++)
                j->ops.vec_dot(w->cols, &y[(int64_t)t * w->rows + r], wr, j->act + (size_t)t * j->act_stride);
        }
    }
}

static void dot_rows(const matmul_job *j, int i, int64_t r0, int64_t r1) {
    const bn_matrix *w = j->w[i];
    if (j->ops.gemm)
        j->ops.gemm(w, r0, r1, j->act, j->act_stride, j->n_tokens, j->y[i], w->rows);
    else
        vec_dot_rows(j, w, j->y[i], r0, r1);
}

static long row_units(const matmul_job *j, const bn_matrix *w) { return (long)((w->rows + j->align - 1) / j->align); }

/* Without `then`, the group's rows, in units of j->align, one matrix after another, are split
 * evenly over the threads (the matrices share cols, so a row costs the same in each); each thread
 * runs the part of its range that falls in each matrix. With it, each thread takes the same
 * rows of every matrix and then runs then->fn on them. */
static void dot_task(void *arg, int ith, int nth) {
    const matmul_job *j = arg;
    long units = 0; /* with `then`, the matrices share their rows */
    for (int i = 0; i < (j->then ? 1 : j->n_mats); i++) units += row_units(j, j->w[i]);
    long u0, u1;
    bn_split_range(units, 1, ith, nth, &u0, &u1);
    if (j->then) {
        const int64_t rows = j->w[0]->rows, r0 = u0 * j->align, r1 = u1 * j->align < rows ? u1 * j->align : rows;
        if (r0 >= r1) return;
        for (int i = 0; i < j->n_mats; i++) dot_rows(j, i, r0, r1);
        j->then->fn(j->then->arg, r0, r1);
        return;
    }
    for (int i = 0; i < j->n_mats && u0 < u1; i++) {
        const bn_matrix *w = j->w[i];
        const long n = row_units(j, w);
        if (u0 < n) {
            const int64_t r0 = (int64_t)u0 * j->align, end = (int64_t)(u1 < n ? u1 : n) * j->align;
            dot_rows(j, i, r0, end < w->rows ? end : w->rows);
        }
        u0 = u0 > n ? u0 - n : 0;
        u1 -= n;
    }
}

/* Products smaller than this many multiply-adds run on the calling thread alone: they take a few
 * microseconds on a SIMD path, no longer than waking a second thread and waiting for it (and on
 * a busy machine that thread may not get a core for much longer). */
#define BN_MIN_PARALLEL_MACS (1 << 20)

/* Activation batches up to 8192 values (one decode token) are converted by the calling thread:
 * that takes a microsecond or two, less than a round trip through the pool. */
#define BN_MIN_PARALLEL_CONVERT (8192 + 1)

/* Fills j for the products of n_mats matrices that share type and cols; *form the activations
 * they read, *macs their work. */
static int job_init(matmul_job *j, bn_isa isa, const bn_matrix *const *w, float *const *y, int n_mats, int n_tokens,
                    const bn_rows_then *then, bn_act_form *form, int64_t *macs) {
    *j = (matmul_job){.n_mats = n_mats, .n_tokens = n_tokens, .then = then, .align = BN_ROW_ALIGN};
    if (then && then->align > j->align) j->align = then->align;
    *macs = 0;
    for (int i = 0; i < n_mats; i++) {
        j->w[i] = w[i];
        j->y[i] = y[i];
        *macs += w[i]->rows * w[i]->cols * n_tokens;
    }
    if (bn_kernel_ops_get(w[0]->type, isa, &j->ops) != 0) return -1;
    *form = act_form(w[0], &j->ops);
    j->act_stride = form->row_bytes;
    return 0;
}

/* Whether one job can cover the group: at most BN_MAX_GROUP matrices of one type and width. */
static int one_job(const bn_matrix *const *w, int n_mats) {
    int shared = n_mats <= BN_MAX_GROUP;
    for (int i = 1; i < n_mats; i++) shared &= w[i]->type == w[0]->type && w[i]->cols == w[0]->cols;
    return shared;
}

int bn_matmul_group_then(bn_threadpool *pool, bn_isa isa, const bn_matrix *const *w, float *const *y, int n_mats,
                         const float *x, int n_tokens, bn_scratch *scratch, const bn_rows_then *then) {
    if (n_mats < 1) return -1;
    for (int i = 1; then && i < n_mats; i++)
        if (w[i]->rows != w[0]->rows) return -1;
    if (!one_job(w, n_mats)) { /* mixed-type files (say, v in Q8_0 among Q1_0) take one pass per matrix */
        for (int i = 0; i < n_mats; i++)
            if (bn_matmul_group_then(pool, isa, &w[i], &y[i], 1, x, n_tokens, scratch, NULL) != 0) return -1;
        if (then && n_tokens > 0) then->fn(then->arg, 0, w[0]->rows);
        return 0;
    }
    if (n_tokens <= 0) return 0;
    matmul_job j;
    int64_t macs;
    bn_act_form form;
    if (job_init(&j, isa, w, y, n_mats, n_tokens, then, &form, &macs) != 0) return -1;
    if (bn_type_get(w[0]->type)->vec_dot_type == BN_TYPE_F32) {
        j.act = (const uint8_t *)x; /* F32 weights dot the activations as they are */
    } else {
        convert_job c = {.form = form, .x = x, .cols = w[0]->cols, .n_tokens = n_tokens};
        c.act = bn_scratch_reserve(scratch, form.row_bytes * (size_t)n_tokens);
        if (!c.act) return -1;
        /* a product small enough for one thread converts on it too */
        bn_parallel_for(macs < BN_MIN_PARALLEL_MACS ? NULL : pool, (int64_t)n_tokens * w[0]->cols,
                        BN_MIN_PARALLEL_CONVERT, convert_task, &c);
        j.act = c.act;
    }
    bn_parallel_for(pool, macs, BN_MIN_PARALLEL_MACS, dot_task, &j);
    return 0;
}

int bn_matmul_group(bn_threadpool *pool, bn_isa isa, const bn_matrix *const *w, float *const *y, int n_mats,
                    const float *x, int n_tokens, bn_scratch *scratch) {
    return bn_matmul_group_then(pool, isa, w, y, n_mats, x, n_tokens, scratch, NULL);
}

int bn_matmul(bn_threadpool *pool, bn_isa isa, const bn_matrix *w, const float *x, int n_tokens,
              float *y, bn_scratch *scratch) {
    return bn_matmul_group_then(pool, isa, &w, &y, 1, x, n_tokens, scratch, NULL);
}

int bn_matmul_converted(bn_threadpool *pool, bn_isa isa, const bn_matrix *w, const void *act, int n_tokens,
                        float *y) {
    matmul_job j;
    int64_t macs;
    bn_act_form form;
    if (job_init(&j, isa, &w, &y, 1, n_tokens, NULL, &form, &macs) != 0) return -1;
    j.act = act;
    if (n_tokens > 0) bn_parallel_for(pool, macs, BN_MIN_PARALLEL_MACS, dot_task, &j);
    return 0;
}
