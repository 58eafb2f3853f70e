/* The 32-row tile layout of Q1_0 weights read by the AVX2 lookup-table kernels: one 256-bit
 * load then holds the same 4 weight bits of 32 rows (two 128-bit lanes of 16), so the kernel
 * never recombines lanes. See BN_Q1_TILE32_* in kernels_impl.h for the layout. */
#include <stdlib.h>
#include <string.h>
#include "common.h"
#include "kernels_impl.h"
#include "quants.h"

int bn_pack_q1_0_tile32(bn_matrix *m, char *err, size_t errlen) {
    const int64_t tiles = (m->rows + BN_Q1_TILE32 - 1) / BN_Q1_TILE32, nb = m->cols / BN_QK1_0;
    const size_t bytes = (size_t)(tiles * nb) * BN_Q1_TILE32_BLOCK;
    uint8_t *p = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
    if (!p)
        return bn_fail(err, errlen, "out of memory packing a %lld x %lld q1_0 matrix", (long long)m->rows,
                       (long long)m->cols);
    memset(p, 0, bytes); /* the rows padding the last tile are zero */
    for (int64_t r = 0; r < m->rows; r++) {
        const bn_block_q1_0 *row = (const bn_block_q1_0 *)(m->data + (size_t)r * m->row_bytes);
        uint8_t *tb = p + (size_t)(r / BN_Q1_TILE32 * nb) * BN_Q1_TILE32_BLOCK;
        const int lane = (int)(r % BN_Q1_TILE32), slot = bn_q1_tile32_slot(lane);
        for (int64_t i = 0; i < nb; i++, tb += BN_Q1_TILE32_BLOCK) {
            for (int j = 0; j < BN_Q1_PLANES; j++) tb[j * BN_Q1_TILE32 + lane] = row[i].qs[j];
            memcpy(tb + BN_Q1_PLANES * BN_Q1_TILE32 + 2 * slot, &row[i].d, 2);
        }
    }
    m->packed = p;
    m->packed_bytes = bytes;
    m->packed_layout = BN_Q1_LAYOUT_TILE32;
    return 0;
}
