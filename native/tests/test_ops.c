/* The forward pass's F32 steps against ggml's formulas written out here: bn_rmsnorm_rows, which
 * sums several rows at once, gives each row the bits of ggml's RMSNorm (products in float, summed
 * in double in element order, mean rounded to float, x * scale, then * w) for 1 to 9 rows (whole
 * groups of four and the rest), in place and not, with and without a weight, on values from
 * 2^-30 to 2^30. */
#include "harness.h"
#include "model/ops.h"

static uint32_t rng = 12345u;

static float wide_value(void) {
    const float m = bn_test_rand_unit(&rng);
    const int e = (int)((bn_test_rand_unit(&rng) + 1.0f) * 30.0f) - 30; /* -30 .. 29 */
    return ldexpf(m, e);
}

/* ggml_compute_forward_rms_norm_f32 followed by ggml_mul with the weight. */
static void ggml_rmsnorm(float *y, const float *x, const float *w, int n, float eps) {
    double sum = 0.0;
    for (int i = 0; i < n; i++) sum += (double)(x[i] * x[i]);
    const float mean = (float)(sum / n);
    const float scale = 1.0f / sqrtf(mean + eps);
    for (int i = 0; i < n; i++) y[i] = x[i] * scale;
    if (w)
        for (int i = 0; i < n; i++) y[i] = y[i] * w[i];
}

static int rows_mismatch(int rows, int n, int in_place, int weighted) {
    float *x = malloc((size_t)rows * n * sizeof *x), *y = malloc((size_t)rows * n * sizeof *y);
    float *want = malloc((size_t)rows * n * sizeof *want), *w = malloc((size_t)n * sizeof *w);
    for (int i = 0; i < rows * n; i++) x[i] = wide_value();
    for (int i = 0; i < n; i++) w[i] = 1.0f + bn_test_rand_unit(&rng);
    const float eps = 1e-6f;
    for (int r = 0; r < rows; r++) ggml_rmsnorm(want + (size_t)r * n, x + (size_t)r * n, weighted ? w : NULL, n, eps);
    float *out = in_place ? x : y;
    bn_rmsnorm_rows(out, x, weighted ? w : NULL, rows, n, eps);
    int bad = memcmp(out, want, (size_t)rows * n * sizeof *out) != 0;
    free(x);
    free(y);
    free(want);
    free(w);
    return bad;
}

int main(void) {
    static const int widths[] = {7, 128, 2048};
    int cases = 0, bad = 0;
    for (int rows = 1; rows <= 9; rows++)
        for (size_t k = 0; k < sizeof widths / sizeof widths[0]; k++)
            for (int in_place = 0; in_place < 2; in_place++)
                for (int weighted = 0; weighted < 2; weighted++, cases++) {
                    const int b = rows_mismatch(rows, widths[k], in_place, weighted);
                    CHECK(!b, "bn_rmsnorm_rows: %d rows of %d (%s, %s) differ from ggml's RMSNorm", rows, widths[k],
                          in_place ? "in place" : "separate", weighted ? "weighted" : "no weight");
                    bad += b;
                }
    printf("  bn_rmsnorm_rows vs ggml's RMSNorm: %d cases, %s\n", cases, bad ? "FAIL" : "bit-exact");
    return bn_test_done("test_ops");
}
