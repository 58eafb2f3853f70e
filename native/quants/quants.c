/* ggml block formats: the type table, fp16/bf16 conversion, dequantization and ggml's reference
 * quantizers. Every routine reproduces ggml's results bit for bit (checked against vectors
 * produced by ggml itself), so a model quantized here or there is the same file. */
#include <math.h>
#include <string.h>
#include "quants/quants.h"
#include "core/common.h"

_Static_assert(sizeof(bn_block_q1_0) == 18, "q1_0 block");
_Static_assert(sizeof(bn_block_q8_0) == 34, "q8_0 block");
_Static_assert(sizeof(bn_block_q4_0) == 18, "q4_0 block");
_Static_assert(sizeof(bn_block_q8_K) == 292, "q8_K block");
_Static_assert(sizeof(bn_block_tq1_0) == 54, "tq1_0 block");
_Static_assert(sizeof(bn_block_tq2_0) == 66, "tq2_0 block");

/* ---- scalar conversions ---- */

static uint32_t f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

float bn_fp16_to_fp32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
    if (exp == 0) {
        /* zero or subnormal: mant * 2^-24 is exact in f32 */
        float v = (float)mant * 0x1p-24f;
        return bits_f32(f32_bits(v) | sign);
    }
    if (exp == 31) return bits_f32(sign | 0x7f800000u | (mant << 13));
    return bits_f32(sign | ((exp + 112) << 23) | (mant << 13));
}

uint16_t bn_fp32_to_fp16(float f) {
    uint32_t x = f32_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    x &= 0x7fffffffu;
    if (x > 0x7f800000u) return sign | 0x7e00;            /* NaN */
    if (x >= 0x477ff000u) return sign | 0x7c00;           /* rounds past 65504: inf */
    if (x < 0x38800000u) {
        /* below 2^-14: the half is subnormal. Adding 0.5 puts the 2^-24 unit at the last
         * mantissa bit, so the FPU does the round-to-nearest-even for us. */
        float v = bits_f32(x) + 0.5f;
        return sign | (uint16_t)(f32_bits(v) - f32_bits(0.5f));
    }
    /* rebias the exponent (127 -> 15) and round the 13 dropped bits to nearest even */
    x += 0xc8000fffu + ((x >> 13) & 1);
    return sign | (uint16_t)(x >> 13);
}

float bn_bf16_to_fp32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

uint16_t bn_fp32_to_bf16(float f) {
    uint32_t u = f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 64); /* quiet NaN */
    return (uint16_t)((u + (0x7fffu + ((u >> 16) & 1))) >> 16);
}

/* ---- float formats ---- */

static void f32_to_float(const void *src, float *dst, int64_t n) { memcpy(dst, src, (size_t)n * 4); }
static void f32_from_float(const float *src, void *dst, int64_t n) { memcpy(dst, src, (size_t)n * 4); }

static void f16_to_float(const void *src, float *dst, int64_t n) {
    const uint16_t *h = src;
    for (int64_t i = 0; i < n; i++) dst[i] = bn_fp16_to_fp32(h[i]);
}
static void f16_from_float(const float *src, void *dst, int64_t n) {
    uint16_t *h = dst;
    for (int64_t i = 0; i < n; i++) h[i] = bn_fp32_to_fp16(src[i]);
}
static void bf16_to_float(const void *src, float *dst, int64_t n) {
    const uint16_t *h = src;
    for (int64_t i = 0; i < n; i++) dst[i] = bn_bf16_to_fp32(h[i]);
}
static void bf16_from_float(const float *src, void *dst, int64_t n) {
    uint16_t *h = dst;
    for (int64_t i = 0; i < n; i++) h[i] = bn_fp32_to_bf16(src[i]);
}

/* ---- Q8_0: d = amax/127, q = round(x/d) ---- */

