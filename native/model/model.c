/* Model binding: hyperparameters from GGUF metadata and weight tensors checked against them.
 * Matrices point into the mapped file (bn_matrix_prepare may add a packed copy). From a .bnz pack,
 * the tensors read in place are decoded into memory first, and each matrix that is repacked is
 * decoded just before its repacking and dropped after it. */
#define _POSIX_C_SOURCE 200809L
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <unistd.h>
#include "model/engine_internal.h"
#include "core/common.h"
#include "model/image.h"
#include "quants/quants.h"

/* Reads "<arch>.<suffix>" as u32 (def when absent). */
static int get_u32(const bn_gguf *g, const char *arch, const char *suffix, uint32_t def,
                   uint32_t *out, char *err, size_t errlen) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    return bn_gguf_get_u32(g, key, def, out, err, errlen);
}

static int get_f32(const bn_gguf *g, const char *arch, const char *suffix, float def, float *out,
                   char *err, size_t errlen) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    return bn_gguf_get_f32(g, key, def, out, err, errlen);
}

static int read_arch(const bn_gguf *g, bn_hparams *hp, const char **name, char *err, size_t errlen) {
    bn_str s;
    if (bn_gguf_get_str(g, "general.architecture", &s, err, errlen)) return -1;
    if (!s.ptr) return bn_fail(err, errlen, "missing general.architecture");
    if (bn_str_eq(s, "llama")) {
        hp->arch = BN_ARCH_LLAMA;
        *name = "llama";
    } else if (bn_str_eq(s, "qwen3")) {
        hp->arch = BN_ARCH_QWEN3;
        *name = "qwen3";
    } else {
        return bn_fail(err, errlen, "unsupported architecture '%.*s'", (int)(s.len > 64 ? 64 : s.len),
                       s.ptr);
    }
    return 0;
}

/* A required positive count. */
static int get_count(const bn_gguf *g, const char *arch, const char *suffix, uint32_t def, int *out,
                     char *err, size_t errlen) {
    uint32_t v;
    if (get_u32(g, arch, suffix, def, &v, err, errlen)) return -1;
    if (v == 0 || v > (1u << 24))
        return bn_fail(err, errlen, "%s.%s = %u is missing or out of range", arch, suffix, v);
    *out = (int)v;
    return 0;
}

static int read_hparams(const bn_gguf *g, bn_hparams *hp, char *err, size_t errlen) {
    const char *a = NULL;
    if (read_arch(g, hp, &a, err, errlen)) return -1;
    uint32_t n_rot;
    if (get_count(g, a, "block_count", 0, &hp->n_layer, err, errlen) ||
        get_count(g, a, "embedding_length", 0, &hp->n_embd, err, errlen) ||
        get_count(g, a, "feed_forward_length", 0, &hp->n_ff, err, errlen) ||
        get_count(g, a, "attention.head_count", 0, &hp->n_head, err, errlen) ||
        get_count(g, a, "attention.head_count_kv", (uint32_t)hp->n_head, &hp->n_head_kv, err, errlen) ||
        get_count(g, a, "attention.key_length", (uint32_t)(hp->n_embd / hp->n_head), &hp->head_dim,
                  err, errlen) ||
        get_count(g, a, "context_length", 2048, &hp->n_ctx_train, err, errlen) ||
        get_u32(g, a, "rope.dimension_count", (uint32_t)hp->head_dim, &n_rot, err, errlen) ||
        get_f32(g, a, "rope.freq_base", 10000.0f, &hp->rope_base, err, errlen) ||
        get_f32(g, a, "attention.layer_norm_rms_epsilon", 1e-5f, &hp->rms_eps, err, errlen))
        return -1;
    if (hp->n_head % hp->n_head_kv)
        return bn_fail(err, errlen, "head_count %d is not a multiple of head_count_kv %d", hp->n_head,
                       hp->n_head_kv);
    if (n_rot == 0 || n_rot % 2 || n_rot > (uint32_t)hp->head_dim)
        return bn_fail(err, errlen, "%s.rope.dimension_count = %u must be even and <= head dim %d", a,
                       n_rot, hp->head_dim);
    if (!(hp->rms_eps > 0.0f) || !(hp->rope_base > 0.0f))
        return bn_fail(err, errlen, "rms epsilon and rope.freq_base must be positive");
    hp->n_rot = (int)n_rot;
    hp->rope_neox = hp->arch == BN_ARCH_QWEN3;
    hp->qk_norm = hp->arch == BN_ARCH_QWEN3;
    return 0;
}

