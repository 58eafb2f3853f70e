/* Block formats against ggml's own output: the type table, fp16/bf16 conversion, every
 * dequantizer (bit-exact) and every reference quantizer (byte-exact). */
#include <stdint.h>
#include "harness.h"
#include "quants/quants.h"

static void test_type_table(void) {
    static const struct { uint32_t id; const char *name; uint32_t bs, bytes; } want[] = {
        {BN_TYPE_F32, "f32", 1, 4},        {BN_TYPE_F16, "f16", 1, 2},
        {BN_TYPE_BF16, "bf16", 1, 2},      {BN_TYPE_Q4_0, "q4_0", 32, 18},
        {BN_TYPE_Q8_0, "q8_0", 32, 34},    {BN_TYPE_Q8_K, "q8_K", 256, 292},
        {BN_TYPE_TQ1_0, "tq1_0", 256, 54}, {BN_TYPE_TQ2_0, "tq2_0", 256, 66},
        {BN_TYPE_Q1_0, "q1_0", 128, 18},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const bn_type_traits *t = bn_type_get(want[i].id);
        CHECK(t != NULL, "type %u missing", want[i].id);
        if (!t) continue;
        CHECK(strcmp(t->name, want[i].name) == 0, "type %u name %s", want[i].id, t->name);
        CHECK(t->block_size == want[i].bs && t->block_bytes == want[i].bytes, "type %s sizes", t->name);
        CHECK(t->from_float != NULL, "type %s has no quantizer", t->name);
        CHECK((t->to_float == NULL) == (want[i].id == BN_TYPE_Q8_K), "type %s to_float", t->name);
    }
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        uint32_t id;
        CHECK(bn_type_from_name(want[i].name, &id) == 0 && id == want[i].id, "type named %s", want[i].name);
    }
    uint32_t id;
    CHECK(bn_type_from_name("q4_K", &id) != 0 && bn_type_from_name("Q1_0", &id) != 0, "unknown type names");
    CHECK(bn_type_get(BN_TYPE_Q1_0)->vec_dot_type == BN_TYPE_Q8_0, "q1_0 pairs with q8_0");
    CHECK(bn_type_get(BN_TYPE_TQ1_0)->vec_dot_type == BN_TYPE_Q8_K, "tq1_0 pairs with q8_K");
    uint32_t absent[] = {3, 40, 42, 142, 143, 1000, UINT32_MAX};
    for (size_t i = 0; i < sizeof absent / sizeof absent[0]; i++)
        CHECK(bn_type_get(absent[i]) == NULL, "type %u should be unknown", absent[i]);

    CHECK(strstr(bn_type_unknown_reason(40), "group-32") != NULL, "%s", bn_type_unknown_reason(40));
    CHECK(strstr(bn_type_unknown_reason(142), "ternary") != NULL, "%s", bn_type_unknown_reason(142));
    CHECK(strstr(bn_type_unknown_reason(143), "143") != NULL, "%s", bn_type_unknown_reason(143));
    CHECK(strstr(bn_type_unknown_reason(12), "q4_K") != NULL, "%s", bn_type_unknown_reason(12));
    CHECK(strcmp(bn_type_unknown_reason(77), "unknown ggml type id 77") == 0, "%s", bn_type_unknown_reason(77));

    CHECK(bn_row_bytes(BN_TYPE_Q1_0, 4096) == 576, "q1_0 row");
    CHECK(bn_row_bytes(BN_TYPE_Q1_0, 100) == 0, "q1_0 partial block");
    CHECK(bn_row_bytes(BN_TYPE_TQ1_0, 512) == 108, "tq1_0 row");
    CHECK(bn_row_bytes(BN_TYPE_F16, 7) == 14, "f16 row");
    CHECK(bn_row_bytes(40, 128) == 0, "unknown type row");
    CHECK(bn_row_bytes(BN_TYPE_F32, UINT64_MAX / 2) == 0, "row size overflow");
}

/* Every finite half survives a round trip; ties round to even; overflow saturates to inf. */
static void test_fp16(void) {
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff)) continue; /* NaN payloads */
        if (bn_fp32_to_fp16(bn_fp16_to_fp32((uint16_t)h)) != h) bad++;
    }
    CHECK(bad == 0, "%d halves do not round-trip", bad);
    CHECK(bn_fp16_to_fp32(0x3c00) == 1.0f && bn_fp16_to_fp32(0xc000) == -2.0f, "fp16 values");
    CHECK(bn_fp16_to_fp32(0x0001) == 0x1p-24f, "smallest subnormal");
    CHECK(bn_fp32_to_fp16(1.0f + 0x1p-11f) == 0x3c00, "tie to even (down)");
    CHECK(bn_fp32_to_fp16(1.0f + 3 * 0x1p-11f) == 0x3c02, "tie to even (up)");
    CHECK(bn_fp32_to_fp16(65520.0f) == 0x7c00 && bn_fp32_to_fp16(65519.0f) == 0x7bff, "overflow edge");
    CHECK(bn_fp32_to_fp16(0x1p-25f) == 0 && bn_fp32_to_fp16(0x1.8p-25f) == 1, "subnormal rounding");
    CHECK((bn_fp32_to_fp16(NAN) & 0x7fff) > 0x7c00, "NaN stays NaN");
    CHECK(bn_fp32_to_bf16(1.0f) == 0x3f80 && bn_bf16_to_fp32(0x3f80) == 1.0f, "bf16 one");
    CHECK(bn_fp32_to_bf16(1.0f + 0x1p-8f) == 0x3f80 && bn_fp32_to_bf16(1.0f + 3 * 0x1p-8f) == 0x3f82,
          "bf16 tie to even");
}

