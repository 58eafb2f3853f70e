/* Which per-ISA files this build compiles, and the fallback when it does not. Every file under
 * arch/ is built into every binary and compiles to nothing outside its architecture; the tables
 * that point at its functions (the kernel table in kernels/kernels.c, the attention tiles in
 * attention/attention.c) list them through BN_X86_ENTRY / BN_ARM_ENTRY, which drop the entry
 * elsewhere. A path without an entry then falls back along bn_isa_parent (kernels/isa.h), down
 * to the scalar code that every build has. Within an architecture, whether the CPU can run a
 * path is decided at run time (bn_isa_supported): the files compile each function for its own
 * target, not the whole binary. */
#ifndef BN_ARCH_H
#define BN_ARCH_H

/* arch/x86: AVX2 + FMA + F16C functions (target attributes), the avx2 and avx512 paths. */
#if defined(__x86_64__) && defined(__GNUC__)
#define BN_HAVE_X86_KERNELS 1
#define BN_X86_ENTRY(...) __VA_ARGS__,
#else
#define BN_X86_ENTRY(...)
#endif

/* arch/arm: armv8.0 NEON, and armv8.2 dotprod functions (target attributes), the neon, dotprod
 * and i8mm paths. */
#if defined(__aarch64__) && defined(__GNUC__)
#define BN_HAVE_ARM_KERNELS 1
#define BN_ARM_ENTRY(...) __VA_ARGS__,
#else
#define BN_ARM_ENTRY(...)
#endif

#endif
