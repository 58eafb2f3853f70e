/* Instruction sets, called kernel paths: their names, the path each one extends, run-time
 * detection and the choice of one. A path uses the kernels of the path it extends wherever it has
 * none of its own: the kernel table (kernels.c) and the attention tiles (attention.c) both fall
 * back along bn_isa_parent. */
#ifndef BN_ISA_H
#define BN_ISA_H

#include <stddef.h>

/* A path's id is higher than that of the path it extends: bn_isa_select takes the highest id the
 * CPU supports (a CPU supports one family at most). */
typedef enum bn_isa {
    BN_ISA_SCALAR = 0,
    BN_ISA_NEON,
    BN_ISA_DOTPROD,
    BN_ISA_I8MM,
    BN_ISA_AVX2,
    BN_ISA_AVX512,
    BN_ISA_AVX512VBMI,
    BN_ISA_COUNT
} bn_isa;

/* "scalar", "neon", ...; "unknown" outside the enum. */
const char *bn_isa_name(bn_isa isa);
/* The path whose bn_isa_name is `name`: 0, or -1 when there is none. */
int bn_isa_from_name(const char *name, bn_isa *out);
/* The path isa extends (avx512vbmi -> avx512 -> avx2 -> scalar, i8mm -> dotprod -> neon ->
 * scalar); scalar is its own parent. */
bn_isa bn_isa_parent(bn_isa isa);
/* Whether this CPU can run isa: it has the path's features and those of every path it extends. */
int bn_isa_supported(bn_isa isa);
/* Best path this CPU supports (run-time detection), or the one forced by the environment
 * variable BONSAI_KERNELS (an unsupported forced path is an error, reported via *err). */
int bn_isa_select(bn_isa *out, char *err, size_t errlen);

#endif
