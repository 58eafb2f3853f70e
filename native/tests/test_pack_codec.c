/* The pack chunk codec: byte-exact round trips for every type and level on random, structured
 * and real (fixture) tensors; the stored fallback's size bound; the statistics; zlib's CRC-32;
 * and damaged input (flipped bytes, truncations, garbage), which must give errors, never a
 * crash or a read or write out of bounds (run it under -fsanitize=address,undefined too). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "gguf/gguf.h"
#include "pack/codec.h"
#include "quants/quants.h"

static char err[512];

static uint32_t rand_u32(uint32_t *state) {
    bn_test_rand_unit(state);
    return *state;
}

static const uint32_t all_types[] = {
    BN_TYPE_Q1_0, BN_TYPE_TQ2_0, BN_TYPE_TQ1_0, BN_TYPE_Q8_0, BN_TYPE_Q4_0, BN_TYPE_F32,
    BN_TYPE_F16,  BN_TYPE_BF16,  BN_TYPE_Q8_K,  77,           0xFFFFFFFFu,
};
#define N_TYPES (sizeof all_types / sizeof all_types[0])

/* The unit the codec splits a type into: its block, or a byte for types it keeps whole. */
static size_t unit_bytes(uint32_t type) {
    const bn_type_traits *t = bn_type_get(type);
    return t && type != BN_TYPE_Q8_K ? t->block_bytes : 1;
}

/* Streams per chunk of each type, as codec.h lists them. */
static int stream_count(uint32_t type) {
    switch (type) {
    case BN_TYPE_Q1_0: case BN_TYPE_TQ2_0: case BN_TYPE_Q8_0: case BN_TYPE_Q4_0: return 3;
    case BN_TYPE_TQ1_0: case BN_TYPE_F32: return 4;
    case BN_TYPE_F16: case BN_TYPE_BF16: return 2;
    default: return 1;
    }
}

/* The bytes of a chunk of n bytes that the statistics should count as each kind. */
static void kinds_of(uint32_t type, size_t n, uint64_t want[BN_PACK_STREAM_KINDS]) {
    memset(want, 0, BN_PACK_STREAM_KINDS * sizeof want[0]);
    const int scaled = stream_count(type) >= 3 && type != BN_TYPE_F32;
    want[BN_PACK_SCALES] = scaled ? 2 * (n / unit_bytes(type)) : 0;
    const int kind = type == BN_TYPE_Q1_0 ? BN_PACK_SIGNS
                     : type == BN_TYPE_TQ1_0 || type == BN_TYPE_TQ2_0 ? BN_PACK_TERNARY
                                                                      : BN_PACK_VALUES;
    want[kind] = n - want[BN_PACK_SCALES];
}

/* The method byte of stream k of an encoded chunk (walking the stream headers), -1 if absent. */
static int stream_method(const uint8_t *enc, size_t len, int k) {
    size_t pos = 0;
    for (int i = 0;; i++) {
        if (pos >= len) return -1;
        const int method = enc[pos++];
        uint64_t payload = 0;
        for (int shift = 0; pos < len; shift += 7) {
            const uint8_t b = enc[pos++];
            payload |= (uint64_t)(b & 0x7f) << shift;
            if (!(b & 0x80)) break;
        }
        if (i == k) return method;
        pos += payload;
    }
}

/* Encodes and decodes src[0..n); checks the bound, the statistics and the bytes. Returns the
 * encoded length (0 after a failure); *enc_out (if given) gets the encoding (caller frees). */
