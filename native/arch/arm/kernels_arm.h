/* Helpers shared by the aarch64 kernel files (kernels_neon.c, kernels_dotprod.c). */
#ifndef BN_KERNELS_ARM_H
#define BN_KERNELS_ARM_H

#include <arm_neon.h>
#include <stdint.h>

/* fp16 -> f32 by the hardware: one fcvt, exact like bn_fp16_to_fp32 for every non-NaN value. */
static inline float bn_arm_fp16_to_f32(uint16_t h) {
    return vgetq_lane_f32(vcvt_f32_f16(vreinterpret_f16_u16(vdup_n_u16(h))), 0);
}

/* The ternary reference's final reduction of its eight float lanes (acc[0] = lanes 0-3,
 * acc[1] = lanes 4-7): (l0+l4 + l2+l6) + (l1+l5 + l3+l7). */
static inline float bn_arm_tq_reduce(const float32x4_t acc[2]) {
    const float32x4_t r = vaddq_f32(acc[1], acc[0]);
    return (vgetq_lane_f32(r, 0) + vgetq_lane_f32(r, 2)) + (vgetq_lane_f32(r, 1) + vgetq_lane_f32(r, 3));
}

#endif
