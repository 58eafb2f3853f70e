/* GGUF reader: the real fixture files parse with the facts MANIFEST.md states, hand-built bad
 * files fail with exact messages that name the key/tensor and the numbers, and the typed getters
 * convert or refuse as documented. The mutation/truncation sweep lives in test_gguf_fuzz.c. */
#define _POSIX_C_SOURCE 200809L
#include <float.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "gguf/gguf.h"
#include "quants/quants.h"
#include "test_gguf_builder.h"

static char err[512];

/* ---- real files ---- */

static bn_gguf *open_fixture(const char *rel) {
    bn_gguf *g = NULL;
    err[0] = 0;
    int rc = bn_gguf_open(bn_fixture(rel), &g, err, sizeof err);
    CHECK(rc == 0 && g, "%s: %s", rel, err);
    if (g) {
        const char *bad = gb_check_consistent(g, g->image, g->image_size);
        CHECK(bad == NULL, "%s: inconsistent: %s", rel, bad);
    }
    return g;
}

static int str_is(bn_str s, const char *want) { return bn_str_eq(s, want); }

static void test_stories(void) {
    bn_gguf *g = open_fixture("stories260K/stories260K.gguf");
    if (!g) return;
    CHECK(g->version == 3, "version %u", g->version);
    CHECK(g->n_tensors == 48 && g->n_kv == 19, "%llu tensors %llu kv", (unsigned long long)g->n_tensors,
          (unsigned long long)g->n_kv);
    CHECK(g->alignment == 32, "alignment %llu", (unsigned long long)g->alignment);
    CHECK(g->data_offset == 14176, "data offset %llu", (unsigned long long)g->data_offset);
    bn_str s;
    CHECK(bn_gguf_get_str(g, "general.architecture", &s, err, sizeof err) == 0 && str_is(s, "llama"), "arch");
    CHECK(bn_gguf_get_str(g, "tokenizer.ggml.model", &s, err, sizeof err) == 0 && str_is(s, "llama"), "tok model");
    uint32_t u = 0;
    CHECK(bn_gguf_get_u32(g, "llama.context_length", 0, &u, err, sizeof err) == 0 && u == 2048, "ctx %u", u);
    CHECK(bn_gguf_get_u32(g, "llama.rope.dimension_count", 0, &u, err, sizeof err) == 0 && u == 8, "rot %u", u);
    CHECK(bn_gguf_get_u32(g, "tokenizer.ggml.padding_token_id", 0, &u, err, sizeof err) == 0 && u == UINT32_MAX,
          "pad %u", u);
    float f = 0;
    CHECK(bn_gguf_get_f32(g, "llama.attention.layer_norm_rms_epsilon", 0, &f, err, sizeof err) == 0 &&
              fabsf(f - 1e-5f) < 1e-9f, "eps %g", f);
    CHECK(bn_gguf_get_f32(g, "llama.rope.freq_base", 10000.0f, &f, err, sizeof err) == 0 && f == 10000.0f,
          "absent key gives the default");
    CHECK(bn_gguf_get_u32(g, "general.architecture", 0, &u, err, sizeof err) == -1 &&
              !strcmp(err, "metadata key 'general.architecture' has type string, expected an integer"), "%s", err);

    const bn_gguf_kv *tokens = bn_gguf_find(g, "tokenizer.ggml.tokens");
    CHECK(tokens && tokens->type == BN_GGUF_ARRAY && tokens->arr_type == BN_GGUF_STRING &&
              tokens->arr_count == 512, "tokens array");
    if (tokens && tokens->arr_strs) {
        CHECK(str_is(tokens->arr_strs[0], "<unk>") && str_is(tokens->arr_strs[1], "<s>") &&
                  str_is(tokens->arr_strs[3], "<0x00>"), "token strings");
    }
    const bn_gguf_kv *types = bn_gguf_find(g, "tokenizer.ggml.token_type");
    CHECK(types && types->arr_type == BN_GGUF_I32 && types->arr_count == 512 && types->arr_data[0] == 2 &&
              types->arr_data[4] == 3, "token types");

    const bn_gguf_tensor *emb = bn_gguf_find_tensor(g, "token_embd.weight");
    CHECK(emb && emb->type == BN_TYPE_F32 && emb->n_dims == 2 && emb->ne[0] == 64 && emb->ne[1] == 512 &&
              emb->offset == 0 && emb->n_bytes == 131072, "token_embd");
    const bn_gguf_tensor *down = bn_gguf_find_tensor(g, "blk.3.ffn_down.weight");
    CHECK(down && down->ne[0] == 172 && down->ne[1] == 64 && down->offset == 901120 && down->n_bytes == 44032,
          "blk.3.ffn_down");
    CHECK(bn_gguf_find_tensor(g, "blk.5.ffn_down.weight") == NULL, "no sixth layer");
    /* Mapped, not copied: the data points into the file mapping, and equals the llama2.c weights
     * (the .bin stores token_embedding_table right after its 7-int header). */
    if (emb) {
        CHECK(emb->data == g->file->data + 14176, "token_embd is used in place");
        size_t bin_size;
        uint8_t *bin = bn_read_fixture("stories260K/stories260K.bin", &bin_size);
        CHECK(bin_size >= 28 + 131072 && memcmp(bin + 28, emb->data, 131072) == 0, "token_embd bytes equal .bin");
        free(bin);
    }
    bn_gguf_close(g);
}