static void q8_0_to_float(const void *src, float *dst, int64_t n) {
    const bn_block_q8_0 *b = src;
    for (int64_t i = 0; i < n / BN_QK8_0; i++, dst += BN_QK8_0) {
        float d = bn_fp16_to_fp32(b[i].d);
        for (int j = 0; j < BN_QK8_0; j++) dst[j] = b[i].qs[j] * d;
    }
}
static void q8_0_from_float(const float *src, void *dst, int64_t n) {
    bn_block_q8_0 *b = dst;
    for (int64_t i = 0; i < n / BN_QK8_0; i++, src += BN_QK8_0) {
        float amax = 0.0f;
        for (int j = 0; j < BN_QK8_0; j++) amax = fmaxf(amax, fabsf(src[j]));
        float d = amax / 127.0f;
        /* ggml scales by the f32 reciprocal of the unrounded d, not by the stored fp16 d */
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        b[i].d = bn_fp32_to_fp16(d);
        for (int j = 0; j < BN_QK8_0; j++) b[i].qs[j] = (int8_t)roundf(src[j] * id);
    }
}

/* ---- Q4_0: d = max/-8 with max the signed element of largest magnitude, q in [0,15] ---- */

static void q4_0_to_float(const void *src, float *dst, int64_t n) {
    const bn_block_q4_0 *b = src;
    for (int64_t i = 0; i < n / BN_QK4_0; i++, dst += BN_QK4_0) {
        float d = bn_fp16_to_fp32(b[i].d);
        for (int j = 0; j < BN_QK4_0 / 2; j++) {
            dst[j] = ((b[i].qs[j] & 0x0f) - 8) * d;
            dst[j + BN_QK4_0 / 2] = ((b[i].qs[j] >> 4) - 8) * d;
        }
    }
}

/* The signed element of largest magnitude (the first one on ties), as ggml picks it. */
static float signed_absmax(const float *x, int n) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < n; j++) {
        if (fabsf(x[j]) > amax) { amax = fabsf(x[j]); max = x[j]; }
    }
    return max;
}

static void q4_0_from_float(const float *src, void *dst, int64_t n) {
    bn_block_q4_0 *b = dst;
    for (int64_t i = 0; i < n / BN_QK4_0; i++, src += BN_QK4_0) {
        float d = signed_absmax(src, BN_QK4_0) / -8.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        b[i].d = bn_fp32_to_fp16(d);
        for (int j = 0; j < BN_QK4_0 / 2; j++) {
            /* truncation of x+8.5 is ggml's rounding; the extreme (+8) clamps to 15 */
            int lo = (int8_t)(src[j] * id + 8.5f), hi = (int8_t)(src[j + BN_QK4_0 / 2] * id + 8.5f);
            b[i].qs[j] = (uint8_t)((lo < 15 ? lo : 15) | ((hi < 15 ? hi : 15) << 4));
        }
    }
}

/* ---- Q1_0: one sign bit per weight (LSB first), d = mean |x| over the block ---- */

static void q1_0_to_float(const void *src, float *dst, int64_t n) {
    const bn_block_q1_0 *b = src;
    for (int64_t i = 0; i < n / BN_QK1_0; i++, dst += BN_QK1_0) {
        float d = bn_fp16_to_fp32(b[i].d);
        for (int j = 0; j < BN_QK1_0; j++) dst[j] = (b[i].qs[j / 8] >> (j % 8)) & 1 ? d : -d;
    }
}
static void q1_0_from_float(const float *src, void *dst, int64_t n) {
    bn_block_q1_0 *b = dst;
    for (int64_t i = 0; i < n / BN_QK1_0; i++, src += BN_QK1_0) {
        float sum = 0.0f;
        for (int j = 0; j < BN_QK1_0; j++) sum += fabsf(src[j]);
        b[i].d = bn_fp32_to_fp16(sum / BN_QK1_0);
        memset(b[i].qs, 0, sizeof b[i].qs);
        for (int j = 0; j < BN_QK1_0; j++) {
            if (src[j] >= 0.0f) b[i].qs[j / 8] |= (uint8_t)(1u << (j % 8));
        }
    }
}

/* ---- Q8_K: activation-only, d = 1/iscale with iscale = -127/max ---- */

