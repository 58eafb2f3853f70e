/* .bnz packs: a GGUF file with its tensor data entropy-coded in independently decodable chunks.
 *
 * Layout (little-endian):
 *   header (64 bytes): magic "BONSAIPK", version, chunk count, the GGUF's size, its head's size
 *     (header, metadata and tensor table: bytes [0, data section)), the chunk table's offset, the
 *     CRC-32 of the head, of the table and of the header itself;
 *   the GGUF head, verbatim (so metadata and tensor table are the GGUF's own, parsed by its reader);
 *   the chunk table: per chunk, where its bytes go in the GGUF and where its coded bytes are in the
 *     pack, both sizes, the tensor it belongs to (or none: padding between tensors), the CRC-32 of
 *     the coded bytes and of the decoded ones, and whether it is coded or stored;
 *   the coded chunks.
 * Chunks cover the GGUF's data section in order without gaps; a tensor's chunks are whole rows
 * (whole blocks for rows over a chunk) of at most BN_PACK_CHUNK bytes, so a tensor decodes on its
 * own. Opening a pack validates every field against the file before anything is decoded. */
#ifndef BN_PACK_BNZ_H
#define BN_PACK_BNZ_H

#include <stddef.h>
#include <stdint.h>
#include "gguf/gguf.h"
#include "pack/codec.h"

#define BN_PACK_CHUNK (1u << 20)  /* decoded bytes a chunk aims at */
#define BN_PACK_NO_TENSOR UINT32_MAX

typedef struct bn_pack_chunk {
    uint64_t out_offset; /* in the GGUF */
    uint64_t in_offset;  /* in the pack */
    uint32_t out_size, in_size;
    uint32_t tensor;     /* index in the GGUF's tensor table, or BN_PACK_NO_TENSOR */
    uint32_t out_crc, in_crc;
    uint32_t coded;      /* 0: stored as is */
} bn_pack_chunk;

typedef struct bn_pack bn_pack;

/* Called now and then while a long job runs: bytes of GGUF done of total. */
typedef void (*bn_pack_progress_fn)(void *user, uint64_t done, uint64_t total);

/* Whether the file at path starts with the pack magic (0 when it cannot be read). */
int bn_pack_is_pack(const char *path);

/* Packs the GGUF at in_path into out_path (written whole to a temporary name, then renamed) with
 * `threads` threads. stats (may be NULL) receives the bytes per stream kind. */
int bn_pack_write(const char *in_path, const char *out_path, int level, int threads, bn_pack_progress_fn progress,
                  void *user, bn_pack_stats *stats, char *err, size_t errlen);

/* Maps and validates a pack; its GGUF head is parsed (tensors' data NULL until decoded). */
int bn_pack_open(const char *path, bn_pack **out, char *err, size_t errlen);
void bn_pack_close(bn_pack *p);
/* The GGUF as parsed from the pack's head; owned by the pack. */
bn_gguf *bn_pack_gguf(bn_pack *p);
/* A 32-bit identity of the pack's contents: the CRC-32 of its header, which covers the CRCs of
 * its head and chunk table, which cover every chunk's CRCs. */
uint32_t bn_pack_identity(const bn_pack *p);
uint32_t bn_pack_chunk_count(const bn_pack *p);
uint64_t bn_pack_bytes(const bn_pack *p); /* of the pack file */

/* Decodes tensor `index` into dst (its n_bytes), checking each chunk's CRC-32 first, and its
 * decoded CRC-32 too when check_decoded, then releases the chunks' pages of the mapping (the
 * decoded copy is what is read). Errors name the tensor and the chunk. */
int bn_pack_decode_tensor(const bn_pack *p, uint64_t index, uint8_t *dst, int check_decoded, char *err,
                          size_t errlen);
/* Checks every chunk (coded and decoded CRC-32) on `threads` threads; the error names the first
 * damaged chunk and its tensor. */
int bn_pack_verify(const bn_pack *p, int threads, bn_pack_progress_fn progress, void *user, char *err,
                   size_t errlen);
/* Writes the original GGUF, byte for byte, to out_path (temporary name, then renamed). */
int bn_pack_unpack(const bn_pack *p, const char *out_path, int threads, bn_pack_progress_fn progress, void *user,
                   char *err, size_t errlen);

#endif