static void test_qwen3_tiny(void) {
    static const struct { const char *file; uint32_t type; uint64_t data_offset; } models[] = {
        {"qwen3-tiny/models/tiny-qwen3-f32.gguf", BN_TYPE_F32, 12928},
        {"qwen3-tiny/models/tiny-qwen3-q8_0.gguf", BN_TYPE_Q8_0, 12992},
        {"qwen3-tiny/models/tiny-qwen3-q1_0.gguf", BN_TYPE_Q1_0, 12992},
        {"qwen3-tiny/models/tiny-qwen3-tq1_0.gguf", BN_TYPE_TQ1_0, 12992},
        {"qwen3-tiny/models/tiny-qwen3-tq2_0.gguf", BN_TYPE_TQ2_0, 12992},
    };
    for (size_t m = 0; m < sizeof models / sizeof models[0]; m++) {
        bn_gguf *g = open_fixture(models[m].file);
        if (!g) continue;
        bn_str arch;
        CHECK(bn_gguf_get_str(g, "general.architecture", &arch, err, sizeof err) == 0 && str_is(arch, "qwen3"),
              "%s arch", models[m].file);
        CHECK(g->n_tensors == 25 && g->data_offset == models[m].data_offset, "%s: %llu tensors, data at %llu",
              models[m].file, (unsigned long long)g->n_tensors, (unsigned long long)g->data_offset);
        int n_type = 0, n_f32 = 0;
        for (uint64_t i = 0; i < g->n_tensors; i++) {
            n_type += g->tensors[i].type == models[m].type;
            n_f32 += g->tensors[i].type == BN_TYPE_F32;
        }
        if (models[m].type == BN_TYPE_F32)
            CHECK(n_f32 == 25, "%s: %d f32", models[m].file, n_f32);
        else
            CHECK(n_type == 16 && n_f32 == 9, "%s: %d quantized, %d f32", models[m].file, n_type, n_f32);
        const bn_gguf_tensor *emb = bn_gguf_find_tensor(g, "token_embd.weight");
        const bn_type_traits *tr = bn_type_get(models[m].type);
        CHECK(emb && emb->ne[0] == 256 && emb->ne[1] == 512 && tr &&
                  emb->n_bytes == 256 / tr->block_size * tr->block_bytes * 512, "%s token_embd", models[m].file);
        float base = 0;
        CHECK(bn_gguf_get_f32(g, "qwen3.rope.freq_base", 0, &base, err, sizeof err) == 0 && base == 1e6f,
              "%s freq_base %g", models[m].file, base);
        bn_gguf_close(g);
    }
}

static void test_qwen3_vocab(void) {
    bn_gguf *g = open_fixture("qwen3-vocab/ggml-vocab-qwen3.gguf");
    if (!g) return;
    CHECK(g->n_tensors == 0, "vocab only");
    const bn_gguf_kv *tokens = bn_gguf_find(g, "tokenizer.ggml.tokens");
    const bn_gguf_kv *merges = bn_gguf_find(g, "tokenizer.ggml.merges");
    CHECK(tokens && tokens->arr_count == 151936, "151936 tokens");
    CHECK(merges && merges->arr_type == BN_GGUF_STRING && merges->arr_count == 151387, "151387 merges");
    if (tokens && tokens->arr_count == 151936) CHECK(str_is(tokens->arr_strs[151645], "<|im_end|>"), "eos text");
    bn_str s;
    CHECK(bn_gguf_get_str(g, "tokenizer.ggml.model", &s, err, sizeof err) == 0 && str_is(s, "gpt2"), "model");
    CHECK(bn_gguf_get_str(g, "tokenizer.ggml.pre", &s, err, sizeof err) == 0 && str_is(s, "qwen2"), "pre");
    uint32_t id = 0;
    CHECK(bn_gguf_get_u32(g, "tokenizer.ggml.bos_token_id", 0, &id, err, sizeof err) == 0 && id == 151643, "bos");
    CHECK(bn_gguf_get_u32(g, "tokenizer.ggml.eos_token_id", 0, &id, err, sizeof err) == 0 && id == 151645, "eos");
    int add_bos = 1;
    CHECK(bn_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", 1, &add_bos, err, sizeof err) == 0 && add_bos == 0,
          "add_bos_token false");
    bn_gguf_close(g);
}