static void q8_K_from_float(const float *src, void *dst, int64_t n) {
    bn_block_q8_K *b = dst;
    for (int64_t i = 0; i < n / BN_QK_K; i++, src += BN_QK_K) {
        memset(&b[i], 0, sizeof b[i]);
        float max = signed_absmax(src, BN_QK_K);
        if (max == 0.0f) continue;
        float iscale = -127.0f / max;
        for (int j = 0; j < BN_QK_K; j++) {
            /* rintf = ggml's nearest_int (round half to even); only +128 can exceed the range */
            int v = (int)rintf(iscale * src[j]);
            b[i].qs[j] = (int8_t)(v < 127 ? v : 127);
        }
        for (int j = 0; j < BN_QK_K; j++) b[i].bsums[j / 16] += b[i].qs[j];
        b[i].d = 1.0f / iscale;
    }
}

/* ---- TQ2_0: 2-bit codes {0,1,2} -> {-1,0,+1}; byte m of each 32-byte half holds elements
 * m, m+32, m+64, m+96 of that half's 128 ---- */

void bn_tq2_0_trits(const void *block, int8_t out[BN_QK_K]) {
    const bn_block_tq2_0 *b = block;
    for (int j = 0; j < 64; j += 32)
        for (int l = 0; l < 4; l++)
            for (int m = 0; m < 32; m++) *out++ = (int8_t)(((b->qs[j + m] >> (2 * l)) & 3) - 1);
}

/* Ternary blocks dequantize as trit * d, the trits in element order; both ternary types
 * store their fp16 d as the block's last two bytes. */
static void ternary_to_float(const void *src, float *dst, int64_t n, size_t block_bytes,
                             void (*trits)(const void *, int8_t[BN_QK_K])) {
    int8_t t[BN_QK_K];
    const uint8_t *blk = src;
    for (int64_t i = 0; i < n / BN_QK_K; i++, blk += block_bytes, dst += BN_QK_K) {
        uint16_t h;
        memcpy(&h, blk + block_bytes - 2, 2);
        float d = bn_fp16_to_fp32(h);
        trits(blk, t);
        for (int j = 0; j < BN_QK_K; j++) dst[j] = (float)t[j] * d;
    }
}

static void tq2_0_to_float(const void *src, float *dst, int64_t n) {
    ternary_to_float(src, dst, n, sizeof(bn_block_tq2_0), bn_tq2_0_trits);
}

/* Ternary code of x scaled by id: -1, 0, +1 -> 0, 1, 2 (lroundf: ties away from zero, as ggml). */
static int ternary_code(float x, float id) { return (int)lroundf(x * id) + 1; }

static void tq2_0_from_float(const float *src, void *dst, int64_t n) {
    bn_block_tq2_0 *b = dst;
    for (int64_t i = 0; i < n / BN_QK_K; i++) {
        float amax = 0.0f;
        for (int j = 0; j < BN_QK_K; j++) amax = fmaxf(amax, fabsf(src[j]));
        float id = amax != 0.0f ? 1.0f / amax : 0.0f;
        b[i].d = bn_fp32_to_fp16(amax);
        for (int j = 0; j < 64; j += 32, src += 128) {
            for (int m = 0; m < 32; m++) {
                unsigned q = 0;
                for (int l = 0; l < 4; l++) q |= (unsigned)(ternary_code(src[m + 32 * l], id) & 3) << (2 * l);
                b[i].qs[j + m] = (uint8_t)q;
            }
        }
    }
}

/* ---- TQ1_0: base-3 packing. A byte holds up to 5 trits as the fixed-point fraction
 * q = ceil(v * 256 / 243); trit n is read back as the integer part of (q * 3^n mod 256) * 3 / 256.
 * qs[0..31] hold 5 groups of 32 elements, qs[32..47] 5 groups of 16, qh[0..3] 4 groups of 4. ---- */

static const uint8_t pow3[6] = {1, 3, 9, 27, 81, 243};

