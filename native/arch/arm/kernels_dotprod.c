/* aarch64 dotprod (armv8.2 sdot: Pi 5, Orin) kernels. The file is built into every aarch64
 * binary for plain armv8-a: each function carries its own target attribute and is only reached
 * when bn_isa_select found HWCAP_ASIMDDP at run time (a Pi 4 would SIGILL on sdot).
 *
 * Q1_0 is not here: its NEON lookup-table kernel (kernels_neon.c) needs fewer instructions per
 * weight block than expanding sign bits for sdot, on dotprod cores too, and the dotprod path
 * falls back to it. Both kernels below keep the scalar reference's integer sums and float
 * order, so their results are bit-identical to it. */
#include "kernels/kernels_impl.h"

#if defined(BN_HAVE_ARM_KERNELS)
#include "arch/arm/kernels_arm.h"
#include "quants/quants.h"

#pragma GCC optimize("fp-contract=off")

#define BN_DOTPROD __attribute__((target("arch=armv8.2-a+dotprod")))

/* Q8_0 x Q8_0: per block the exact int sum (two sdot), then sumf += isum * (d_x * d_y). */
BN_DOTPROD void bn_vec_dot_q8_0_q8_0_dotprod(int64_t n, float *s, const void *w, const void *a) {
    const bn_block_q8_0 *x = w, *y = a;
    float sumf = 0.0f;
    for (int64_t i = 0; i < n / BN_QK8_0; i++) {
        int32x4_t acc = vdotq_s32(vdupq_n_s32(0), vld1q_s8(x[i].qs), vld1q_s8(y[i].qs));
        acc = vdotq_s32(acc, vld1q_s8(x[i].qs + 16), vld1q_s8(y[i].qs + 16));
        sumf += (float)vaddvq_s32(acc) * (bn_arm_fp16_to_f32(x[i].d) * bn_arm_fp16_to_f32(y[i].d));
    }
    *s = sumf;
}

/* TQ2_0 x Q8_K in the reference's eight-lane order: sdot sums 4 adjacent products, which is
 * exactly one reference lane (offsets 4k..4k+3 of a 32-element group), so acc[h] holds lanes
 * 4h..4h+3 over the block's 8 groups; minus the pair sums of bsums, fused-scaled per lane. */
BN_DOTPROD void bn_vec_dot_tq2_0_q8_K_dotprod(int64_t n, float *s, const void *w, const void *a) {
    const bn_block_tq2_0 *x = w;
    const bn_block_q8_K *y = a;
    float32x4_t facc[2] = {vdupq_n_f32(0.0f), vdupq_n_f32(0.0f)};
    for (int64_t i = 0; i < n / BN_QK_K; i++) {
        const int16x8x2_t bsums = vld1q_s16_x2(y[i].bsums);
        int32x4_t acc[2] = {vnegq_s32(vpaddlq_s16(bsums.val[0])), vnegq_s32(vpaddlq_s16(bsums.val[1]))};
        for (int half = 0; half < 2; half++) {
            const uint8x16x2_t packed = vld1q_u8_x2(x[i].qs + 32 * half);
            for (int l = 0; l < 4; l++) {
                const int8x16x2_t q = vld1q_s8_x2(y[i].qs + 128 * half + 32 * l);
                for (int h = 0; h < 2; h++) {
                    const uint8x16_t c = vandq_u8(vshlq_u8(packed.val[h], vdupq_n_s8((int8_t)(-2 * l))), vdupq_n_u8(3));
                    acc[h] = vdotq_s32(acc[h], vreinterpretq_s8_u8(c), q.val[h]);
                }
            }
        }
        const float32x4_t d = vdupq_n_f32(y[i].d * bn_arm_fp16_to_f32(x[i].d));
        for (int h = 0; h < 2; h++) facc[h] = vfmaq_f32(facc[h], vcvtq_f32_s32(acc[h]), d);
    }
    *s = bn_arm_tq_reduce(facc);
}

#endif
