/* Forward and backward of the training pass's ops. Loops are written so the compiler can
 * vectorize them (independent accumulators, axpy inner loops); on x86 the hot ones are also
 * cloned for AVX2 and AVX-512, picked by the loader at run time. */
#include "train/grad_ops.h"

#include <math.h>
#include <string.h>

#include "model/ops.h"
#include "quants/quants.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define BN_HOT __attribute__((target_clones("default", "arch=x86-64-v3", "arch=x86-64-v4")))
#else
#define BN_HOT
#endif
/* The helpers are inlined into every clone, so they are compiled for the clone's ISA. */
#define BN_INLINE __attribute__((always_inline))

enum { LANES = 16 };

/* The lanes' sum by halving, which vectorizes; a sum in lane order would chain LANES dependent
 * additions, longer than the products for rows of 128. */
static inline BN_INLINE float hsum(float acc[LANES]) {
    for (int width = LANES / 2; width >= 1; width /= 2) {
        for (int k = 0; k < width; k++) acc[k] += acc[k + width];
    }
    return acc[0];
}

static inline BN_INLINE float dot(const float *a, const float *b, int n) {
    float acc[LANES] = {0};
    int i = 0;
    for (; i + LANES <= n; i += LANES) {
        for (int k = 0; k < LANES; k++) acc[k] += a[i + k] * b[i + k];
    }
    float tail = 0.0f;
    for (; i < n; i++) tail += a[i] * b[i];
    return hsum(acc) + tail;
}

static inline BN_INLINE void axpy(float *y, float a, const float *x, int n) {
    for (int i = 0; i < n; i++) y[i] += a * x[i];
}

/* Four dot products of one weight row with four activation rows, each summed in dot()'s order,
 * so a row's result does not depend on whether it fell in a block of four. */
static inline BN_INLINE void dot4(float out[4], const float *w, const float *x0, const float *x1, const float *x2, const float *x3, int n) {
    float a0[LANES] = {0}, a1[LANES] = {0}, a2[LANES] = {0}, a3[LANES] = {0};
    int i = 0;
    for (; i + LANES <= n; i += LANES) {
        for (int k = 0; k < LANES; k++) {
            const float wk = w[i + k];
            a0[k] += x0[i + k] * wk;
            a1[k] += x1[i + k] * wk;
            a2[k] += x2[i + k] * wk;
            a3[k] += x3[i + k] * wk;
        }
    }
    float t0 = 0.0f, t1 = 0.0f, t2 = 0.0f, t3 = 0.0f;
    for (; i < n; i++) t0 += x0[i] * w[i], t1 += x1[i] * w[i], t2 += x2[i] * w[i], t3 += x3[i] * w[i];
    out[0] = hsum(a0) + t0, out[1] = hsum(a1) + t1, out[2] = hsum(a2) + t2, out[3] = hsum(a3) + t3;
}

/* y += a0 x0 + a1 x1 + a2 x2 + a3 x3: one pass over y for four rows. */
static inline BN_INLINE void axpy4(float *y, const float a[4], const float *x0, const float *x1, const float *x2, const float *x3, int n) {
    for (int i = 0; i < n; i++) y[i] += a[0] * x0[i] + a[1] * x1[i] + a[2] * x2[i] + a[3] * x3[i];
}

BN_HOT void bn_linear_fwd(float *y, const float *x, const float *w, int T, int in, int out) {
    int t = 0;
    for (; t + 4 <= T; t += 4) {
        const float *xt = x + (int64_t)t * in;
        for (int o = 0; o < out; o++) {
            float r[4];
            dot4(r, w + (int64_t)o * in, xt, xt + in, xt + 2 * in, xt + 3 * in, in);
            for (int j = 0; j < 4; j++) y[(int64_t)(t + j) * out + o] = r[j];
        }
    }
    for (; t < T; t++) {
        for (int o = 0; o < out; o++) y[(int64_t)t * out + o] = dot(x + (int64_t)t * in, w + (int64_t)o * in, in);
    }
}

BN_HOT void bn_linear_bwd(float *dx, float *dw, const float *dy, const float *x, const float *w, int T, int in, int out) {
    if (dx) {
        /* dx[t] += sum_o dy[t][o] w[o], four weight rows per pass over dx[t] */
        for (int t = 0; t < T; t++) {
            const float *dyt = dy + (int64_t)t * out;
            float *dxt = dx + (int64_t)t * in;
            int o = 0;
            for (; o + 4 <= out; o += 4) {
                const float *wo = w + (int64_t)o * in;
                axpy4(dxt, dyt + o, wo, wo + in, wo + 2 * in, wo + 3 * in, in);
            }
            for (; o < out; o++) axpy(dxt, dyt[o], w + (int64_t)o * in, in);
        }
    }
    if (dw) {
        /* dw[o] += sum_t dy[t][o] x[t], four activation rows per pass over dw[o] */
        for (int o = 0; o < out; o++) {
            float *dwo = dw + (int64_t)o * in;
            int t = 0;
            for (; t + 4 <= T; t += 4) {
                const float a[4] = {dy[(int64_t)t * out + o], dy[(int64_t)(t + 1) * out + o], dy[(int64_t)(t + 2) * out + o], dy[(int64_t)(t + 3) * out + o]};
                const float *xt = x + (int64_t)t * in;
                axpy4(dwo, a, xt, xt + in, xt + 2 * in, xt + 3 * in, in);
            }
            for (; t < T; t++) axpy(dwo, dy[(int64_t)t * out + o], x + (int64_t)t * in, in);
        }
    }
}