static void test_tokenizer_vectors(void) {
    static const char *vocabs[] = {"deepseek-coder", "deepseek-llm", "falcon", "gpt-2", "llama-spm",
                                   "mpt",            "phi-3",        "refact", "starcoder"};
    for (size_t i = 0; i < sizeof vocabs / sizeof vocabs[0]; i++) {
        char rel[128];
        snprintf(rel, sizeof rel, "tokenizer-vectors/ggml-vocab-%s.gguf", vocabs[i]);
        bn_gguf *g = open_fixture(rel);
        if (!g) continue;
        const bn_gguf_kv *tokens = bn_gguf_find(g, "tokenizer.ggml.tokens");
        CHECK(g->n_tensors == 0 && tokens && tokens->arr_count > 1000, "%s tokens", rel);
        bn_gguf_close(g);
    }
}

static void test_open_errors(void) {
    bn_gguf *g = NULL;
    CHECK(bn_gguf_open("/nonexistent/x.gguf", &g, err, sizeof err) == -1 && g == NULL, "missing file");
    CHECK(!strcmp(err, "cannot open '/nonexistent/x.gguf': No such file or directory"), "%s", err);
    CHECK(bn_gguf_open("/tmp", &g, err, sizeof err) == -1 && !strcmp(err, "cannot map '/tmp': it is a directory"),
          "%s", err);
    char path[] = "/tmp/bn_test_gguf_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0, "mkstemp");
    if (fd < 0) return;
    CHECK(bn_gguf_open(path, &g, err, sizeof err) == -1 && !strcmp(err, "file is empty"), "empty: %s", err);
    CHECK(write(fd, "PK\x03\x04 zip", 8) == 8, "write");
    CHECK(bn_gguf_open(path, &g, err, sizeof err) == -1 && !strcmp(err, "not a GGUF file (magic 'PK\\x03\\x04')"),
          "zip: %s", err);
    close(fd);
    unlink(path);
}

/* ---- hand-built files ---- */

/* Parses b and checks that it fails with exactly `want`. */
static void expect_error(const gb *b, const char *want, int line) {
    bn_gguf g;
    err[0] = 0;
    int rc = bn_gguf_parse(b->p, b->len, &g, err, sizeof err);
    CHECK(rc == -1, "line %d: parse succeeded, wanted \"%s\"", line, want);
    CHECK(!strcmp(err, want), "line %d:\n   got  \"%s\"\n   want \"%s\"", line, err, want);
    CHECK(g.kv == NULL && g.tensors == NULL, "line %d: struct left empty", line);
}
#define EXPECT_ERROR(b, want) expect_error((b), (want), __LINE__)

/* A valid file: one key, one f32 tensor [64, 2] named "w" at offset 0. */
static void build_one_tensor(gb *b, uint32_t n_dims, const uint64_t *ne, uint32_t type, uint64_t offset,
                             size_t data_bytes) {
    gb_header(b, 3, 1, 1);
    gb_kv_str(b, "general.architecture", "llama");
    gb_tensor(b, "w", n_dims, ne, type, offset);
    gb_pad(b, 32);
    gb_zeros(b, data_bytes);
}

