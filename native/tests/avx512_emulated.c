/* arch/x86/kernels_avx512.c compiled on SIMDe (portable C implementations of the x86 intrinsics,
 * each doing what its instruction does, lane for lane) instead of the CPU's instructions, for
 * test_kernels_avx512_emulated: the same source with no target attribute and its entry renamed,
 * so a CPU without AVX-512 checks the kernel's arithmetic and data movement (not its speed).
 * SIMDe 0.7.4 (Debian 12) lacks three of the intrinsics the kernel uses; they are written here
 * from Intel's definitions (the fp16 one with the reference's own conversion, which is exact).
 * Two more it has under other names: its _mm512_madd_epi16 alias takes the masked form's four
 * arguments, and _mm512_shuffle_f32x4 has no alias. */
#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx512.h>
#include "quants/quants.h"

/* vcvtdq2ps: each int32 lane to float, rounded to nearest (the default MXCSR mode, as C's). */
static inline simde__m512 emulated_cvtepi32_ps(simde__m512i a) {
    simde__m512i_private a_ = simde__m512i_to_private(a);
    simde__m512_private r_;
    for (int i = 0; i < 16; i++) r_.f32[i] = (float)a_.i32[i];
    return simde__m512_from_private(r_);
}

/* vpsrad by an immediate: each int32 lane shifted right arithmetically, sign bits for counts past 31. */
static inline simde__m512i emulated_srai_epi32(simde__m512i a, unsigned imm) {
    simde__m512i_private a_ = simde__m512i_to_private(a), r_;
    for (int i = 0; i < 16; i++) r_.i32[i] = a_.i32[i] >> (imm > 31 ? 31 : imm);
    return simde__m512i_from_private(r_);
}

/* vcvtph2ps: 16 fp16 values to float (exact: every fp16 value is a float). */
static inline simde__m512 emulated_cvtph_ps(simde__m256i a) {
    simde__m256i_private a_ = simde__m256i_to_private(a);
    simde__m512_private r_;
    for (int i = 0; i < 16; i++) r_.f32[i] = bn_fp16_to_fp32((uint16_t)a_.i16[i]);
    return simde__m512_from_private(r_);
}

#undef _mm512_madd_epi16
#define _mm512_madd_epi16(a, b) simde_mm512_madd_epi16((a), (b))
#define _mm512_shuffle_f32x4(a, b, imm) simde_mm512_shuffle_f32x4((a), (b), (imm))
#define _mm512_cvtepi32_ps(a) emulated_cvtepi32_ps(a)
#define _mm512_srai_epi32(a, imm) emulated_srai_epi32((a), (imm))
#define _mm512_cvtph_ps(a) emulated_cvtph_ps(a)
#define BN_AVX512_EMULATED 1
#define bn_gemm_q1_0_q8_0_avx512 bn_gemm_q1_0_q8_0_avx512_emulated
#define bn_gemm_q1_0_q8_0_avx512vbmi bn_gemm_q1_0_q8_0_avx512vbmi_emulated
#include "arch/x86/kernels_avx512.c"