static int same_bytes(const void *a, size_t na, const void *b, size_t nb, const char *what) {
    if (na != nb) {
        CHECK(0, "%s: %zu bytes, expected %zu", what, na, nb);
        return 0;
    }
    const uint8_t *x = a, *y = b;
    for (size_t i = 0; i < na; i++) {
        if (x[i] != y[i]) {
            CHECK(0, "%s: first difference at byte %zu (%02x vs %02x)", what, i, x[i], y[i]);
            return 0;
        }
    }
    CHECK(1, "%s", what);
    return 1;
}

/* from_float(input) must equal the ggml blocks byte for byte (when `blocks` is non-NULL), and
 * to_float(ggml blocks) the ggml dequantization bit for bit (when `deq` is non-NULL). */
static void check_codec(uint32_t type, const char *input, const char *blocks, const char *deq) {
    const bn_type_traits *t = bn_type_get(type);
    char what[512];
    size_t in_size, bl_size;
    float *x = bn_read_fixture(input, &in_size);
    uint8_t *ref = bn_read_fixture(blocks, &bl_size);
    int64_t n = (int64_t)(in_size / 4);
    size_t bytes = (size_t)bn_row_bytes(type, (uint64_t)n);
    uint8_t *q = malloc(bytes);
    t->from_float(x, q, n);
    snprintf(what, sizeof what, "%s from %s", blocks, input);
    same_bytes(q, bytes, ref, bl_size, what);
    if (deq) {
        size_t deq_size;
        float *want = bn_read_fixture(deq, &deq_size);
        float *got = malloc(in_size);
        t->to_float(ref, got, n);
        snprintf(what, sizeof what, "%s", deq);
        same_bytes(got, in_size, want, deq_size, what);
        free(got);
        free(want);
    }
    free(q);
    free(ref);
    free(x);
}

static void test_quant_vectors(void) {
    static const struct { uint32_t type; const char *name; } types[] = {
        {BN_TYPE_F16, "f16"},   {BN_TYPE_BF16, "bf16"},   {BN_TYPE_Q8_0, "q8_0"},
        {BN_TYPE_Q4_0, "q4_0"}, {BN_TYPE_TQ1_0, "tq1_0"}, {BN_TYPE_TQ2_0, "tq2_0"},
    };
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        char blocks[128], deq[128];
        snprintf(blocks, sizeof blocks, "ggml-quant-vectors/%s.blocks.bin", types[i].name);
        snprintf(deq, sizeof deq, "ggml-quant-vectors/%s.dequant.f32", types[i].name);
        check_codec(types[i].type, "ggml-quant-vectors/input_blk0_attn_q.f32", blocks, deq);
    }
}

static void test_kernel_vectors(void) {
    static const struct { uint32_t type; const char *name; int min_n; } types[] = {
        {BN_TYPE_Q1_0, "q1_0", 128}, {BN_TYPE_Q8_0, "q8_0", 128},
        {BN_TYPE_TQ1_0, "tq1_0", 256}, {BN_TYPE_TQ2_0, "tq2_0", 256},
    };
    static const int sizes[] = {128, 256, 512, 2048};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        uint32_t act_type = bn_type_get(types[i].type)->vec_dot_type;
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
            int n = sizes[s];
            if (n < types[i].min_n) continue;
            char input[128], act[128], blocks[128], deq[128], act_blocks[128];
            snprintf(input, sizeof input, "ggml-kernels/input_n%d.f32", n);
            snprintf(act, sizeof act, "ggml-kernels/act_n%d.f32", n);
            snprintf(blocks, sizeof blocks, "ggml-kernels/%s.n%d.blocks.bin", types[i].name, n);
            snprintf(deq, sizeof deq, "ggml-kernels/%s.n%d.dequant.f32", types[i].name, n);
            snprintf(act_blocks, sizeof act_blocks, "ggml-kernels/%s.n%d.act_%s.blocks.bin", types[i].name, n,
                     bn_type_get(act_type)->name);
            check_codec(types[i].type, input, blocks, deq);
            check_codec(act_type, act, act_blocks, NULL);
        }
    }
}

/* Quantizers on edge inputs: all zeros (no division by zero), and exact ternary values. */
static void test_edges(void) {
    float zeros[256] = {0}, back[256];
    uint8_t buf[512];
    const uint32_t types[] = {BN_TYPE_Q8_0, BN_TYPE_Q4_0, BN_TYPE_Q1_0, BN_TYPE_TQ1_0, BN_TYPE_TQ2_0};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        const bn_type_traits *t = bn_type_get(types[i]);
        t->from_float(zeros, buf, 256);
        t->to_float(buf, back, 256);
        int finite = 1;
        for (int j = 0; j < 256; j++) finite &= back[j] == 0.0f;
        CHECK(finite, "%s of zeros is not zero", t->name);
    }
    bn_block_q8_K k;
    bn_type_get(BN_TYPE_Q8_K)->from_float(zeros, &k, 256);
    CHECK(k.d == 0.0f && k.bsums[0] == 0 && k.qs[17] == 0, "q8_K of zeros");

    float tern[256];
    for (int j = 0; j < 256; j++) tern[j] = (float)((j * 7 % 3) - 1) * 0.5f;
    for (uint32_t type = BN_TYPE_TQ1_0; type <= BN_TYPE_TQ2_0; type++) {
        bn_type_get(type)->from_float(tern, buf, 256);
        bn_type_get(type)->to_float(buf, back, 256);
        CHECK(memcmp(back, tern, sizeof tern) == 0, "%s does not round-trip ternary values",
              bn_type_get(type)->name);
    }
}

int main(void) {
    test_type_table();
    test_fp16();
    test_edges();
    test_quant_vectors();
    test_kernel_vectors();
    return bn_test_done("test_quants");
}