static void test_tensor_errors(void) {
    char want[256];
    uint64_t ne[5] = {64, 2, 1, 1, 1};
    gb b = {0};
    build_one_tensor(&b, 2, ne, BN_TYPE_F32, 0, 512);
    bn_gguf g;
    CHECK(bn_gguf_parse(b.p, b.len, &g, err, sizeof err) == 0, "baseline: %s", err);
    CHECK(g.n_tensors == 1 && g.tensors[0].data == b.p + g.data_offset && g.tensors[0].n_bytes == 512, "baseline");
    bn_gguf_free(&g);
    size_t data_offset = b.len - 512;

    b.len = 0;
    build_one_tensor(&b, 2, ne, BN_TYPE_F32, 0, 500);
    snprintf(want, sizeof want, "tensor 'w': data ends at byte %zu, file has %zu", data_offset + 512, b.len);
    EXPECT_ERROR(&b, want);

    b.len = 0;
    build_one_tensor(&b, 2, ne, BN_TYPE_F32, 4, 1024);
    EXPECT_ERROR(&b, "tensor 'w': offset 4 is not a multiple of the alignment 32");

    b.len = 0;
    build_one_tensor(&b, 2, ne, BN_TYPE_F32, UINT64_MAX - 31, 512);
    snprintf(want, sizeof want,
             "tensor 'w': offset 18446744073709551584 + 512 bytes is beyond the end of the file (%zu bytes)", b.len);
    EXPECT_ERROR(&b, want);

    b.len = 0;
    build_one_tensor(&b, 5, ne, BN_TYPE_F32, 0, 512);
    EXPECT_ERROR(&b, "tensor 'w': n_dims 5 is not in 1..4");
    b.len = 0;
    build_one_tensor(&b, 0, ne, BN_TYPE_F32, 0, 512);
    EXPECT_ERROR(&b, "tensor 'w': n_dims 0 is not in 1..4");

    uint64_t zero_dim[2] = {64, 0};
    b.len = 0;
    build_one_tensor(&b, 2, zero_dim, BN_TYPE_F32, 0, 512);
    EXPECT_ERROR(&b, "tensor 'w': dimension 1 is 0 (must be 1..2^63-1)");
    uint64_t negative_dim[2] = {1ull << 63, 1};
    b.len = 0;
    build_one_tensor(&b, 2, negative_dim, BN_TYPE_F32, 0, 512);
    EXPECT_ERROR(&b, "tensor 'w': dimension 0 is 9223372036854775808 (must be 1..2^63-1)");

    uint64_t huge[3] = {1ull << 40, 1ull << 20, 1ull << 10};
    b.len = 0;
    build_one_tensor(&b, 3, huge, BN_TYPE_F32, 0, 512);
    EXPECT_ERROR(&b, "tensor 'w': size of shape [1099511627776, 1048576, 1024, 1] overflows");
    uint64_t bytes_overflow[1] = {1ull << 62};
    b.len = 0;
    build_one_tensor(&b, 1, bytes_overflow, BN_TYPE_F32, 0, 512);
    EXPECT_ERROR(&b, "tensor 'w': size of shape [4611686018427387904, 1, 1, 1] overflows");

    uint64_t odd_row[2] = {100, 2};
    b.len = 0;
    build_one_tensor(&b, 2, odd_row, BN_TYPE_Q1_0, 0, 512);
    EXPECT_ERROR(&b, "tensor 'w': row length 100 is not a multiple of the q1_0 block size 128");

    b.len = 0;
    build_one_tensor(&b, 2, ne, 99, 0, 512);
    snprintf(want, sizeof want, "tensor 'w': %s", bn_type_unknown_reason(99));
    EXPECT_ERROR(&b, want);
    CHECK(strstr(err, "99") != NULL, "unknown type message names the id: %s", err);
    b.len = 0;
    build_one_tensor(&b, 2, ne, 40, 0, 512);
    snprintf(want, sizeof want, "tensor 'w': %s", bn_type_unknown_reason(40));
    EXPECT_ERROR(&b, want);
    free(b.p);
}