static void format_shape(char *buf, size_t len, const uint64_t *ne, int n_dims) {
    int off = snprintf(buf, len, "[");
    for (int i = 0; i < n_dims && off < (int)len; i++)
        off += snprintf(buf + off, len - off, "%s%llu", i ? ", " : "", (unsigned long long)ne[i]);
    if (off < (int)len) snprintf(buf + off, len - off, "]");
}

/* Finds a tensor and checks its shape: [cols] when rows == 0, else [cols, rows]. */
static const bn_gguf_tensor *find_checked(const bn_gguf *g, const char *name, int64_t cols, int64_t rows,
                                          char *err, size_t errlen) {
    const bn_gguf_tensor *t = bn_gguf_find_tensor(g, name);
    if (!t) {
        bn_fail(err, errlen, "missing tensor '%s'", name);
        return NULL;
    }
    const int want_dims = rows ? 2 : 1;
    const uint64_t want[BN_GGUF_MAX_DIMS] = {(uint64_t)cols, (uint64_t)(rows ? rows : 1), 1, 1};
    int ok = 1;
    for (int i = 0; i < BN_GGUF_MAX_DIMS; i++) ok &= t->ne[i] == want[i];
    if (!ok) {
        char got[96], exp[96];
        format_shape(got, sizeof got, t->ne, t->n_dims ? (int)t->n_dims : 1);
        format_shape(exp, sizeof exp, want, want_dims);
        bn_fail(err, errlen, "tensor '%s' has shape %s, expected %s", name, got, exp);
        return NULL;
    }
    return t;
}

static int bind_norm(const bn_gguf *g, const char *name, int64_t n, const float **out, char *err,
                     size_t errlen) {
    const bn_gguf_tensor *t = find_checked(g, name, n, 0, err, errlen);
    if (!t) return -1;
    if (t->type != BN_TYPE_F32) {
        const bn_type_traits *tr = bn_type_get(t->type);
        return bn_fail(err, errlen, "tensor '%s' has type %s, norm weights must be f32", name,
                       tr ? tr->name : "unknown");
    }
    *out = (const float *)t->data;
    return 0;
}

static int bind_matrix(bn_model *m, const char *name, int64_t cols, int64_t rows, bn_matrix *out, char *err,
                       size_t errlen) {
    const bn_gguf_tensor *t = find_checked(m->gguf, name, cols, rows, err, errlen);
    if (!t) return -1;
    char msg[256];
    if (t->data ? bn_matrix_init(out, t->type, rows, cols, t->data, msg, sizeof msg)
                : bn_matrix_init_shape(out, t->type, rows, cols, msg, sizeof msg))
        return bn_fail(err, errlen, "tensor '%s': %s", name, msg);
    m->sources[m->n_sources++] = (bn_matrix_source){out, (uint64_t)(t - m->gguf->tensors)};
    return 0;
}