static size_t round_trip(uint32_t type, size_t row_bytes, const uint8_t *src, size_t n, int level, const char *what,
                         uint8_t **enc_out) {
    const size_t cap = bn_pack_bound(n);
    uint8_t *enc = malloc(cap), *dec = malloc(n ? n : 1);
    bn_pack_stats stats = {{0}, {0}};
    size_t len = 0;
    int ok = bn_pack_encode(type, row_bytes, src, n, level, enc, cap, &len, &stats, err, sizeof err) == 0;
    CHECK(ok, "%s: encode: %s", what, err);
    if (ok) {
        CHECK(len <= cap, "%s: %zu bytes over the bound %zu", what, len, cap);
        uint64_t in = 0, out = 0;
        for (int k = 0; k < BN_PACK_STREAM_KINDS; k++) {
            in += stats.in[k];
            out += stats.out[k];
        }
        CHECK(in == n && out == len, "%s: stats %llu in %llu out for %zu -> %zu", what, (unsigned long long)in,
              (unsigned long long)out, n, len);
        uint64_t want[BN_PACK_STREAM_KINDS];
        kinds_of(type, n, want);
        CHECK(memcmp(want, stats.in, sizeof want) == 0, "%s: bytes counted as the wrong kinds", what);
        ok = bn_pack_decode(type, row_bytes, enc, len, dec, n, err, sizeof err) == 0;
        CHECK(ok, "%s: decode: %s", what, err);
        if (ok) {
            ok = memcmp(dec, src, n) == 0;
            CHECK(ok, "%s: decoded bytes differ", what);
        }
    }
    free(dec);
    if (enc_out && ok)
        *enc_out = enc;
    else
        free(enc);
    return ok ? len : 0;
}

static void test_crc32(void) {
    CHECK(bn_crc32(0, "123456789", 9) == 0xCBF43926u, "crc32(123456789) = %08x", bn_crc32(0, "123456789", 9));
    CHECK(bn_crc32(0, "", 0) == 0, "crc32 of nothing");
    CHECK(bn_crc32(0, "The quick brown fox jumps over the lazy dog", 43) == 0x414FA339u, "crc32 fox");
    uint8_t buf[1000];
    uint32_t state = 99;
    for (size_t i = 0; i < sizeof buf; i++) buf[i] = (uint8_t)rand_u32(&state);
    /* The reference: one bit at a time, straight from the polynomial. */
    uint32_t want = 0xffffffffu;
    for (size_t i = 0; i < sizeof buf; i++) {
        want ^= buf[i];
        for (int b = 0; b < 8; b++) want = want & 1 ? want >> 1 ^ 0xedb88320u : want >> 1;
    }
    want = ~want;
    CHECK(bn_crc32(0, buf, sizeof buf) == want, "crc32 of 1000 bytes against the bitwise reference");
    int bad = 0;
    for (size_t cut = 0; cut <= sizeof buf; cut += 7)
        bad += bn_crc32(bn_crc32(0, buf, cut), buf + cut, sizeof buf - cut) != want;
    CHECK(bad == 0, "%d incremental splits differ from one shot", bad);
}

/* Random bytes: exact round trips for every type, level and shape, never bigger than stored
 * plus the stream headers. */
static void test_random(void) {
    static const size_t blocks[] = {0, 1, 2, 3, 7, 33, 250};
    static const size_t row_units[] = {1, 3, 64};
    uint32_t state = 1;
    char what[128];
    for (size_t t = 0; t < N_TYPES; t++) {
        const uint32_t type = all_types[t];
        const size_t unit = type == BN_TYPE_Q8_K || bn_type_get(type) == NULL ? 37 : unit_bytes(type);
        for (size_t b = 0; b < sizeof blocks / sizeof blocks[0]; b++) {
            const size_t n = blocks[b] * unit;
            uint8_t *src = malloc(n ? n : 1);
            for (size_t i = 0; i < n; i++) src[i] = (uint8_t)rand_u32(&state);
            for (size_t r = 0; r < sizeof row_units / sizeof row_units[0]; r++)
                for (int level = 0; level <= 3; level++) {
                    snprintf(what, sizeof what, "random type %u, %zu bytes, row %zu, level %d", (unsigned)type, n,
                             row_units[r] * unit, level);
                    const size_t len = round_trip(type, row_units[r] * unit_bytes(type), src, n, level, what, NULL);
                    /* A stored stream's header: method byte and a 1..3 byte length at these sizes. */
                    CHECK(len <= n + (size_t)stream_count(type) * 4, "%s: %zu bytes", what, len);
                }
            free(src);
        }
    }
}