static void test_tensor_table_errors(void) {
    uint64_t ne[2] = {64, 2};
    gb b = {0};
    /* The named example from the issue: data past the end of a realistic name. */
    gb_header(&b, 3, 2, 0);
    gb_tensor(&b, "blk.3.ffn_up.weight", 2, ne, BN_TYPE_F32, 0);
    gb_tensor(&b, "blk.3.ffn_down.weight", 2, ne, BN_TYPE_F32, 512);
    gb_pad(&b, 32);
    size_t data_offset = b.len;
    gb_zeros(&b, 600);
    char want[256];
    snprintf(want, sizeof want, "tensor 'blk.3.ffn_down.weight': data ends at byte %zu, file has %zu",
             data_offset + 1024, b.len);
    EXPECT_ERROR(&b, want);

    b.len = 0;
    gb_header(&b, 3, 2, 0);
    gb_tensor(&b, "w", 2, ne, BN_TYPE_F32, 0);
    gb_tensor(&b, "w", 2, ne, BN_TYPE_F32, 512);
    gb_pad(&b, 32);
    gb_zeros(&b, 1024);
    EXPECT_ERROR(&b, "tensor #1 'w' duplicates tensor #0");

    /* Truncated inside the second record (a long first name keeps the count plausible). */
    b.len = 0;
    gb_header(&b, 3, 2, 0);
    gb_tensor(&b, "aaaaaaaaaaaaaaaaaaaa", 2, ne, BN_TYPE_F32, 0);
    gb_tensor(&b, "b", 2, ne, BN_TYPE_F32, 512);
    gb_zeros(&b, 64);
    const size_t first_record = 8 + 20 + 4 + 16 + 4 + 8;
    gb cut = b;
    cut.len = 24 + first_record + (8 + 1 + 4 + 3); /* inside the first dimension */
    EXPECT_ERROR(&cut, "file is truncated in the tensor table (tensor #1 'b')");
    cut.len = 24 + first_record + 5; /* inside the name length */
    EXPECT_ERROR(&cut, "file is truncated in the tensor table (tensor #1)");

    b.len = 0;
    gb_header(&b, 3, 1000, 0);
    gb_zeros(&b, 100);
    EXPECT_ERROR(&b, "tensor count 1000 exceeds the file size (124 bytes)");
    b.len = 0;
    gb_header(&b, 3, 0, UINT64_MAX);
    EXPECT_ERROR(&b, "metadata key count 18446744073709551615 exceeds the file size (24 bytes)");

    b.len = 0;
    gb_header(&b, 3, 1, 0);
    gb_str(&b, "bad\nname");
    gb_zeros(&b, 40);
    EXPECT_ERROR(&b, "tensor #0: name contains control byte 0x0a at position 3");
    b.len = 0;
    gb_header(&b, 3, 1, 0);
    gb_u64(&b, 1ull << 40);
    gb_zeros(&b, 40);
    EXPECT_ERROR(&b, "tensor #0: name length 1099511627776 exceeds the file size");
    free(b.p);
}

static void test_header_errors(void) {
    gb b = {0};
    gb_header(&b, 1, 0, 0);
    EXPECT_ERROR(&b, "GGUF version 1 is not supported (32-bit counts); convert the file with a current llama.cpp");
    b.len = 0;
    gb_header(&b, 4, 0, 0);
    EXPECT_ERROR(&b, "unsupported GGUF version 4 (only 2 and 3)");
    b.len = 0;
    gb_header(&b, 0x03000000u, 0, 0);
    EXPECT_ERROR(&b, "big-endian GGUF files are not supported (version field 0x03000000)");
    b.len = 0;
    gb_bytes(&b, "GGUF\x03\x00\x00\x00\x00\x00", 10);
    EXPECT_ERROR(&b, "file is truncated in the header");
    b.len = 0;
    gb_bytes(&b, "GGU", 3);
    EXPECT_ERROR(&b, "not a GGUF file (only 3 bytes)");
    b.len = 0;
    gb_bytes(&b, "\x7f" "ELF", 4);
    EXPECT_ERROR(&b, "not a GGUF file (magic '\\x7fELF')");
    /* A v2 file with no tensors and nothing after the header is valid. */
    b.len = 0;
    gb_header(&b, 2, 0, 0);
    bn_gguf g;
    CHECK(bn_gguf_parse(b.p, b.len, &g, err, sizeof err) == 0 && g.version == 2 && g.data_offset == 32,
          "empty v2: %s", err);
    bn_gguf_free(&g);
    free(b.p);
}