static int bind_layer(bn_model *m, int il, char *err, size_t errlen) {
    const bn_hparams *hp = &m->hp;
    bn_layer *l = &m->layers[il];
    const int64_t e = hp->n_embd, q = (int64_t)hp->n_head * hp->head_dim;
    const int64_t kv = (int64_t)hp->n_head_kv * hp->head_dim;
    char name[96];
#define NAME(s) (snprintf(name, sizeof name, "blk.%d." s ".weight", il), name)
    if (bind_norm(m->gguf, NAME("attn_norm"), e, &l->attn_norm, err, errlen) ||
        bind_matrix(m, NAME("attn_q"), e, q, &l->wq, err, errlen) ||
        bind_matrix(m, NAME("attn_k"), e, kv, &l->wk, err, errlen) ||
        bind_matrix(m, NAME("attn_v"), e, kv, &l->wv, err, errlen) ||
        bind_matrix(m, NAME("attn_output"), q, e, &l->wo, err, errlen) ||
        bind_norm(m->gguf, NAME("ffn_norm"), e, &l->ffn_norm, err, errlen) ||
        bind_matrix(m, NAME("ffn_gate"), e, hp->n_ff, &l->w_gate, err, errlen) ||
        bind_matrix(m, NAME("ffn_up"), e, hp->n_ff, &l->w_up, err, errlen) ||
        bind_matrix(m, NAME("ffn_down"), hp->n_ff, e, &l->w_down, err, errlen))
        return -1;
    if (hp->qk_norm && (bind_norm(m->gguf, NAME("attn_q_norm"), hp->head_dim, &l->q_norm, err, errlen) ||
                        bind_norm(m->gguf, NAME("attn_k_norm"), hp->head_dim, &l->k_norm, err, errlen)))
        return -1;
#undef NAME
    return 0;
}

#define BN_MATRICES_PER_LAYER 7

static int bind_tensors(bn_model *m, char *err, size_t errlen) {
    bn_hparams *hp = &m->hp;
    const bn_gguf_tensor *emb = bn_gguf_find_tensor(m->gguf, "token_embd.weight");
    if (!emb) return bn_fail(err, errlen, "missing tensor 'token_embd.weight'");
    if (emb->ne[1] == 0 || emb->ne[1] > (1u << 24))
        return bn_fail(err, errlen, "tensor 'token_embd.weight' has %llu rows",
                       (unsigned long long)emb->ne[1]);
    hp->n_vocab = (int)emb->ne[1];
    /* bound again (a pack's tensors read in place, once placed): the same memory, so that the
     * matrices keep their addresses */
    if (!m->sources) m->sources = calloc((size_t)hp->n_layer * BN_MATRICES_PER_LAYER + 2, sizeof *m->sources);
    if (!m->layers) m->layers = calloc((size_t)hp->n_layer, sizeof *m->layers);
    if (!m->sources || !m->layers) return bn_fail(err, errlen, "out of memory");
    m->n_sources = 0;
    if (bind_matrix(m, "token_embd.weight", hp->n_embd, hp->n_vocab, &m->tok_embd, err, errlen) ||
        bind_norm(m->gguf, "output_norm.weight", hp->n_embd, &m->output_norm, err, errlen))
        return -1;
    hp->tied_output = bn_gguf_find_tensor(m->gguf, "output.weight") == NULL;
    const char *out_name = hp->tied_output ? "token_embd.weight" : "output.weight";
    if (bind_matrix(m, out_name, hp->n_embd, hp->n_vocab, &m->output, err, errlen)) return -1;
    for (int il = 0; il < hp->n_layer; il++)
        if (bind_layer(m, il, err, errlen)) return -1;
    return 0;
}

static void layer_matrices(bn_layer *l, bn_matrix *out[BN_MATRICES_PER_LAYER]) {
    bn_matrix *mats[BN_MATRICES_PER_LAYER] = {&l->wq, &l->wk, &l->wv, &l->wo, &l->w_gate, &l->w_up, &l->w_down};
    memcpy(out, mats, sizeof mats);
}

/* The matrices that are multiplied (all but tok_embd, whose rows are only looked up). */
static int multiplied_matrices(bn_model *m, bn_matrix **out) {
    out[0] = &m->output;
    for (int il = 0; il < m->hp.n_layer; il++) layer_matrices(&m->layers[il], out + 1 + il * BN_MATRICES_PER_LAYER);
    return 1 + m->hp.n_layer * BN_MATRICES_PER_LAYER;
}

