/* eb_binary_api.c - the host library of a binarized artifact (libedgebert_binary.so): one call per
 * 1-bit linear over all its tokens, with eb_binary.h's kernels. Floating point only at the edges:
 * the input's quantization (W1A8) or signs and scale (W1A1), and the output's dequantization,
 * in the order edgebert/graph/reference.py computes them. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "eb_binary.h"

/* y[t][o] = x_scale * (scale[o] * acc + centre[o] * T) + bias[o] on uint8 codes of x (round half
 * to even, as numpy's rint, then + zp, clamped to 0..255). Returns 0, or -1 when out of memory. */
int eb_w1a8_linear(const float *x, int tokens, int n, float x_scale, int32_t zp, const uint8_t *bits,
                   const float *scale, const float *centre, const float *bias, int n_out, float *y) {
    uint8_t *q = (uint8_t *)malloc((size_t)n);
    int16_t *table = (int16_t *)malloc(sizeof(int16_t) * 16 * (size_t)((n + 3) / 4));
    int32_t *acc = (int32_t *)malloc(sizeof(int32_t) * (size_t)n_out);
    int t, i, o;
    if (q == NULL || table == NULL || acc == NULL) { free(q); free(table); free(acc); return -1; }
    for (t = 0; t < tokens; ++t) {
        const float *row = x + (long)t * n;
        float *out = y + (long)t * n_out;
        float total;
        for (i = 0; i < n; ++i) {
            float v = nearbyintf(row[i] / x_scale) + (float)zp;
            q[i] = (uint8_t)(v < 0.0f ? 0.0f : (v > 255.0f ? 255.0f : v));
        }
        total = (float)eb_w1a8_token(q, n, zp, bits, n_out, table, acc);
        for (o = 0; o < n_out; ++o) {
            out[o] = x_scale * (scale[o] * (float)acc[o] + centre[o] * total) + (bias != NULL ? bias[o] : 0.0f);
        }
    }
    free(q); free(table); free(acc);
    return 0;
}

/* W1A1: each token's signs and mean absolute value beta; y = beta * (scale * acc + centre * S) + bias,
 * S = the sum of the token's signs. Returns 0, or -1 when out of memory. */
int eb_w1a1_linear(const float *x, int tokens, int n, const uint8_t *bits, const float *scale,
                   const float *centre, const float *bias, int n_out, float *y) {
    uint8_t *a = (uint8_t *)malloc((size_t)EB_ROW_BYTES(n));
    int32_t *acc = (int32_t *)malloc(sizeof(int32_t) * (size_t)n_out);
    int t, b, o;
    if (a == NULL || acc == NULL) { free(a); free(acc); return -1; }
    for (t = 0; t < tokens; ++t) {
        float *out = y + (long)t * n_out;
        float beta = eb_pack_signs_f32(x + (long)t * n, n, a);
        int on = 0;
        for (b = 0; b < EB_ROW_BYTES(n); ++b) { on += eb_popcount64((uint64_t)a[b]); }
        eb_w1a1_token(a, n, bits, n_out, acc);
        for (o = 0; o < n_out; ++o) {
            out[o] = beta * (scale[o] * (float)acc[o] + centre[o] * (float)(2 * on - n))
                     + (bias != NULL ? bias[o] : 0.0f);
        }
    }
    free(a); free(acc);
    return 0;
}
