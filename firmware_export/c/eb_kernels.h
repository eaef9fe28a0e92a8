/* eb_kernels.h - integer-only inference kernels of the edgebert firmware export (C99, header-only).
 *
 * The arithmetic is TensorFlow Lite Micro's reference arithmetic (gemmlowp fixed point, "double
 * rounding" requantization), so a model built from these kernels gives the same int8 outputs as
 * the same model's .tflite in TFLM. No malloc, no globals; the caller owns every buffer.
 * Part of edgebert (Apache-2.0).
 */
#ifndef EB_KERNELS_H
#define EB_KERNELS_H

#include <math.h>
#include <stdint.h>

/* round(a * b / 2**31), saturating the one overflow case (gemmlowp SaturatingRoundingDoublingHighMul). */
static inline int32_t eb_srdhm(int32_t a, int32_t b) {
    int64_t ab, nudge;
    if (a == INT32_MIN && b == INT32_MIN) {
        return INT32_MAX;
    }
    ab = (int64_t)a * (int64_t)b;
    nudge = ab >= 0 ? ((int64_t)1 << 30) : (1 - ((int64_t)1 << 30));
    return (int32_t)((ab + nudge) / ((int64_t)1 << 31)); /* C division truncates toward zero */
}

/* x / 2**e rounded half away from zero (gemmlowp RoundingDivideByPOT), 0 <= e <= 31. */
static inline int32_t eb_rdbpot(int32_t x, int e) {
    const int32_t mask = (int32_t)(((int64_t)1 << e) - 1);
    const int32_t remainder = x & mask;
    const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> e) + (remainder > threshold ? 1 : 0);
}

/* x * m * 2**(shift - 31) (TFLite MultiplyByQuantizedMultiplier); the left shift saturates to
 * int32 (the exporter checks that no accumulator can reach that). */
static inline int32_t eb_requantize(int32_t x, int32_t m, int shift) {
    const int left = shift > 0 ? shift : 0;
    const int right = shift > 0 ? 0 : -shift;
    int64_t scaled = (int64_t)x * ((int64_t)1 << left);
    if (scaled > INT32_MAX) {
        scaled = INT32_MAX;
    } else if (scaled < INT32_MIN) {
        scaled = INT32_MIN;
    }
    return eb_rdbpot(eb_srdhm((int32_t)scaled, m), right);
}

/* TFLite MUL (float) then QUANTIZE (float -> int8): clamp(roundf(x * mul / scale) + zp). */
static inline void eb_quantize_input(const float *x, const float *mul, float scale, int32_t zero_point,
                                     int8_t *out, int n) {
    int i;
    for (i = 0; i < n; ++i) {
        const float scaled = mul != 0 ? x[i] * mul[i] : x[i];
        int32_t q = (int32_t)roundf(scaled / scale) + zero_point;
        out[i] = (int8_t)(q < -128 ? -128 : (q > 127 ? 127 : q));
    }
}

/* Per-channel int8 FULLY_CONNECTED: out[c] = clamp(requant(sum_k x[k] * w[c][k] + bias[c]) + out_zp).
 * ``bias`` already holds b[c] - in_zp * sum_k w[c][k] (the input offset folded in at export,
 * as CMSIS-NN does), so the inner loop is a plain dot product. */
static inline void eb_fully_connected(const int8_t *x, int n_in, const int8_t *w, const int32_t *bias,
                                      const int32_t *mult, const int8_t *shift, int n_out, int32_t out_zp,
                                      int32_t act_min, int32_t act_max, int8_t *out) {
    int c, k;
    for (c = 0; c < n_out; ++c) {
        const int8_t *row = w + (long)c * n_in;
        int32_t acc = bias[c];
        for (k = 0; k + 3 < n_in; k += 4) {
            acc += (int32_t)x[k] * row[k] + (int32_t)x[k + 1] * row[k + 1]
                 + (int32_t)x[k + 2] * row[k + 2] + (int32_t)x[k + 3] * row[k + 3];
        }
        for (; k < n_in; ++k) {
            acc += (int32_t)x[k] * row[k];
        }
        acc = eb_requantize(acc, mult[c], shift[c]) + out_zp;
        out[c] = (int8_t)(acc < act_min ? act_min : (acc > act_max ? act_max : acc));
    }
}

#endif /* EB_KERNELS_H */