/* Threads that repack a model's matrices at load: the work is memory-bound, so a few suffice. */
#define BN_PREPARE_THREADS 4

typedef struct prepare_job {
    bn_model *m;
    bn_matrix **mats;
    size_t *offset; /* of each matrix's layout in m->packed */
    int n;
    atomic_int next;   /* next matrix to take */
    atomic_int failed; /* index + 1 of a matrix that failed, 0 if none */
    char err[256];
} prepare_job;

static uint64_t source_tensor(const bn_model *m, const bn_matrix *w) {
    for (int i = 0; i < m->n_sources; i++)
        if (m->sources[i].w == w) return m->sources[i].tensor;
    return UINT64_MAX; /* every matrix was bound through bind_matrix */
}

/* A thread's buffer for the matrices it decodes, grown to the largest: a fresh allocation per
 * matrix would fault in (and zero) as many pages as the whole model has. */
typedef struct scratch {
    uint8_t *p;
    size_t cap;
} scratch;

static uint8_t *scratch_get(scratch *s, size_t n) {
    if (n > s->cap) {
        free(s->p);
        s->p = malloc(n);
        s->cap = s->p ? n : 0;
    }
    return s->p;
}

/* Repacks one matrix; a pack's matrix is decoded first into the thread's scratch buffer. */
static int prepare_one(bn_model *m, bn_matrix *w, uint8_t *dst, scratch *buf, char *msg, size_t len) {
    const int decoded = !w->data;
    if (decoded) {
        const bn_gguf_tensor *t = &m->gguf->tensors[source_tensor(m, w)];
        uint8_t *p = scratch_get(buf, t->n_bytes);
        if (!p) return bn_fail(msg, len, "out of memory decoding a %lld x %lld matrix", (long long)w->rows,
                               (long long)w->cols);
        if (bn_pack_decode_tensor(m->pack, (uint64_t)(t - m->gguf->tensors), p, 0, msg, len)) return -1;
        w->data = p;
    }
    int rc = bn_matrix_prepare_into(w, m->isa, dst, msg, len);
    if (decoded) { /* only matrices that are repacked are left to decode here */
        w->data = NULL;
    } else if (rc == 0 && w->packed) {
        /* a repacked matrix is read from its copy: its file pages need not stay resident */
        bn_mapped_file_drop(m->gguf->file, w->data, w->row_bytes * (size_t)w->rows);
    }
    return rc;
}

/* Each thread takes matrices until none are left (their sizes differ too much to split evenly). */
static void prepare_worker(void *arg, int ith, int nth) {
    prepare_job *j = arg;
    char msg[256];
    scratch buf = {0};
    for (int i; (i = atomic_fetch_add(&j->next, 1)) < j->n && !atomic_load(&j->failed);) {
        uint8_t *dst = j->m->packed ? j->m->packed + j->offset[i] : NULL; /* NULL: nothing is packed */
        if (prepare_one(j->m, j->mats[i], dst, &buf, msg, sizeof msg) != 0) {
            int none = 0;
            if (atomic_compare_exchange_strong(&j->failed, &none, i + 1)) snprintf(j->err, sizeof j->err, "%s", msg);
            break;
        }
    }
    free(buf.p);
}

static int select_isa(const bn_model_params *p, bn_isa *out, char *err, size_t errlen) {
    if (!p || !p->kernels || !*p->kernels) return bn_isa_select(out, err, errlen);
    bn_isa isa;
    if (bn_isa_from_name(p->kernels, &isa) != 0) return bn_fail(err, errlen, "unknown kernels '%s'", p->kernels);
    if (!bn_isa_supported(isa)) return bn_fail(err, errlen, "kernels '%s' are not supported by this CPU", p->kernels);
    *out = isa;
    return 0;
}

