#include <math.h>
#include <stdatomic.h>
#include "kernels.h"
#include "ops.h"
#include "ops_impl.h"
#include "quants.h"

/* Some loops below have AVX2 versions (ops_avx2.c) with the same arithmetic, used when the CPU
 * has them. The check runs once; racing threads all store the same answer. */
#if defined(BN_HAVE_AVX2_OPS)
static int use_avx2(void) {
    static atomic_int have = -1;
    int h = atomic_load_explicit(&have, memory_order_relaxed);
    if (h < 0) atomic_store_explicit(&have, h = bn_isa_supported(BN_ISA_AVX2), memory_order_relaxed);
    return h;
}
#endif

void bn_rmsnorm(float *y, const float *x, const float *w, int n, float eps) {
    /* ggml: products in float, summed in double, mean rounded to float, then x * scale * w. */
    double sum = 0.0;
    for (int i = 0; i < n; i++) sum += (double)(x[i] * x[i]);
    const float mean = (float)(sum / n);
    const float scale = 1.0f / sqrtf(mean + eps);
    for (int i = 0; i < n; i++) {
        const float v = x[i] * scale;
        y[i] = w ? v * w[i] : v;
    }
}

void bn_rope_cache(float *cs, int pos, int n_rot, float base) {
    /* ggml advances theta by repeated float multiplication, not by pow per dimension. */
    const float theta_scale = powf(base, -2.0f / (float)n_rot);
    float theta = (float)pos;
    for (int i = 0; i < n_rot / 2; i++) {
        cs[2 * i] = cosf(theta);
        cs[2 * i + 1] = sinf(theta);
        theta *= theta_scale;
    }
}

void bn_rope_apply(float *x, const float *cs, int n_rot, int neox) {
    const int half = n_rot / 2;
    for (int i = 0; i < half; i++) {
        const int a = neox ? i : 2 * i;
        const int b = neox ? i + half : 2 * i + 1;
        const float c = cs[2 * i], s = cs[2 * i + 1];
        const float x0 = x[a], x1 = x[b];
        x[a] = x0 * c - x1 * s;
        x[b] = x0 * s + x1 * c;
    }
}

void bn_softmax_scaled(float *x, int n, float scale) {
    float max = -INFINITY;
    for (int i = 0; i < n; i++) {
        x[i] *= scale;
        if (x[i] > max) max = x[i];
    }
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
        x[i] = expf(x[i] - max);
        sum += x[i];
    }
    const float inv = (float)(1.0 / sum);
    for (int i = 0; i < n; i++) x[i] *= inv;
}

void bn_swiglu(float *gate, const float *up, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        const float g = gate[i];
        gate[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

void bn_add(float *y, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] += x[i];
}

float bn_dot_f32(const float *a, const float *b, int n) {
    /* Eight independent partial sums: the compiler can keep them in one SIMD register
     * (a single running sum forbids vectorization without -ffast-math). */
    float acc[8] = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) acc[j] += a[i + j] * b[i + j];
    float sum = 0.0f;
    for (; i < n; i++) sum += a[i] * b[i];
    for (int j = 0; j < 8; j++) sum += acc[j];
    return sum;
}

void bn_axpy_f32(float *y, float a, const float *x, int n) {
#if defined(BN_HAVE_AVX2_OPS)
    if (use_avx2()) {
        bn_axpy_f32_avx2(y, a, x, n);
        return;
    }
#endif
    for (int i = 0; i < n; i++) y[i] += a * x[i];
}

void bn_fp16_to_fp32_row(const uint16_t *h, float *out, int n) {
#if defined(BN_HAVE_AVX2_OPS)
    if (use_avx2()) {
        bn_fp16_to_fp32_row_avx2(h, out, n);
        return;
    }
#endif
    for (int i = 0; i < n; i++) out[i] = bn_fp16_to_fp32(h[i]);
}
