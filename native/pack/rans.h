/* Order-0 rANS over bytes: the entropy coder under the pack codec's streams.
 *
 * 32-bit states renormalized a byte at a time, probabilities on a 12-bit scale, and
 * BN_RANS_STATES states interleaved (symbol i belongs to state i % BN_RANS_STATES) so that a
 * decoder has that many independent dependency chains to overlap. An encoded stream is
 *
 *   frequency table | the final encoder states (4 bytes LE each, state 0 first) | renorm bytes
 *
 * and its symbol count is not in it: the caller knows it. The decoder is incremental (the codec
 * decodes its streams a group of blocks at a time) and checks everything it reads: the table
 * must be canonical and sum to the scale, states must lie in the coder's range, reads stop at
 * the input's end, and at the finish every state must be back at its start value with no input
 * left over. */
#ifndef BN_PACK_RANS_H
#define BN_PACK_RANS_H

#include <stddef.h>
#include <stdint.h>

#define BN_RANS_SCALE_BITS 12
#define BN_RANS_STATES 8

/* Encodes src[0..n) into dst[0..cap). Returns the bytes written, or 0 when the result would
 * not fit in cap (or n is 0): the caller then stores the bytes instead. *table_len gets the
 * size of the frequency table at its start (for statistics). */
size_t bn_rans_encode(const uint8_t *src, size_t n, uint8_t *dst, size_t cap, size_t *table_len);

typedef struct bn_rans_decoder {
    uint32_t x[BN_RANS_STATES];
    const uint8_t *p, *end;            /* unread renorm bytes */
    uint64_t pos;                      /* symbols decoded so far (which state is next) */
    uint32_t sym_info[256];            /* freq | start << 16 of each symbol */
    uint8_t slot_sym[1u << BN_RANS_SCALE_BITS]; /* which symbol owns each slot of the scale */
} bn_rans_decoder;

/* Reads the table and the states of the encoded stream src[0..len). */
int bn_rans_decoder_init(bn_rans_decoder *d, const uint8_t *src, size_t len, char *err, size_t errlen);
/* Decodes the next n symbols into out. */
int bn_rans_decode(bn_rans_decoder *d, uint8_t *out, size_t n, char *err, size_t errlen);
/* After the last symbol: the input must be used up and the states back at their start. */
int bn_rans_decoder_finish(const bn_rans_decoder *d, char *err, size_t errlen);

#endif
