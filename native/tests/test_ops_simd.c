/* The SIMD versions of ops.c's loops against their scalar arithmetic, bit for bit: every fp16
 * value through the row conversion, and y += a * x on odd lengths (vector body plus tail). */
#include <math.h>
#include <stdint.h>
#include <string.h>
#include "harness.h"
#include "kernels.h"
#include "ops.h"
#include "ops_impl.h"
#include "quants.h"

#if defined(BN_HAVE_AVX2_OPS)
static void test_avx2(void) {
    static uint16_t h[65536];
    static float got[65536];
    int bad = 0;
    for (int i = 0; i < 65536; i++) h[i] = (uint16_t)i;
    bn_fp16_to_fp32_row_avx2(h, got, 65535); /* 65535 = 8191 vectors and a tail of 7 */
    for (int i = 0; i < 65535; i++) {
        const float want = bn_fp16_to_fp32(h[i]);
        if (isnan(want) ? !isnan(got[i]) : memcmp(&want, &got[i], 4) != 0) bad++;
    }
    CHECK(bad == 0, "fp16 row conversion: %d of 65535 values differ", bad);

    enum { N = 131 };
    float x[N], y[N], want[N];
    uint32_t rng = 99;
    for (int i = 0; i < N; i++) {
        rng = rng * 1664525u + 1013904223u;
        x[i] = (float)(rng >> 8) / 16777216.0f - 0.5f;
        y[i] = want[i] = (float)i * 0.37f - 20.0f;
    }
    const float a = 0.7071067f;
    for (int i = 0; i < N; i++) want[i] += a * x[i];
    bn_axpy_f32_avx2(y, a, x, N);
    CHECK(memcmp(y, want, sizeof y) == 0, "axpy differs from y += a * x");
}
#endif

int main(void) {
#if defined(BN_HAVE_AVX2_OPS)
    if (bn_isa_supported(BN_ISA_AVX2)) test_avx2();
    else printf("  no AVX2 here: nothing to compare\n");
#endif
    return bn_test_done("test_ops_simd");
}
