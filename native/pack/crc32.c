/* zlib's CRC-32 by slicing-by-8: eight 256-entry tables let the loop fold eight input bytes per
 * step with independent lookups instead of one byte per dependent lookup. Pure C, either byte
 * order of host (the input is consumed as bytes). */
#include <pthread.h>
#include "pack/codec.h"

#define CRC_POLY 0xedb88320u /* IEEE 802.3, reflected */

/* table[0] is the classic byte table; table[k][b] is the CRC of byte b followed by k zero bytes. */
static uint32_t table[8][256];
static pthread_once_t table_once = PTHREAD_ONCE_INIT;

static void build_tables(void) {
    for (uint32_t b = 0; b < 256; b++) {
        uint32_t c = b;
        for (int bit = 0; bit < 8; bit++) c = c & 1 ? c >> 1 ^ CRC_POLY : c >> 1;
        table[0][b] = c;
    }
    for (uint32_t b = 0; b < 256; b++)
        for (int k = 1; k < 8; k++) table[k][b] = table[k - 1][b] >> 8 ^ table[0][table[k - 1][b] & 0xff];
}

uint32_t bn_crc32(uint32_t crc, const void *data, size_t n) {
    pthread_once(&table_once, build_tables);
    const uint8_t *p = data;
    uint32_t c = ~crc;
    for (; n >= 8; n -= 8, p += 8) {
        const uint32_t lo = c ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
        c = table[7][lo & 0xff] ^ table[6][lo >> 8 & 0xff] ^ table[5][lo >> 16 & 0xff] ^ table[4][lo >> 24] ^
            table[3][p[4]] ^ table[2][p[5]] ^ table[1][p[6]] ^ table[0][p[7]];
    }
    for (; n; n--, p++) c = c >> 8 ^ table[0][(c ^ *p) & 0xff];
    return ~c;
}