/* Constant and skewed bytes compress for every type once rANS is allowed. */
static void test_structured(void) {
    uint32_t state = 7;
    char what[128];
    for (size_t t = 0; t < N_TYPES; t++) {
        const uint32_t type = all_types[t];
        const size_t unit = unit_bytes(type), n = (16384 / unit) * unit;
        uint8_t *src = malloc(n);
        for (int pattern = 0; pattern < 3; pattern++) {
            for (size_t i = 0; i < n; i++) {
                /* zeros, one other constant, and a geometric spread over a few values */
                uint8_t geometric = 0;
                for (const uint32_t r = rand_u32(&state); geometric < 12 && (r >> geometric & 1); geometric++) {}
                src[i] = pattern == 0 ? 0 : pattern == 1 ? 0x5a : geometric;
            }
            for (int level = 0; level <= 3; level++) {
                snprintf(what, sizeof what, "pattern %d type %u level %d", pattern, (unsigned)type, level);
                const size_t len = round_trip(type, 8 * unit, src, n, level, what, NULL);
                if (level == 0) CHECK(len >= n, "%s: stored is %zu bytes", what, len);
                if (level >= 1) CHECK(len * 2 < n, "%s: %zu of %zu bytes", what, len, n);
            }
        }
        free(src);
    }
}

/* Q1_0 as a real model has it: fp16 scales near one magnitude, random signs (stored), and,
 * when every row repeats the previous one with a few bits flipped, signs that the row XOR
 * transform codes in a fraction of their size. */
static void test_q1_0_shapes(void) {
    const size_t row_blocks = 16, rows = 200, bb = sizeof(bn_block_q1_0);
    const size_t row_bytes = row_blocks * bb, n = rows * row_bytes;
    uint8_t *src = malloc(n);
    uint32_t state = 3;
    for (int repeated = 0; repeated < 2; repeated++) {
        for (size_t b = 0; b < rows * row_blocks; b++) {
            bn_block_q1_0 *blk = (bn_block_q1_0 *)(src + b * bb);
            const float scale = 0.02f * (1.0f + 0.3f * bn_test_rand_unit(&state));
            const uint16_t h = bn_fp32_to_fp16(scale);
            memcpy(src + b * bb, &h, 2);
            for (int j = 0; j < 16; j++) {
                uint8_t v = (uint8_t)rand_u32(&state);
                if (repeated && b >= row_blocks) {
                    const uint8_t *above = src + (b - row_blocks) * bb + 2;
                    v = above[j] ^ (rand_u32(&state) % 64 == 0 ? (uint8_t)(1u << (v & 7)) : 0);
                }
                blk->qs[j] = v;
            }
        }
        uint8_t *enc = NULL;
        const size_t plain = round_trip(BN_TYPE_Q1_0, row_bytes, src, n, 1, "q1_0 shapes level 1", NULL);
        const size_t len = round_trip(BN_TYPE_Q1_0, row_bytes, src, n, 2, "q1_0 shapes level 2", &enc);
        if (!enc) continue;
        CHECK(stream_method(enc, len, 1) >= 1, "scale high bytes are not entropy coded");
        if (repeated) {
            CHECK(stream_method(enc, len, 2) == 2, "repeated rows: signs method %d", stream_method(enc, len, 2));
            CHECK(len * 3 < plain, "repeated rows: %zu bytes at level 2, %zu at level 1", len, plain);
        } else {
            CHECK(stream_method(enc, len, 2) == 0, "random signs: method %d", stream_method(enc, len, 2));
            CHECK(len < n - rows * row_blocks / 2, "scales do not compress: %zu of %zu", len, n);
        }
        free(enc);
    }
    free(src);
}