int bn_model_reads_in_place(const bn_gguf_tensor *t, bn_isa isa) {
    if (t->n_dims != 2 || bn_str_eq(t->name, "token_embd.weight")) return 1;
    bn_matrix probe;
    if (bn_matrix_init_shape(&probe, t->type, (int64_t)t->ne[1], (int64_t)t->ne[0], NULL, 0)) return 1;
    return bn_matrix_packed_size(&probe, isa) == 0;
}

typedef struct resident_job {
    bn_model *m;
    atomic_ulong next;
    atomic_int failed;
    char err[256];
} resident_job;

static void resident_worker(void *arg, int ith, int nth) {
    resident_job *j = arg;
    bn_gguf *g = j->m->gguf;
    char msg[256];
    for (uint64_t i; (i = atomic_fetch_add(&j->next, 1)) < g->n_tensors && !atomic_load(&j->failed);) {
        if (!g->tensors[i].data) continue;
        if (bn_pack_decode_tensor(j->m->pack, i, (uint8_t *)g->tensors[i].data, 0, msg, sizeof msg)) {
            int none = 0;
            if (atomic_compare_exchange_strong(&j->failed, &none, 1)) snprintf(j->err, sizeof j->err, "%s", msg);
        }
    }
}

static int prepare_threads(void) {
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    return cpus < 1 ? 1 : cpus > BN_PREPARE_THREADS ? BN_PREPARE_THREADS : (int)cpus;
}

/* Where the weights go: a pack's tensors read in place (one region), and the repacked layout of
 * each multiplied matrix (another, 64-byte aligned each). */
typedef struct weight_plan {
    uint64_t resident_bytes;
    bn_matrix **mats;
    size_t *offset;
    int n;
    uint64_t packed_bytes;
    uint32_t layouts; /* CRC-32 of each matrix's (layout id, packed bytes): what an image must match */
} weight_plan;

static void free_plan(weight_plan *w) {
    free(w->mats);
    free(w->offset);
}

static int plan_weights(bn_model *m, weight_plan *w, char *err, size_t errlen) {
    memset(w, 0, sizeof *w);
    const bn_gguf *g = m->gguf;
    for (uint64_t i = 0; m->pack && i < g->n_tensors; i++)
        if (bn_model_reads_in_place(&g->tensors[i], m->isa)) w->resident_bytes += (g->tensors[i].n_bytes + 63) & ~(uint64_t)63;
    const size_t most = (size_t)m->hp.n_layer * BN_MATRICES_PER_LAYER + 1;
    w->mats = malloc(most * sizeof *w->mats);
    w->offset = malloc(most * sizeof *w->offset);
    if (!w->mats || !w->offset) {
        free_plan(w);
        return bn_fail(err, errlen, "out of memory");
    }
    w->n = multiplied_matrices(m, w->mats);
    for (int i = 0; i < w->n; i++) {
        const uint64_t size = bn_matrix_packed_size(w->mats[i], m->isa);
        const uint64_t layout[2] = {(uint64_t)w->mats[i]->packed_layout, size};
        w->layouts = bn_crc32(w->layouts, layout, sizeof layout);
        w->offset[i] = w->packed_bytes;
        w->packed_bytes += (size + 63) & ~(size_t)63;
    }
    return 0;
}

/* Points a pack's tensors read in place into base (their region), then binds the model again so
 * that its norms and embedding see them (the first binding, which checked the shapes, saw NULL);
 * the matrices stay where they were, so a plan made before still holds. */
static int place_resident(bn_model *m, uint8_t *base, char *err, size_t errlen) {
    bn_gguf *g = m->gguf;
    size_t at = 0;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        bn_gguf_tensor *t = &g->tensors[i];
        t->data = NULL;
        if (!bn_model_reads_in_place(t, m->isa)) continue;
        t->data = base + at;
        at += (t->n_bytes + 63) & ~(uint64_t)63;
    }
    return bind_tensors(m, err, errlen);
}