void bn_rmsnorm_fwd(float *y, float *r, const float *x, const float *w, int T, int n, float eps) {
    for (int t = 0; t < T; t++) {
        const float *xt = x + (int64_t)t * n;
        float *yt = y + (int64_t)t * n;
        double ss = 0.0;
        for (int i = 0; i < n; i++) ss += (double)xt[i] * xt[i];
        float rt = (float)(1.0 / sqrt(ss / n + eps));
        r[t] = rt;
        for (int i = 0; i < n; i++) yt[i] = xt[i] * rt * w[i];
    }
}

void bn_rmsnorm_bwd(float *dx, float *dw, const float *dy, const float *x, const float *r, const float *w, int T, int n) {
    for (int t = 0; t < T; t++) {
        const float *xt = x + (int64_t)t * n, *dyt = dy + (int64_t)t * n;
        float *dxt = dx + (int64_t)t * n;
        float rt = r[t];
        /* y_i = x_i r w_i with r = (mean x^2 + eps)^-1/2, so dr/dx_i = -r^3 x_i / n */
        double c = 0.0;
        for (int i = 0; i < n; i++) c += (double)dyt[i] * w[i] * xt[i];
        float k = (float)(c * rt * rt * rt / n);
        for (int i = 0; i < n; i++) {
            dxt[i] += dyt[i] * w[i] * rt - k * xt[i];
            if (dw) dw[i] += dyt[i] * xt[i] * rt;
        }
    }
}

void bn_rope_table(float *cs, int T, int head_dim, float base) {
    for (int t = 0; t < T; t++) bn_rope_cache(cs + (int64_t)t * head_dim, t, head_dim, base);
}

void bn_rope_apply_seq(float *x, const float *cs, int T, int heads, int head_dim, int inverse) {
    int half = head_dim / 2;
    float sign = inverse ? -1.0f : 1.0f;
    for (int t = 0; t < T; t++) {
        const float *c = cs + (int64_t)t * half * 2;
        for (int h = 0; h < heads; h++) {
            float *v = x + ((int64_t)t * heads + h) * head_dim;
            for (int i = 0; i < half; i++) {
                float co = c[2 * i], si = sign * c[2 * i + 1];
                float a = v[2 * i], b = v[2 * i + 1];
                v[2 * i] = a * co - b * si;
                v[2 * i + 1] = a * si + b * co;
            }
        }
    }
}

/* One KV head's keys or values transposed, [hd][T]: the loops over positions then run over
 * contiguous memory, which is what vectorizes when heads are narrow (the teacher's are 8 wide). */
static void transpose_head(float *dst, const float *src, int T, int width, int offset, int hd) {
    for (int t = 0; t < T; t++) {
        for (int d = 0; d < hd; d++) dst[(int64_t)d * T + t] = src[(int64_t)t * width + offset + d];
    }
}

BN_HOT void bn_attention_fwd(float *out, float *probs, const float *q, const float *k, const float *v,
                             int T, int heads, int kv_heads, int hd, float *scratch) {
    const float scale = 1.0f / sqrtf((float)hd);
    const int group = heads / kv_heads;
    const int qw = heads * hd, kw = kv_heads * hd;
    float *kt = scratch, *vt = scratch + (int64_t)T * hd;
    for (int g = 0; g < kv_heads; g++) {
        transpose_head(kt, k, T, kw, g * hd, hd);
        transpose_head(vt, v, T, kw, g * hd, hd);
        for (int h = g * group; h < (g + 1) * group; h++) {
            for (int t = 0; t < T; t++) {
                float *p = probs + ((int64_t)h * T + t) * T;
                const float *qt = q + (int64_t)t * qw + h * hd;
                const int n = t + 1;
                memset(p, 0, sizeof(float) * T);
                for (int d = 0; d < hd; d++) axpy(p, qt[d] * scale, kt + (int64_t)d * T, n);
                float max = p[0];
                for (int j = 1; j < n; j++) max = p[j] > max ? p[j] : max;
                float sum = 0.0f;
                for (int j = 0; j < n; j++) {
                    p[j] = expf(p[j] - max);
                    sum += p[j];
                }
                const float inv = 1.0f / sum;
                for (int j = 0; j < n; j++) p[j] *= inv;
                float *ot = out + (int64_t)t * qw + h * hd;
                for (int d = 0; d < hd; d++) ot[d] = dot(p, vt + (int64_t)d * T, n);
            }
        }
    }
}