/* The largest chunks the format takes (lengths need 4-byte varints, groups run many times). */
static void test_largest(void) {
    const size_t bb = sizeof(bn_block_q1_0), row = 64 * bb, n = BN_PACK_MAX_CHUNK / row * row;
    uint8_t *src = malloc(BN_PACK_MAX_CHUNK);
    uint32_t state = 17;
    for (size_t i = 0; i < BN_PACK_MAX_CHUNK; i++)
        src[i] = i >= row && rand_u32(&state) % 8 ? src[i - row] : (uint8_t)(rand_u32(&state) % 7);
    round_trip(BN_TYPE_Q1_0, row, src, n, 2, "largest q1_0", NULL);
    round_trip(0xFFFFFFFFu, 0, src, BN_PACK_MAX_CHUNK, 1, "largest byte stream", NULL);
    free(src);
}

/* Arguments the format cannot take are refused by both directions. */
static void test_bad_arguments(void) {
    uint8_t src[64] = {0}, dst[256];
    size_t len;
    CHECK(bn_pack_encode(BN_TYPE_Q1_0, 18, src, 17, 2, dst, sizeof dst, &len, NULL, err, sizeof err) != 0,
          "partial block accepted");
    CHECK(strstr(err, "blocks") != NULL, "%s", err);
    CHECK(bn_pack_encode(BN_TYPE_Q1_0, 20, src, 36, 2, dst, sizeof dst, &len, NULL, err, sizeof err) != 0,
          "partial row block accepted");
    CHECK(bn_pack_encode(BN_TYPE_F32, 4, src, 64, -1, dst, sizeof dst, &len, NULL, err, sizeof err) != 0,
          "negative level accepted");
    CHECK(bn_pack_encode(BN_TYPE_F32, 4, src, 64, 0, dst, 40, &len, NULL, err, sizeof err) != 0,
          "a too small output accepted");
    CHECK(bn_pack_encode(0xFFFFFFFFu, 1, src, BN_PACK_MAX_CHUNK + 1u, 0, dst, sizeof dst, &len, NULL, err,
                         sizeof err) != 0,
          "an oversized chunk accepted");
    CHECK(bn_pack_encode(BN_TYPE_F32, 4, src, 64, 2, dst, sizeof dst, &len, NULL, err, sizeof err) == 0, "%s", err);
    uint8_t out[72];
    CHECK(bn_pack_decode(BN_TYPE_F32, 4, dst, len, out, 60, err, sizeof err) != 0, "decoded into the wrong size");
    CHECK(bn_pack_decode(BN_TYPE_F32, 4, dst, len, out, 68, err, sizeof err) != 0, "decoded into the wrong size");
    CHECK(bn_pack_decode(BN_TYPE_F16, 4, dst, len, out, 64, err, sizeof err) != 0, "decoded as another type");
    CHECK(bn_pack_decode(BN_TYPE_F32, 4, dst, len, out, 64, err, sizeof err) == 0, "%s", err);
}

/* The same input encodes to the same bytes on every machine (integer arithmetic only), and a
 * change of the encoder's output shows here: when one is meant, the decoder must still read
 * what the old encoder wrote to packs. Skewed bytes as each type, with rows that repeat. */
static void test_format_stable(void) {
    static const struct { uint32_t type; uint32_t crc; } want[] = {
        {BN_TYPE_Q1_0, 0xb99de45cu}, {BN_TYPE_TQ1_0, 0xe40db016u}, {BN_TYPE_TQ2_0, 0x118236f7u},
        {BN_TYPE_Q8_0, 0xd65826a5u}, {BN_TYPE_F32, 0x568f39a2u},   {BN_TYPE_F16, 0xe5e8dabau},
        {0xFFFFFFFFu, 0x6abeda9du},
    };
    for (size_t t = 0; t < sizeof want / sizeof want[0]; t++) {
        const size_t unit = unit_bytes(want[t].type), row = 4 * unit, n = 64 * row;
        uint8_t *src = malloc(n);
        uint32_t state = 5;
        for (size_t i = 0; i < n; i++)
            src[i] = i >= row && rand_u32(&state) % 4 ? src[i - row] : (uint8_t)(rand_u32(&state) % 23 * 11);
        uint8_t *enc = NULL;
        const size_t len = round_trip(want[t].type, row, src, n, 2, "stable format", &enc);
        CHECK(enc && bn_crc32(0, enc, len) == want[t].crc, "type %u: the encoding changed", (unsigned)want[t].type);
        free(enc);
        free(src);
    }
}

