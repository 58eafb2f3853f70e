/* The AVX-512 Q1_0 gemms (lookups by vpshufb, and by VBMI's vpermb) on a CPU without AVX-512:
 * arch/x86/kernels_avx512.c built on SIMDe's portable intrinsics (avx512_emulated.c) against the
 * scalar reference, bit for bit, on the raw blocks every path is held to (kernel_oracles.h): their
 * lookups, rejoins, float steps, 64-row tiles cut by row ranges, token passes of 1 to 4 and
 * carried sums across table passes. It checks what the kernels compute, not how fast; where the
 * CPU has AVX-512 (and VBMI), test_kernels_paths runs the instructions themselves. Skips (77) on
 * other architectures and without SIMDe's headers (Debian: libsimde-dev). */
#include <stdio.h>
#include "harness.h"

#if defined(BN_TEST_SIMDE) && defined(__x86_64__)
#include "kernel_oracles.h"

void bn_gemm_q1_0_q8_0_avx512_emulated(const bn_matrix *w, int64_t r0, int64_t r1, const void *act,
                                       size_t act_stride, int n_tokens, float *y, int64_t y_stride);
void bn_gemm_q1_0_q8_0_avx512vbmi_emulated(const bn_matrix *w, int64_t r0, int64_t r1, const void *act,
                                           size_t act_stride, int n_tokens, float *y, int64_t y_stride);

int main(void) {
    if (!bn_isa_supported(BN_ISA_AVX2)) { /* the tables are the AVX2 code's own */
        printf("SKIPPED: the AVX-512 gemm builds its tables with AVX2, which this CPU lacks\n");
        return 77;
    }
    static const struct {
        const char *name;
        bn_q1_gemm_fn gemm;
    } gemms[] = {{"avx512", bn_gemm_q1_0_q8_0_avx512_emulated}, {"avx512vbmi", bn_gemm_q1_0_q8_0_avx512vbmi_emulated}};
    for (size_t i = 0; i < sizeof gemms / sizeof gemms[0]; i++) {
        uint32_t rng = 2463534242u;
        int cases = 0;
        const int bad = q1_raw_block_mismatches(gemms[i].gemm, BN_ISA_AVX512, -127, &rng, &cases);
        CHECK(bad == 0, "%s (emulated) q1_0 raw blocks: %d mismatches", gemms[i].name, bad);
        printf("  %s on SIMDe  q1_0  %d raw-block ranges x batches, bit-exact vs scalar: %s\n", gemms[i].name, cases,
               bad ? "FAIL" : "ok");
    }
    return bn_test_done("test_kernels_avx512_emulated");
}
#else
int main(void) {
    printf("SKIPPED: needs an x86-64 build with SIMDe's headers (Debian: apt install libsimde-dev)\n");
    return 77;
}
#endif