BN_HOT void bn_attention_bwd(float *dq, float *dk, float *dv, const float *dout, const float *probs,
                             const float *q, const float *k, const float *v, int T, int heads, int kv_heads, int hd,
                             float *scratch) {
    const float scale = 1.0f / sqrtf((float)hd);
    const int group = heads / kv_heads;
    const int qw = heads * hd, kw = kv_heads * hd;
    const int64_t th = (int64_t)T * hd;
    float *kt = scratch, *vt = scratch + th, *dkt = scratch + 2 * th, *dvt = scratch + 3 * th, *ds = scratch + 4 * th;
    for (int g = 0; g < kv_heads; g++) {
        transpose_head(kt, k, T, kw, g * hd, hd);
        transpose_head(vt, v, T, kw, g * hd, hd);
        memset(dkt, 0, sizeof(float) * 2 * th);
        for (int h = g * group; h < (g + 1) * group; h++) {
            for (int t = 0; t < T; t++) {
                const float *p = probs + ((int64_t)h * T + t) * T;
                const float *do_t = dout + (int64_t)t * qw + h * hd;
                const float *qt = q + (int64_t)t * qw + h * hd;
                const int n = t + 1;
                /* dp[j] = dout . v[j], into ds; dv[j] += p[j] dout */
                memset(ds, 0, sizeof(float) * n);
                for (int d = 0; d < hd; d++) {
                    axpy(ds, do_t[d], vt + (int64_t)d * T, n);
                    axpy(dvt + (int64_t)d * T, do_t[d], p, n);
                }
                float sum = 0.0f;
                for (int j = 0; j < n; j++) sum += p[j] * ds[j];
                /* through the softmax: ds[j] = p[j] (dp[j] - sum p dp) */
                for (int j = 0; j < n; j++) ds[j] = p[j] * (ds[j] - sum) * scale;
                float *dqt = dq + (int64_t)t * qw + h * hd;
                for (int d = 0; d < hd; d++) {
                    dqt[d] += dot(ds, kt + (int64_t)d * T, n);
                    axpy(dkt + (int64_t)d * T, qt[d], ds, n);
                }
            }
        }
        for (int t = 0; t < T; t++) {
            for (int d = 0; d < hd; d++) {
                dk[(int64_t)t * kw + g * hd + d] += dkt[(int64_t)d * T + t];
                dv[(int64_t)t * kw + g * hd + d] += dvt[(int64_t)d * T + t];
            }
        }
    }
}

static inline float sigmoidf(float x) { return 1.0f / (1.0f + expf(-x)); }

void bn_swiglu_fwd(float *h, const float *g, const float *u, int64_t n) {
    for (int64_t i = 0; i < n; i++) h[i] = g[i] * sigmoidf(g[i]) * u[i];
}

void bn_swiglu_bwd(float *dg, float *du, const float *dh, const float *g, const float *u, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        float s = sigmoidf(g[i]);
        du[i] += dh[i] * g[i] * s;
        dg[i] += dh[i] * u[i] * s * (1.0f + g[i] * (1.0f - s));
    }
}

/* log-sum-exp of z[V] and z's max, in double for the sum. */
static double log_sum_exp(const float *z, int V) {
    float max = z[0];
    for (int i = 1; i < V; i++) max = z[i] > max ? z[i] : max;
    double s = 0.0;
    for (int i = 0; i < V; i++) s += exp((double)z[i] - max);
    return max + log(s);
}

double bn_distill_loss(float *dz, const float *z, const float *teacher_logits, int target, int V,
                       float kl_weight, float ce_weight, float scale, double *kl) {
    double lse = log_sum_exp(z, V);
    double tlse = teacher_logits ? log_sum_exp(teacher_logits, V) : 0.0;
    double kl_sum = 0.0;
    for (int i = 0; i < V; i++) {
        double ls = z[i] - lse;
        double ps = exp(ls);
        double g = ce_weight * (ps - (i == target));
        if (teacher_logits) {
            double lt = teacher_logits[i] - tlse, pt = exp(lt);
            kl_sum += pt * (lt - ls);
            g += kl_weight * (ps - pt);
        }
        dz[i] = (float)(g * scale);
    }
    if (kl) *kl = kl_sum;
    return lse - z[target];
}

void bn_sign_quantize(float *dst, const float *src, int64_t rows, int64_t n) {
    for (int64_t b = 0; b < rows * n / 128; b++) {
        const float *s = src + b * 128;
        float *d = dst + b * 128;
        /* the sum in this order and the fp16 rounding are q1_0_from_float's, so the exported
         * file holds exactly the weights the training pass used */
        float sum = 0.0f;
        for (int j = 0; j < 128; j++) sum += fabsf(s[j]);
        float scale = bn_fp16_to_fp32(bn_fp32_to_fp16(sum / 128));
        for (int j = 0; j < 128; j++) d[j] = s[j] >= 0.0f ? scale : -scale;
    }
}