/* Decodes a pack's tensors read in place (placed by place_resident), on a few threads. */
static int decode_resident(bn_model *m, char *err, size_t errlen) {
    resident_job j = {.m = m};
    bn_threadpool *pool = bn_threadpool_new(prepare_threads());
    bn_parallel_for(pool, (int64_t)m->gguf->n_tensors, 2, resident_worker, &j);
    bn_threadpool_free(pool);
    return atomic_load(&j.failed) ? bn_fail(err, errlen, "decoding the weights: %s", j.err) : 0;
}

/* Repacks the multiplied matrices (from a pack: decodes each first) for the model's kernel path,
 * on several threads, into one allocation, then advises it onto huge pages: kernels stream all of
 * it every token, and with 4 KiB pages that is a TLB miss every 4 KiB. The advice comes after
 * packing, so the kernel's khugepaged merges the pages in the background (minutes, at its default
 * pace): advised before, packing would fault in huge pages, which in a virtual machine took
 * longer than the packing itself (zeroing fresh host memory: 4B shape, load 0.5 -> 0.8-1.3 s). */
static int prepare_matrices(bn_model *m, const weight_plan *w, char *err, size_t errlen) {
    prepare_job j = {.m = m, .mats = w->mats, .offset = w->offset, .n = w->n};
    const size_t total = w->packed_bytes;
    m->packed = total ? bn_alloc_streamed(total) : NULL;
    if (total && !m->packed)
        return bn_fail(err, errlen, "out of memory for %.1f MiB of repacked weights", (double)total / (1 << 20));
    bn_threadpool *pool = bn_threadpool_new(prepare_threads());
    bn_parallel_for(pool, j.n, 1, prepare_worker, &j); /* NULL pool (none could start): this thread alone */
    bn_threadpool_free(pool);
    if (atomic_load(&j.failed)) return bn_fail(err, errlen, "%s the weights: %s", m->pack ? "decoding" : "repacking", j.err);
    if (total) bn_advise_huge(m->packed, total);
    return 0;
}

/* Takes every matrix's repacked layout from the image: nothing is decoded or repacked. */
static void adopt_image(bn_model *m, const weight_plan *w) {
    const uint8_t *packed = bn_image_packed(m->image);
    for (int i = 0; i < w->n; i++) bn_matrix_adopt_packed(w->mats[i], m->isa, packed + w->offset[i]);
}

static void write_image(bn_model *m, const bn_model_params *p, const bn_image_spec *spec) {
    char msg[sizeof m->image_note];
    if (bn_image_write(p->image, spec, m->resident, m->packed, prepare_threads(), msg, sizeof msg) == 0) {
        m->image_state = BN_IMAGE_WRITTEN;
    } else {
        m->image_state = BN_IMAGE_NOT_WRITTEN;
        snprintf(m->image_note, sizeof m->image_note, "%s", msg);
    }
}

/* Binds the weights and makes them ready to run: from the image when it matches, else decoded
 * (a pack) and repacked, then written to the image when one is asked for. */
static int load_weights(bn_model *m, const bn_model_params *p, char *err, size_t errlen) {
    weight_plan w;
    if (bind_tensors(m, err, errlen) || plan_weights(m, &w, err, errlen)) return -1;
    const bn_image_spec spec = {p && p->image_key ? p->image_key : "", m->isa, w.resident_bytes, w.packed_bytes,
                                w.layouts};
    if (p && p->image) {
        m->image = bn_image_open(p->image, &spec, prepare_threads(), m->image_note, sizeof m->image_note);
        m->image_state = m->image ? BN_IMAGE_USED : BN_IMAGE_WRITTEN;
    }
    int rc = 0;
    if (m->pack) {
        uint8_t *base = m->image ? (uint8_t *)bn_image_resident(m->image)
                                 : (m->resident = bn_alloc_streamed(w.resident_bytes ? w.resident_bytes : 64));
        if (!base) rc = bn_fail(err, errlen, "out of memory for %.1f MiB of weights", (double)w.resident_bytes / (1 << 20));
        if (rc == 0) rc = place_resident(m, base, err, errlen);
        if (rc == 0 && !m->image) rc = decode_resident(m, err, errlen);
    }
    if (rc == 0 && m->image)
        adopt_image(m, &w);
    else if (rc == 0)
        rc = prepare_matrices(m, &w, err, errlen);
    if (rc == 0 && p && p->image && !m->image) write_image(m, p, &spec);
    free_plan(&w);
    return rc;
}

