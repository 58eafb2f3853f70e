/* Instruction sets: the names and parents tables, CPU feature detection, and the selection of a
 * path. Adding a path is one enum value (isa.h), one entry in each table below and one case in
 * cpu_has. */
#include "kernels/isa.h"

#include <stdlib.h>
#include <string.h>
#include "core/common.h"

#if defined(__linux__) && (defined(__aarch64__) || defined(__arm__))
#include <sys/auxv.h>
#endif

static const char *const isa_names[BN_ISA_COUNT] = {
    [BN_ISA_SCALAR] = "scalar", [BN_ISA_NEON] = "neon", [BN_ISA_DOTPROD] = "dotprod",
    [BN_ISA_I8MM] = "i8mm",     [BN_ISA_AVX2] = "avx2", [BN_ISA_AVX512] = "avx512",
    [BN_ISA_AVX512VBMI] = "avx512vbmi",
};

static const bn_isa isa_parent[BN_ISA_COUNT] = {
    [BN_ISA_SCALAR] = BN_ISA_SCALAR, [BN_ISA_NEON] = BN_ISA_SCALAR, [BN_ISA_DOTPROD] = BN_ISA_NEON,
    [BN_ISA_I8MM] = BN_ISA_DOTPROD,  [BN_ISA_AVX2] = BN_ISA_SCALAR, [BN_ISA_AVX512] = BN_ISA_AVX2,
    [BN_ISA_AVX512VBMI] = BN_ISA_AVX512,
};

const char *bn_isa_name(bn_isa isa) { return (unsigned)isa < BN_ISA_COUNT ? isa_names[isa] : "unknown"; }

int bn_isa_from_name(const char *name, bn_isa *out) {
    for (int i = 0; i < BN_ISA_COUNT; i++) {
        if (strcmp(name, isa_names[i]) != 0) continue;
        *out = (bn_isa)i;
        return 0;
    }
    return -1;
}

bn_isa bn_isa_parent(bn_isa isa) { return (unsigned)isa < BN_ISA_COUNT ? isa_parent[isa] : BN_ISA_SCALAR; }

#if defined(__x86_64__) || defined(__i386__)
static int cpu_has(bn_isa isa) {
    __builtin_cpu_init();
    switch (isa) {
    case BN_ISA_AVX2:
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
    case BN_ISA_AVX512:
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
    case BN_ISA_AVX512VBMI:
        return __builtin_cpu_supports("avx512vbmi");
    default:
        return 0;
    }
}
#elif defined(__aarch64__)
/* Linux hwcap bits, spelled out for older kernel headers. */
#define BN_HWCAP_ASIMD (1UL << 1)
#define BN_HWCAP_ASIMDDP (1UL << 20)
#define BN_HWCAP2_I8MM (1UL << 13)
static int cpu_has(bn_isa isa) {
#if defined(__linux__)
    unsigned long hw = getauxval(AT_HWCAP), hw2 = getauxval(AT_HWCAP2);
#else
    unsigned long hw = BN_HWCAP_ASIMD, hw2 = 0; /* Advanced SIMD is mandatory on AArch64 */
#endif
    switch (isa) {
    case BN_ISA_NEON: return (hw & BN_HWCAP_ASIMD) != 0;
    case BN_ISA_DOTPROD: return (hw & BN_HWCAP_ASIMDDP) != 0;
    case BN_ISA_I8MM: return (hw2 & BN_HWCAP2_I8MM) != 0;
    default: return 0;
    }
}
#elif defined(__arm__) && defined(__linux__)
static int cpu_has(bn_isa isa) { return isa == BN_ISA_NEON && (getauxval(AT_HWCAP) & (1UL << 12)) != 0; }
#else
static int cpu_has(bn_isa isa) { (void)isa; return 0; }
#endif

int bn_isa_supported(bn_isa isa) {
    if ((unsigned)isa >= BN_ISA_COUNT) return 0;
    if (isa == BN_ISA_SCALAR) return 1;
    return cpu_has(isa) && bn_isa_supported(isa_parent[isa]);
}

int bn_isa_select(bn_isa *out, char *err, size_t errlen) {
    const char *forced = getenv("BONSAI_KERNELS");
    if (forced && *forced) {
        bn_isa isa;
        if (bn_isa_from_name(forced, &isa) != 0) {
            char names[128];
            bn_join_names(names, sizeof names, isa_names, BN_ISA_COUNT);
            return bn_fail(err, errlen, "BONSAI_KERNELS=%s: unknown (use %s)", forced, names);
        }
        if (!bn_isa_supported(isa))
            return bn_fail(err, errlen, "BONSAI_KERNELS=%s: this CPU does not support %s", forced, forced);
        *out = isa;
        return 0;
    }
    /* a CPU supports at most one family, whose best member has the highest id */
    for (int i = BN_ISA_COUNT - 1; i > 0; i--) {
        if (bn_isa_supported((bn_isa)i)) {
            *out = (bn_isa)i;
            return 0;
        }
    }
    *out = BN_ISA_SCALAR;
    return 0;
}
