/* Helpers shared by the kernel tests. */
#ifndef BN_TEST_KERNEL_ORACLES_H
#define BN_TEST_KERNEL_ORACLES_H

#include <stdint.h>
#include "quants/quants.h"

/* Dequantized activation row (Q8_K has no to_float: it is d * q). */
static inline void act_to_float(uint32_t act_type, const void *blocks, float *out, int64_t n) {
    if (act_type != BN_TYPE_Q8_K) {
        bn_type_get(act_type)->to_float(blocks, out, n);
        return;
    }
    const bn_block_q8_K *b = blocks;
    for (int64_t i = 0; i < n; i++) out[i] = b[i / BN_QK_K].d * b[i / BN_QK_K].qs[i % BN_QK_K];
}

#endif