static int model_init(bn_model *m, const bn_model_params *p, char *err, size_t errlen) {
    return read_hparams(m->gguf, &m->hp, err, errlen) || select_isa(p, &m->isa, err, errlen) ||
                   load_weights(m, p, err, errlen)
               ? -1
               : 0;
}

/* A model over a parsed GGUF, or over a pack (then g is the pack's, its tensors not decoded yet);
 * it owns what it is given, freed on failure too. */
static int model_new(bn_gguf *g, bn_pack *pack, const bn_model_params *p, bn_model **out, char *err, size_t errlen) {
    *out = NULL;
    bn_model *m = calloc(1, sizeof *m);
    if (!m) {
        if (pack)
            bn_pack_close(pack);
        else
            bn_gguf_close(g);
        return bn_fail(err, errlen, "out of memory");
    }
    m->gguf = g;
    m->pack = pack;
    if (model_init(m, p, err, errlen)) {
        bn_model_free(m);
        return -1;
    }
    *out = m;
    return 0;
}

int bn_model_from_gguf(bn_gguf *g, const bn_model_params *p, bn_model **out, char *err, size_t errlen) {
    return model_new(g, NULL, p, out, err, errlen);
}

int bn_model_load(const char *path, const bn_model_params *p, bn_model **out, char *err, size_t errlen) {
    bn_gguf *g;
    bn_pack *pack;
    char msg[512];
    *out = NULL;
    int rc = bn_pack_is_pack(path)
                 ? bn_pack_open(path, &pack, msg, sizeof msg) || model_new(bn_pack_gguf(pack), pack, p, out, msg, sizeof msg)
                 : bn_gguf_open(path, &g, msg, sizeof msg) || bn_model_from_gguf(g, p, out, msg, sizeof msg);
    return rc ? bn_fail(err, errlen, "%s: %s", path, msg) : 0;
}

bn_image_state bn_model_image_state(const bn_model *m, const char **note) {
    *note = m->image_note;
    return m->image_state;
}

void bn_model_free(bn_model *m) {
    if (!m) return;
    /* before the memory goes: freed heap memory would stay locked */
    if (m->locked) bn_model_unlock(m);
    if (m->layers) {
        for (int il = 0; il < m->hp.n_layer; il++) {
            bn_matrix *mats[BN_MATRICES_PER_LAYER];
            layer_matrices(&m->layers[il], mats);
            for (int i = 0; i < BN_MATRICES_PER_LAYER; i++) bn_matrix_release(mats[i]);
        }
        free(m->layers);
    }
    bn_matrix_release(&m->output);
    bn_matrix_release(&m->tok_embd);
    free(m->packed);
    free(m->resident);
    free(m->sources);
    bn_image_close(m->image);
    if (m->pack)
        bn_pack_close(m->pack);
    else
        bn_gguf_close(m->gguf);
    free(m);
}

const bn_hparams *bn_model_hparams(const bn_model *m) { return &m->hp; }
const bn_gguf *bn_model_gguf(const bn_model *m) { return m->gguf; }
bn_isa bn_model_isa(const bn_model *m) { return m->isa; }

/* Labelled by the FFN gate's type: the FFN holds most of the weights of every supported model. */
void bn_model_kernels_label(const bn_model *m, char *buf, size_t len) {
    bn_kernels_label(m->layers[0].w_gate.type, m->isa, buf, len);
}
