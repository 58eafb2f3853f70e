#include "attention/attention.h"
#include <math.h>
#include <stdint.h>
#include "attention/attention_impl.h"
#include "quants/quants.h"

static size_t pad_up(size_t n) { return (n + BN_ATTN_PAD - 1) / BN_ATTN_PAD * BN_ATTN_PAD; }

size_t bn_attn_scratch_floats(int n_ctx, int head_dim) {
    return BN_ATTN_TILE_ROWS * pad_up((size_t)n_ctx) + (size_t)BN_ATTN_KEY_BLOCK * head_dim;
}

static float kv_elem(const bn_attn_tile *t, const void *base, int pos, int i) {
    const size_t off = (size_t)pos * t->kv_stride + (size_t)i;
    return t->kv_f16 ? bn_fp16_to_fp32(((const uint16_t *)base)[off]) : ((const float *)base)[off];
}

void bn_attn_tile_scalar(const bn_attn_tile *t) {
    const int hd = t->head_dim;
    for (int r = 0; r < t->n_rows; r++) {
        const int n = t->n_kv[r];
        float *s = t->s + (size_t)r * t->s_stride, *out = t->out[r];
        float max = -INFINITY;
        for (int j = 0; j < n; j++) {
            float dot = 0.0f;
            for (int i = 0; i < hd; i++) dot += t->q[r][i] * kv_elem(t, t->k, j, i);
            s[j] = dot;
            if (dot > max) max = dot;
        }
        double sum = 0.0;
        for (int j = 0; j < n; j++) {
            s[j] = expf((s[j] - max) * t->scale);
            sum += s[j];
        }
        const float inv = (float)(1.0 / sum);
        for (int i = 0; i < hd; i++) out[i] = 0.0f;
        for (int j = 0; j < n; j++) {
            const float w = s[j] * inv;
            for (int i = 0; i < hd; i++) out[i] += w * kv_elem(t, t->v, j, i);
        }
    }
}

/* A path's tile kernel and the head sizes it takes (multiples of its vector width). */
typedef struct tile_kernel {
    bn_attn_tile_fn fn;
    int head_dim_multiple;
} tile_kernel;

/* Entries of the paths under arch/ exist only in builds for their architecture (arch/arch.h). */
static const tile_kernel tile_kernels[BN_ISA_COUNT] = {
    [BN_ISA_SCALAR] = {.fn = bn_attn_tile_scalar, .head_dim_multiple = 1},
    BN_X86_ENTRY([BN_ISA_AVX2] = {.fn = bn_attn_tile_avx2, .head_dim_multiple = 8})
    BN_ARM_ENTRY([BN_ISA_NEON] = {.fn = bn_attn_tile_neon, .head_dim_multiple = 8})
};

bn_attn_tile_fn bn_attn_tile_kernel(bn_isa isa, int head_dim) {
    for (;; isa = bn_isa_parent(isa)) {
        const tile_kernel *k = &tile_kernels[isa];
        if (k->fn && head_dim % k->head_dim_multiple == 0) return k->fn;
    }
}

/* Tiles are numbered row block after row block, KV head fastest; a row block is BN_ATTN_TILE_ROWS
 * consecutive rows of the per-head sequence (token 0's group heads, token 1's, ...). */
static int tile_rows(const bn_attn *a, long tile, int *first_row) {
    const int rows = a->n * (a->n_head / a->n_head_kv);
    *first_row = (int)(tile / a->n_head_kv) * BN_ATTN_TILE_ROWS;
    return rows - *first_row < BN_ATTN_TILE_ROWS ? rows - *first_row : BN_ATTN_TILE_ROWS;
}

/* Work of a tile: its rows times the keys its last row sees, plus a fixed cost per row. */
static int64_t tile_cost(const bn_attn *a, long tile) {
    int r0;
    const int n_rows = tile_rows(a, tile, &r0), group = a->n_head / a->n_head_kv;
    return (int64_t)n_rows * (a->p0 + (r0 + n_rows - 1) / group + 1 + 16);
}

static void run_tile(const bn_attn *a, long tile, float *scratch, bn_attn_tile_fn kernel) {
    const int group = a->n_head / a->n_head_kv, hd = a->head_dim, h = (int)(tile % a->n_head_kv);
    const size_t elem = a->kv_f16 ? sizeof(uint16_t) : sizeof(float);
    int r0;
    bn_attn_tile t;
    t.n_rows = tile_rows(a, tile, &r0);
    t.head_dim = hd;
    for (int r = 0; r < t.n_rows; r++) {
        const int token = (r0 + r) / group, head = h * group + (r0 + r) % group;
        const size_t off = ((size_t)token * a->n_head + (size_t)head) * hd;
        t.q[r] = a->q + off;
        t.out[r] = a->out + off;
        t.n_kv[r] = a->p0 + token + 1;
    }
    t.k = (const char *)a->k + (size_t)h * a->kv_head_stride * elem;
    t.v = (const char *)a->v + (size_t)h * a->kv_head_stride * elem;
    t.kv_stride = a->kv_pos_stride;
    t.kv_f16 = a->kv_f16;
    t.scale = 1.0f / sqrtf((float)hd);
    t.s = scratch;
    t.s_stride = pad_up((size_t)a->n_ctx);
    t.pack = scratch + BN_ATTN_TILE_ROWS * t.s_stride;
    kernel(&t);
}

void bn_attn_run(const bn_attn *a, int ith, int nth) {
    const int rows = a->n * (a->n_head / a->n_head_kv);
    const long n_tiles = (long)(rows + BN_ATTN_TILE_ROWS - 1) / BN_ATTN_TILE_ROWS * a->n_head_kv;
    const bn_attn_tile_fn kernel = bn_attn_tile_kernel(a->isa, a->head_dim);
    float *scratch = a->scratch + (size_t)ith * bn_attn_scratch_floats(a->n_ctx, a->head_dim);
    /* Causal tiles grow with their position: each thread takes the tiles whose cost midpoint
     * falls in its equal share of the total (the same integer arithmetic on every thread). */
    int64_t total = 0, before = 0;
    for (long i = 0; i < n_tiles; i++) total += tile_cost(a, i);
    for (long i = 0; i < n_tiles; i++) {
        const int64_t w = tile_cost(a, i);
        const int owner = (int)((2 * before + w) * nth / (2 * total));
        before += w;
        if (owner == ith) run_tile(a, i, scratch, kernel);
    }
}
