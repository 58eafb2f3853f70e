/* The entropy coder of .bnz packs: one chunk of tensor data (whole blocks of one ggml type, at
 * most BN_PACK_MAX_CHUNK bytes) in, a self-describing byte string out, and back, byte for byte.
 *
 * A chunk is split into streams by the fields of its type's block (Q1_0: fp16 scales | sign
 * bytes; TQ2_0/TQ1_0: ternary symbol bytes | fp16 scales; Q8_0: fp16 scales | int8 values;
 * F16/BF16/F32: one stream per byte plane; anything else: one byte stream). Each stream is coded
 * with the cheapest of: stored, order-0 rANS over bytes, or order-0 rANS after a transform that
 * models its neighbourhood (sign bytes XOR the same bytes of the previous row; scale high bytes
 * as a difference from the previous scale's), chosen by measured size. Decoding validates every
 * length, count and table in the input: damaged input gives an error, never a read or write out
 * of bounds. */
#ifndef BN_PACK_CODEC_H
#define BN_PACK_CODEC_H

#include <stddef.h>
#include <stdint.h>

#define BN_PACK_MAX_CHUNK (4u << 20)

/* What a chunk's bytes went to, for reports (bits per weight by stream). */
enum bn_pack_stream_kind {
    BN_PACK_SCALES = 0,  /* fp16 block scales */
    BN_PACK_SIGNS = 1,   /* Q1_0 sign bits */
    BN_PACK_TERNARY = 2, /* TQ1_0/TQ2_0 symbols */
    BN_PACK_VALUES = 3,  /* everything else: int8 values, float planes, other blocks */
    BN_PACK_OVERHEAD = 4, /* stream headers and frequency tables */
    BN_PACK_STREAM_KINDS = 5,
};

typedef struct bn_pack_stats {
    uint64_t in[BN_PACK_STREAM_KINDS];  /* decoded bytes per kind */
    uint64_t out[BN_PACK_STREAM_KINDS]; /* encoded bytes per kind (headers/tables in OVERHEAD) */
} bn_pack_stats;

/* The most bytes bn_pack_encode can write for n input bytes (stored plus stream headers). */
size_t bn_pack_bound(size_t n);

/* Encodes src[0..n) of ggml type `type` (n a multiple of its block bytes; any type id: unknown
 * ones are one byte stream), whose rows are row_bytes long (the row context; n need not be whole
 * rows), into dst (cap >= bn_pack_bound(n)). level 0 stores every stream, 1 tries order-0 rANS,
 * 2 and above also the neighbourhood transforms. stats (may be NULL) is added to. */
int bn_pack_encode(uint32_t type, size_t row_bytes, const uint8_t *src, size_t n, int level, uint8_t *dst,
                   size_t cap, size_t *out_len, bn_pack_stats *stats, char *err, size_t errlen);

/* Decodes src[0..len) into exactly n bytes at dst; the same type and row_bytes as encoded. */
int bn_pack_decode(uint32_t type, size_t row_bytes, const uint8_t *src, size_t len, uint8_t *dst, size_t n,
                   char *err, size_t errlen);

/* zlib's CRC-32 (IEEE 802.3, reflected, as Node's zlib.crc32): crc of p[0..n) continuing from crc
 * (0 to start). */
uint32_t bn_crc32(uint32_t crc, const void *p, size_t n);

#endif