static void test_metadata_errors(void) {
    gb b = {0};
    gb_header(&b, 3, 0, 2);
    gb_kv_array(&b, "general.name", BN_GGUF_U8, 0);
    gb_kv_array(&b, "tokenizer.ggml.tokens", BN_GGUF_STRING, UINT64_MAX);
    EXPECT_ERROR(&b, "metadata key #1 'tokenizer.ggml.tokens': array count 18446744073709551615 exceeds the file size");

    b.len = 0;
    gb_header(&b, 3, 0, 1);
    gb_kv_array(&b, "tokenizer.ggml.scores", BN_GGUF_F32, 1ull << 62);
    gb_zeros(&b, 64);
    EXPECT_ERROR(&b, "metadata key #0 'tokenizer.ggml.scores': array count 4611686018427387904 exceeds the file size");

    b.len = 0;
    gb_header(&b, 3, 0, 1);
    gb_kv_array(&b, "a.b", BN_GGUF_ARRAY, 1);
    for (int i = 0; i < 100; i++) {
        gb_u32(&b, BN_GGUF_ARRAY);
        gb_u64(&b, 1);
    }
    EXPECT_ERROR(&b, "metadata key #0 'a.b': arrays of arrays are not supported");

    b.len = 0;
    gb_header(&b, 3, 0, 1);
    gb_kv_array(&b, "a.b", 13, 1);
    gb_zeros(&b, 8);
    EXPECT_ERROR(&b, "metadata key #0 'a.b': unknown array element type 13");
    b.len = 0;
    gb_header(&b, 3, 0, 1);
    gb_key(&b, "a.b", 0xffffffffu);
    gb_zeros(&b, 8);
    EXPECT_ERROR(&b, "metadata key #0 'a.b': unknown value type 4294967295");

    b.len = 0;
    gb_header(&b, 3, 0, 3);
    gb_kv_u32(&b, "a", 1);
    gb_kv_u32(&b, "b", 2);
    gb_kv_str(&b, "a", "x");
    EXPECT_ERROR(&b, "metadata key #2 'a' duplicates metadata key #0");

    b.len = 0;
    gb_header(&b, 3, 0, 1);
    gb_key(&b, "general.name", BN_GGUF_STRING);
    gb_u64(&b, 1000);
    gb_bytes(&b, "short", 5);
    EXPECT_ERROR(&b, "metadata key #0 'general.name': string length 1000 exceeds the file size");

    b.len = 0;
    gb_header(&b, 3, 0, 1);
    gb_kv_array(&b, "t", BN_GGUF_STRING, 3);
    gb_str(&b, "x");
    gb_u64(&b, 100);
    gb_zeros(&b, 10);
    EXPECT_ERROR(&b, "metadata key #0 't': element #1 has length 100, which exceeds the file size");

    b.len = 0;
    gb_header(&b, 3, 0, 2);
    gb_kv_u32(&b, "ok", 1);
    gb_str(&b, "");
    gb_u32(&b, BN_GGUF_U32);
    gb_u32(&b, 0);
    EXPECT_ERROR(&b, "metadata key #1: key is empty");

    b.len = 0;
    gb_header(&b, 3, 0, 1);
    gb_key(&b, "general.count", BN_GGUF_U64);
    gb_u32(&b, 7);
    EXPECT_ERROR(&b, "file is truncated in metadata key #0 'general.count'");

    static const struct { uint32_t value; const char *want; } alignments[] = {
        {0, "metadata key 'general.alignment': 0 is not a power of two"},
        {3, "metadata key 'general.alignment': 3 is not a power of two"},
        {48, "metadata key 'general.alignment': 48 is not a power of two"},
    };
    for (size_t i = 0; i < sizeof alignments / sizeof alignments[0]; i++) {
        b.len = 0;
        gb_header(&b, 3, 0, 1);
        gb_kv_u32(&b, "general.alignment", alignments[i].value);
        EXPECT_ERROR(&b, alignments[i].want);
    }
    b.len = 0;
    gb_header(&b, 3, 0, 1);
    gb_key(&b, "general.alignment", BN_GGUF_U64);
    gb_u64(&b, 32);
    EXPECT_ERROR(&b, "metadata key 'general.alignment' has type u64, expected u32");

    /* 2^31 is a legal alignment: the header pads past the end of this tiny file, which is fine
     * without tensors and an error with one. */
    b.len = 0;
    gb_header(&b, 3, 0, 1);
    gb_kv_u32(&b, "general.alignment", 1u << 31);
    bn_gguf g;
    CHECK(bn_gguf_parse(b.p, b.len, &g, err, sizeof err) == 0 && g.alignment == (1u << 31) &&
              g.data_offset == (1ull << 31), "alignment 2^31 without tensors: %s", err);
    bn_gguf_free(&g);
    uint64_t ne[1] = {32};
    b.len = 0;
    gb_header(&b, 3, 1, 1);
    gb_kv_u32(&b, "general.alignment", 1u << 31);
    gb_tensor(&b, "w", 1, ne, BN_TYPE_F32, 0);
    gb_zeros(&b, 128);
    char want[128];
    snprintf(want, sizeof want, "tensor 'w': data ends at byte %llu, file has %zu", (1ull << 31) + 128, b.len);
    EXPECT_ERROR(&b, want);
    free(b.p);
}