/* Decodes a damaged chunk from an exact-size copy into an exact-size buffer, so that a sanitizer
 * sees any access outside them. Returns whether it claimed success. */
static int decode_damaged(uint32_t type, size_t row_bytes, const uint8_t *enc, size_t len, size_t n) {
    uint8_t *copy = malloc(len ? len : 1), *out = malloc(n ? n : 1);
    memcpy(copy, enc, len);
    const int ok = bn_pack_decode(type, row_bytes, copy, len, out, n, err, sizeof err) == 0;
    free(out);
    free(copy);
    return ok;
}

/* Every single-byte change (three ways), random changes of several bytes and every truncation
 * of a chunk: truncations and extensions must fail; changes may only "succeed" without a
 * crash. */
static void fuzz_chunk(uint32_t type, size_t row_bytes, const uint8_t *src, size_t n, const char *what) {
    uint8_t *enc = NULL;
    const size_t len = round_trip(type, row_bytes, src, n, 2, what, &enc);
    if (!enc) return;
    if (type == BN_TYPE_Q1_0)
        CHECK(stream_method(enc, len, 1) == 2 && stream_method(enc, len, 2) == 2,
              "%s: the transforms are not used, so not fuzzed", what);
    uint8_t *damaged = malloc(len + 1);
    int accepted_truncation = 0;
    for (size_t cut = 0; cut < len; cut++) accepted_truncation += decode_damaged(type, row_bytes, enc, cut, n);
    CHECK(accepted_truncation == 0, "%s: %d truncations decoded", what, accepted_truncation);
    memcpy(damaged, enc, len);
    damaged[len] = 0;
    CHECK(!decode_damaged(type, row_bytes, damaged, len + 1, n), "%s: a trailing byte was accepted", what);
    static const uint8_t flips[] = {0x01, 0x80, 0xff};
    for (size_t i = 0; i < len; i++)
        for (size_t f = 0; f < sizeof flips; f++) {
            memcpy(damaged, enc, len);
            damaged[i] ^= flips[f];
            decode_damaged(type, row_bytes, damaged, len, n);
        }
    uint32_t state = (uint32_t)len;
    for (int round = 0; round < 1000; round++) {
        memcpy(damaged, enc, len);
        for (uint32_t k = 2 + rand_u32(&state) % 7; k; k--)
            damaged[rand_u32(&state) % len] ^= (uint8_t)rand_u32(&state);
        decode_damaged(type, row_bytes, damaged, len, n);
    }
    free(damaged);
    free(enc);
}

static void test_damaged(void) {
    uint32_t state = 11;
    /* Q1_0 whose scales sweep up slowly and whose signs repeat by rows: both transforms win. */
    const size_t bb = sizeof(bn_block_q1_0), row_blocks = 4, rows = 24, n = rows * row_blocks * bb;
    uint8_t *q1 = malloc(n);
    for (size_t b = 0; b < rows * row_blocks; b++) {
        const uint16_t h = bn_fp32_to_fp16(1e-4f * expf(0.1f * (float)b));
        memcpy(q1 + b * bb, &h, 2);
        for (size_t j = 2; j < bb; j++)
            q1[b * bb + j] = b >= row_blocks && rand_u32(&state) % 16 ? q1[(b - row_blocks) * bb + j]
                                                                      : (uint8_t)rand_u32(&state);
    }
    fuzz_chunk(BN_TYPE_Q1_0, row_blocks * bb, q1, n, "damaged q1_0");
    free(q1);
    /* Skewed bytes as F32 planes, TQ2_0 and one stream. */
    uint8_t skewed[2640];
    for (size_t i = 0; i < sizeof skewed; i++) skewed[i] = (uint8_t)(rand_u32(&state) % 5 * 51);
    fuzz_chunk(BN_TYPE_F32, 64, skewed, 2640, "damaged f32");
    fuzz_chunk(BN_TYPE_TQ2_0, 2 * 66, skewed, 2640, "damaged tq2_0");
    fuzz_chunk(0xFFFFFFFFu, 0, skewed, 1000, "damaged bytes");
    /* Garbage of many lengths as every type. */
    uint8_t garbage[300];
    for (int round = 0; round < 2000; round++) {
        const size_t len = rand_u32(&state) % sizeof garbage;
        for (size_t i = 0; i < len; i++) garbage[i] = (uint8_t)rand_u32(&state);
        if (round % 2) garbage[0] = (uint8_t)(rand_u32(&state) % 3); /* a plausible method */
        const uint32_t type = all_types[round % N_TYPES];
        const size_t unit = unit_bytes(type), blocks = rand_u32(&state) % 40;
        decode_damaged(type, unit, garbage, len, blocks * unit);
    }
    CHECK(1, "garbage decoded without a crash");
}