/* Decodes `width` bytes holding `trits` groups of `width` elements each. */
static int8_t *tq1_0_span_trits(const uint8_t *q, int width, int trits, int8_t *out) {
    for (int n = 0; n < trits; n++) {
        for (int m = 0; m < width; m++) {
            uint8_t v = (uint8_t)(q[m] * pow3[n]);
            *out++ = (int8_t)((((uint16_t)v * 3) >> 8) - 1);
        }
    }
    return out;
}

void bn_tq1_0_trits(const void *block, int8_t out[BN_QK_K]) {
    const bn_block_tq1_0 *b = block;
    out = tq1_0_span_trits(b->qs, 32, 5, out);
    out = tq1_0_span_trits(b->qs + 32, 16, 5, out);
    tq1_0_span_trits(b->qh, 4, 4, out);
}

static void tq1_0_to_float(const void *src, float *dst, int64_t n) {
    ternary_to_float(src, dst, n, sizeof(bn_block_tq1_0), bn_tq1_0_trits);
}

/* Packs `trits` groups of `width` elements of x into `width` bytes; fewer than 5 trits are
 * shifted up so the first lands in the most significant position, as ggml's qh does. */
static const float *tq1_0_span_from_float(const float *x, int width, int trits, float id, uint8_t *out) {
    for (int m = 0; m < width; m++) {
        unsigned q = 0;
        for (int n = 0; n < trits; n++) q = q * 3 + (unsigned)ternary_code(x[m + n * width], id);
        q *= pow3[5 - trits];
        out[m] = (uint8_t)((q * 256 + 242) / 243);
    }
    return x + width * trits;
}

static void tq1_0_from_float(const float *src, void *dst, int64_t n) {
    bn_block_tq1_0 *b = dst;
    for (int64_t i = 0; i < n / BN_QK_K; i++) {
        float amax = 0.0f;
        for (int j = 0; j < BN_QK_K; j++) amax = fmaxf(amax, fabsf(src[j]));
        float id = amax != 0.0f ? 1.0f / amax : 0.0f;
        b[i].d = bn_fp32_to_fp16(amax);
        src = tq1_0_span_from_float(src, 32, 5, id, b[i].qs);
        src = tq1_0_span_from_float(src, 16, 5, id, b[i].qs + 32);
        src = tq1_0_span_from_float(src, 4, 4, id, b[i].qh);
    }
}

/* ---- the type table ---- */

static const bn_type_traits type_table[] = {
    [BN_TYPE_F32] = {.name = "f32", .block_size = 1, .block_bytes = 4,
                   .to_float = f32_to_float, .from_float = f32_from_float, .vec_dot_type = BN_TYPE_F32},
    [BN_TYPE_F16] = {.name = "f16", .block_size = 1, .block_bytes = 2,
                   .to_float = f16_to_float, .from_float = f16_from_float, .vec_dot_type = BN_TYPE_F16},
    [BN_TYPE_BF16] = {.name = "bf16", .block_size = 1, .block_bytes = 2,
                    .to_float = bf16_to_float, .from_float = bf16_from_float, .vec_dot_type = BN_TYPE_BF16},
    [BN_TYPE_Q4_0] = {.name = "q4_0", .block_size = BN_QK4_0, .block_bytes = sizeof(bn_block_q4_0),
                    .to_float = q4_0_to_float, .from_float = q4_0_from_float, .vec_dot_type = BN_TYPE_Q8_0},
    [BN_TYPE_Q8_0] = {.name = "q8_0", .block_size = BN_QK8_0, .block_bytes = sizeof(bn_block_q8_0),
                    .to_float = q8_0_to_float, .from_float = q8_0_from_float, .vec_dot_type = BN_TYPE_Q8_0},
    [BN_TYPE_Q8_K] = {.name = "q8_K", .block_size = BN_QK_K, .block_bytes = sizeof(bn_block_q8_K),
                    .from_float = q8_K_from_float, .vec_dot_type = BN_TYPE_Q8_K},
    [BN_TYPE_TQ1_0] = {.name = "tq1_0", .block_size = BN_QK_K, .block_bytes = sizeof(bn_block_tq1_0),
                     .to_float = tq1_0_to_float, .from_float = tq1_0_from_float, .vec_dot_type = BN_TYPE_Q8_K},
    [BN_TYPE_TQ2_0] = {.name = "tq2_0", .block_size = BN_QK_K, .block_bytes = sizeof(bn_block_tq2_0),
                     .to_float = tq2_0_to_float, .from_float = tq2_0_from_float, .vec_dot_type = BN_TYPE_Q8_K},
    [BN_TYPE_Q1_0] = {.name = "q1_0", .block_size = BN_QK1_0, .block_bytes = sizeof(bn_block_q1_0),
                    .to_float = q1_0_to_float, .from_float = q1_0_from_float, .vec_dot_type = BN_TYPE_Q8_0},
};