/* Every value type and every array element type, decoded and read back through the getters. */
static void test_all_value_types(void) {
    gb b = {0};
    gb_header(&b, 3, 1, 28);
    gb_key(&b, "v.u8", BN_GGUF_U8); gb_u8(&b, 200);
    gb_key(&b, "v.i8", BN_GGUF_I8); gb_u8(&b, (uint8_t)-5);
    gb_key(&b, "v.u16", BN_GGUF_U16); gb_le(&b, 65535, 2);
    gb_key(&b, "v.i16", BN_GGUF_I16); gb_le(&b, (uint16_t)-300, 2);
    gb_kv_u32(&b, "v.u32", 4000000000u);
    gb_key(&b, "v.i32", BN_GGUF_I32); gb_u32(&b, (uint32_t)-70000);
    float f32 = 1.5f; uint32_t f32bits; memcpy(&f32bits, &f32, 4);
    gb_key(&b, "v.f32", BN_GGUF_F32); gb_u32(&b, f32bits);
    gb_key(&b, "v.bool", BN_GGUF_BOOL); gb_u8(&b, 1);
    gb_kv_str(&b, "v.string", "hello");
    gb_key(&b, "v.u64", BN_GGUF_U64); gb_u64(&b, 1ull << 40);
    gb_key(&b, "v.i64", BN_GGUF_I64); gb_u64(&b, (uint64_t)-(1ll << 40));
    double f64 = 3.25; uint64_t f64bits; memcpy(&f64bits, &f64, 8);
    gb_key(&b, "v.f64", BN_GGUF_F64); gb_u64(&b, f64bits);
    gb_key(&b, "v.i64small", BN_GGUF_I64); gb_u64(&b, 7);
    double big = 1e300; uint64_t bigbits; memcpy(&bigbits, &big, 8);
    gb_key(&b, "v.f64big", BN_GGUF_F64); gb_u64(&b, bigbits);
    gb_kv_str(&b, "v.embedded_nul", "a");
    b.p[b.len - 1] = 0; /* values may hold any bytes */
    for (uint32_t t = 0; t <= BN_GGUF_F64; t++) {
        if (t == BN_GGUF_ARRAY) continue;
        char key[32];
        snprintf(key, sizeof key, "arr.%s", bn_gguf_vtype_name(t));
        gb_kv_array(&b, key, t, 3);
        for (int i = 0; i < 3; i++) {
            if (t == BN_GGUF_STRING) gb_str(&b, i == 0 ? "" : i == 1 ? "x" : "yz");
            else gb_le(&b, (uint64_t)(i + 1), gb_scalar_size(t));
        }
    }
    gb_kv_u32(&b, "general.alignment", 64);
    uint64_t ne[4] = {128, 2, 3, 1};
    gb_tensor(&b, "q", 4, ne, BN_TYPE_Q1_0, 64);
    gb_pad(&b, 64);
    size_t data_offset = b.len;
    gb_zeros(&b, 64 + 6 * 18);

    bn_gguf g;
    int rc = bn_gguf_parse(b.p, b.len, &g, err, sizeof err);
    CHECK(rc == 0, "all types: %s", err);
    if (rc != 0) { free(b.p); return; }
    CHECK(gb_check_consistent(&g, b.p, b.len) == NULL, "consistent");
    CHECK(bn_gguf_find(&g, "v.u8")->v.u64 == 200 && bn_gguf_find(&g, "v.i8")->v.i64 == -5 &&
              bn_gguf_find(&g, "v.u16")->v.u64 == 65535 && bn_gguf_find(&g, "v.i16")->v.i64 == -300 &&
              bn_gguf_find(&g, "v.i32")->v.i64 == -70000 && bn_gguf_find(&g, "v.f32")->v.f64 == 1.5 &&
              bn_gguf_find(&g, "v.u64")->v.u64 == (1ull << 40) &&
              bn_gguf_find(&g, "v.i64")->v.i64 == -(1ll << 40) && bn_gguf_find(&g, "v.f64")->v.f64 == 3.25,
          "scalars decode");
    CHECK(bn_gguf_find(&g, "v.embedded_nul")->v.str.len == 1, "embedded NUL kept");
    for (uint32_t t = 0; t <= BN_GGUF_F64; t++) {
        if (t == BN_GGUF_ARRAY) continue;
        char key[32];
        snprintf(key, sizeof key, "arr.%s", bn_gguf_vtype_name(t));
        const bn_gguf_kv *kv = bn_gguf_find(&g, key);
        CHECK(kv && kv->type == BN_GGUF_ARRAY && kv->arr_type == t && kv->arr_count == 3, "%s", key);
        if (kv && t == BN_GGUF_STRING)
            CHECK(kv->arr_strs[0].len == 0 && str_is(kv->arr_strs[2], "yz"), "string elements");
        else if (kv)
            CHECK(kv->arr_data[gb_scalar_size(t) * 2] == 3, "%s element 2", key);
    }
    CHECK(g.alignment == 64 && g.data_offset == data_offset, "alignment 64");
    const bn_gguf_tensor *q = bn_gguf_find_tensor(&g, "q");
    CHECK(q && q->n_elements == 768 && q->n_bytes == 108 && q->data == b.p + data_offset + 64, "q1_0 tensor");

    uint32_t u;
    float f;
    int flag;
    bn_str s;
    CHECK(bn_gguf_get_u32(&g, "v.u8", 0, &u, err, sizeof err) == 0 && u == 200, "u8 -> u32");
    CHECK(bn_gguf_get_u32(&g, "v.i64small", 0, &u, err, sizeof err) == 0 && u == 7, "i64 -> u32");
    CHECK(bn_gguf_get_u32(&g, "v.u32", 0, &u, err, sizeof err) == 0 && u == 4000000000u, "u32");
    CHECK(bn_gguf_get_u32(&g, "v.i8", 0, &u, err, sizeof err) == -1 &&
              !strcmp(err, "metadata key 'v.i8': value -5 does not fit in u32"), "%s", err);
    CHECK(bn_gguf_get_u32(&g, "v.u64", 0, &u, err, sizeof err) == -1 &&
              !strcmp(err, "metadata key 'v.u64': value 1099511627776 does not fit in u32"), "%s", err);
    CHECK(bn_gguf_get_u32(&g, "v.f32", 0, &u, err, sizeof err) == -1 &&
              !strcmp(err, "metadata key 'v.f32' has type f32, expected an integer"), "%s", err);
    CHECK(bn_gguf_get_u32(&g, "absent", 42, &u, err, sizeof err) == 0 && u == 42, "default");
    CHECK(bn_gguf_get_f32(&g, "v.f64", 0, &f, err, sizeof err) == 0 && f == 3.25f, "f64 -> f32");
    CHECK(bn_gguf_get_f32(&g, "v.i32", 0, &f, err, sizeof err) == 0 && f == -70000.0f, "i32 -> f32");
    CHECK(bn_gguf_get_f32(&g, "v.f64big", 0, &f, err, sizeof err) == -1 &&
              !strcmp(err, "metadata key 'v.f64big': value 1e+300 does not fit in f32"), "%s", err);
    CHECK(bn_gguf_get_f32(&g, "v.string", 0, &f, err, sizeof err) == -1 &&
              !strcmp(err, "metadata key 'v.string' has type string, expected a number"), "%s", err);
    CHECK(bn_gguf_get_bool(&g, "v.bool", 0, &flag, err, sizeof err) == 0 && flag == 1, "bool");
    CHECK(bn_gguf_get_bool(&g, "v.u8", 0, &flag, err, sizeof err) == -1 &&
              !strcmp(err, "metadata key 'v.u8' has type u8, expected bool"), "%s", err);
    CHECK(bn_gguf_get_str(&g, "v.string", &s, err, sizeof err) == 0 && str_is(s, "hello"), "string");
    CHECK(bn_gguf_get_str(&g, "absent", &s, err, sizeof err) == 0 && s.ptr == NULL, "absent string");
    CHECK(bn_gguf_get_str(&g, "arr.u8", &s, err, sizeof err) == -1 &&
              !strcmp(err, "metadata key 'arr.u8' has type array, expected string"), "%s", err);
    bn_gguf_free(&g);
    bn_gguf_free(&g); /* safe on a zeroed struct */
    free(b.p);
}

static void test_vtype_names(void) {
    static const char *want[] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32",
                                 "bool", "string", "array", "u64", "i64", "f64"};
    for (uint32_t t = 0; t < 13; t++) CHECK(!strcmp(bn_gguf_vtype_name(t), want[t]), "vtype %u", t);
    CHECK(!strcmp(bn_gguf_vtype_name(13), "unknown"), "vtype 13");
}

int main(void) {
    test_vtype_names();
    test_header_errors();
    test_metadata_errors();
    test_tensor_errors();
    test_tensor_table_errors();
    test_all_value_types();
    test_open_errors();
    test_stories();
    test_qwen3_tiny();
    test_qwen3_vocab();
    test_tokenizer_vectors();
    return bn_test_done("test_gguf");
}