/* Every tensor of a real model, split into chunks of whole rows up to 1 MiB, at levels 1 and
 * 2; the chunk sizes a pack would use. */
static void test_fixture(const char *rel) {
    bn_gguf *g = NULL;
    if (bn_gguf_open(bn_fixture(rel), &g, err, sizeof err) != 0) {
        CHECK(0, "%s: %s", rel, err);
        return;
    }
    uint64_t in = 0, out = 0;
    char what[256];
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const bn_gguf_tensor *t = &g->tensors[i];
        const size_t row = (size_t)bn_row_bytes(t->type, t->ne[0]);
        const size_t unit = unit_bytes(t->type);
        const size_t chunk = row <= (1u << 20) ? ((1u << 20) / row) * row : ((1u << 20) / unit) * unit;
        for (size_t off = 0; off < t->n_bytes; off += chunk) {
            const size_t n = t->n_bytes - off < chunk ? (size_t)t->n_bytes - off : chunk;
            for (int level = 1; level <= 2; level++) {
                snprintf(what, sizeof what, "%s %.*s at %zu level %d", rel, (int)t->name.len, t->name.ptr, off,
                         level);
                const size_t len = round_trip(t->type, row, t->data + off, n, level, what, NULL);
                if (level == 2) {
                    in += n;
                    out += len;
                }
            }
        }
    }
    printf("%s: %llu -> %llu bytes at level 2 (%.3f)\n", rel, (unsigned long long)in, (unsigned long long)out,
           in ? (double)out / (double)in : 0.0);
    CHECK(out < in, "%s: nothing saved", rel);
    bn_gguf_close(g);
}

static int fixtures_present(void) {
    const char *root = getenv("BONSAI_FIXTURES");
    char path[4096];
    snprintf(path, sizeof path, "%s/stories260K/stories260K.gguf", root && *root ? root : "../shared/fixtures");
    FILE *f = fopen(path, "rb");
    if (f) fclose(f);
    return f != NULL;
}

int main(void) {
    test_crc32();
    test_random();
    test_structured();
    test_q1_0_shapes();
    test_largest();
    test_bad_arguments();
    test_format_stable();
    test_damaged();
    if (!fixtures_present()) {
        fprintf(stderr, "SKIP: the real-model checks (set BONSAI_FIXTURES)\n");
        bn_test_done("test_pack_codec");
        return bn_test_failures ? 1 : 77;
    }
    test_fixture("stories260K/stories260K.gguf");
    static const char *const qwen[] = {"q1_0", "tq1_0", "tq2_0", "q8_0", "f32"};
    for (size_t i = 0; i < sizeof qwen / sizeof qwen[0]; i++) {
        char rel[128];
        snprintf(rel, sizeof rel, "qwen3-tiny/models/tiny-qwen3-%s.gguf", qwen[i]);
        test_fixture(rel);
    }
    return bn_test_done("test_pack_codec");
}