const bn_type_traits *bn_type_get(uint32_t type) {
    if (type >= sizeof type_table / sizeof type_table[0] || !type_table[type].name) return NULL;
    return &type_table[type];
}

int bn_type_from_name(const char *name, uint32_t *out) {
    for (uint32_t t = 0; t < sizeof type_table / sizeof type_table[0]; t++) {
        if (!type_table[t].name || strcmp(type_table[t].name, name) != 0) continue;
        *out = t;
        return 0;
    }
    return -1;
}

/* ggml's names for the ids it defines that this engine does not run, so a refusal can say
 * what the file holds. */
static const char *const ggml_other_names[] = {
    [3] = "q4_1", [6] = "q5_0", [7] = "q5_1", [9] = "q8_1", [10] = "q2_K", [11] = "q3_K",
    [12] = "q4_K", [13] = "q5_K", [14] = "q6_K", [16] = "iq2_xxs", [17] = "iq2_xs",
    [18] = "iq3_xxs", [19] = "iq1_s", [20] = "iq4_nl", [21] = "iq3_s", [22] = "iq2_s",
    [23] = "iq4_xs", [24] = "i8", [25] = "i16", [26] = "i32", [27] = "i64", [28] = "f64",
    [29] = "iq1_m", [39] = "mxfp4",
};

/* The types a weight may have: those that dequantize (Q8_K is for activations only). */
static void weight_type_names(char *buf, size_t len) {
    const char *names[sizeof type_table / sizeof type_table[0]];
    int n = 0;
    for (size_t t = 0; t < sizeof type_table / sizeof type_table[0]; t++)
        if (type_table[t].to_float) names[n++] = type_table[t].name;
    bn_join_names(buf, len, names, n);
}

const char *bn_type_unknown_reason(uint32_t type) {
    static _Thread_local char buf[160];
    if (type == 40)
        return "type 40 is the PrismML fork's group-32 Q1_0, not supported; convert with upstream llama.cpp";
    if (type == 42)
        return "type 42 (Q2_0) is not supported (PrismML's fork also reuses id 42 with another block size)";
    if (type == 142 || type == 143) {
        snprintf(buf, sizeof buf, "type %u is a PrismML-fork ternary type, not supported; "
                 "convert to TQ1_0 or TQ2_0 with upstream llama.cpp", (unsigned)type);
    } else if (type < sizeof ggml_other_names / sizeof ggml_other_names[0] && ggml_other_names[type]) {
        char names[96];
        weight_type_names(names, sizeof names);
        snprintf(buf, sizeof buf, "ggml type %u (%s) is not supported; use %s", (unsigned)type, ggml_other_names[type],
                 names);
    } else if (bn_type_get(type)) {
        snprintf(buf, sizeof buf, "type %u (%s) is not a weight type", (unsigned)type, bn_type_get(type)->name);
    } else {
        snprintf(buf, sizeof buf, "unknown ggml type id %u", (unsigned)type);
    }
    return buf;
}

uint64_t bn_row_bytes(uint32_t type, uint64_t n) {
    const bn_type_traits *t = bn_type_get(type);
    uint64_t bytes;
    if (!t || n % t->block_size) return 0;
    if (!bn_mul_u64(n / t->block_size, t->block_bytes, &bytes)) return 0;
    return bytes;
}
