/* The tile layouts of Q1_0 weights read by the lookup-table kernels (portable C, any
 * architecture): a kernel indexes one table with the same 4 weight bits of a whole tile of rows
 * at once, so those bits must sit side by side. 16-row tiles serve NEON (one 128-bit register),
 * 32-row tiles AVX2 (one 256-bit register, two lanes of 16), 64-row tiles AVX-512 (four lanes). See kernels_impl.h. */
#include <string.h>
#include "kernels/kernels_impl.h"
#include "quants/quants.h"

static int tile16_slot(int r) { return r; }

/* Packs m into tiles of tile_rows rows: per block column, plane j holds bit-byte j of each row
 * of the tile, then come the rows' fp16 scales, row r's at position slot(r). */
static void pack_tiles(bn_matrix *m, void *dst, int tile_rows, int (*slot)(int), int layout) {
    const int64_t tiles = (m->rows + tile_rows - 1) / tile_rows, nb = m->cols / BN_QK1_0;
    const size_t tile_block = (size_t)(BN_Q1_PLANES + 2) * (size_t)tile_rows;
    m->packed_bytes = (size_t)(tiles * nb) * tile_block;
    m->packed_layout = layout;
    if (!dst) return;
    uint8_t *p = dst;
    if (m->rows % tile_rows) /* the rows padding the last tile are zero */
        memset(p + (size_t)((tiles - 1) * nb) * tile_block, 0, (size_t)nb * tile_block);
    for (int64_t r = 0; r < m->rows; r++) {
        const bn_block_q1_0 *row = (const bn_block_q1_0 *)(m->data + (size_t)r * m->row_bytes);
        uint8_t *tb = p + (size_t)(r / tile_rows * nb) * tile_block;
        const int lane = (int)(r % tile_rows), scale = slot(lane);
        for (int64_t i = 0; i < nb; i++, tb += tile_block) {
            for (int j = 0; j < BN_Q1_PLANES; j++) tb[j * tile_rows + lane] = row[i].qs[j];
            memcpy(tb + BN_Q1_PLANES * tile_rows + 2 * scale, &row[i].d, 2);
        }
    }
    m->packed = p;
}

void bn_pack_q1_0_tile16(bn_matrix *m, void *dst) { pack_tiles(m, dst, BN_Q1_TILE, tile16_slot, BN_Q1_LAYOUT_TILE16); }

void bn_pack_q1_0_tile32(bn_matrix *m, void *dst) {
    pack_tiles(m, dst, BN_Q1_TILE32, bn_q1_tile32_slot, BN_Q1_LAYOUT_TILE32);
}

void bn_pack_q1_0_tile64(bn_matrix *m, void *dst) {
    pack_tiles(m, dst, BN_Q1_TILE64, bn_q1_tile64_slot, BN_Q1_LAYOUT_TILE64);
}
