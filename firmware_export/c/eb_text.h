/* eb_text.h - integer-only transformer kernels of the edgebert firmware export (C99, header-only).
 *
 * The same integer operations, in the same order, as firmware_export/intops.py and encoder.py:
 * LayerNorm with an integer mean, variance and square root; softmax from two 256-entry Q15
 * exponential tables to int8 probabilities (scale 1/256, zero point -128); output projections
 * that write the int32 residual stream and add the residual there. No floats, no libm, no malloc.
 * Signed right shifts are arithmetic (GCC and Clang on every target edgebert supports).
 * Part of edgebert (Apache-2.0).
 */
#ifndef EB_TEXT_H
#define EB_TEXT_H

#include <stdint.h>
#include "eb_kernels.h"

#define EB_EXP_LIMIT ((int64_t)16 << 12)
#define EB_RESIDUAL_LIMIT (((int64_t)1 << 24) - 1)
#define EB_LN_FRAC 16

/* exp(-k / 16) and exp(-k / 4096) in Q15, k = 0..255 */
static const uint16_t eb_exp_hi[256] = {
    32768, 30783, 28918, 27166, 25520, 23974, 22521, 21157, 19875, 18671, 17539, 16477,
    15479, 14541, 13660, 12832, 12055, 11324, 10638, 9994, 9388, 8819, 8285, 7783,
    7312, 6869, 6452, 6061, 5694, 5349, 5025, 4721, 4435, 4166, 3914, 3676,
    3454, 3244, 3048, 2863, 2690, 2527, 2374, 2230, 2095, 1968, 1849, 1737,
    1631, 1533, 1440, 1352, 1271, 1194, 1121, 1053, 990, 930, 873, 820,
    771, 724, 680, 639, 600, 564, 530, 498, 467, 439, 412, 387,
    364, 342, 321, 302, 283, 266, 250, 235, 221, 207, 195, 183,
    172, 162, 152, 143, 134, 126, 118, 111, 104, 98, 92, 86,
    81, 76, 72, 67, 63, 59, 56, 52, 49, 46, 43, 41,
    38, 36, 34, 32, 30, 28, 26, 25, 23, 22, 21, 19,
    18, 17, 16, 15, 14, 13, 12, 12, 11, 10, 10, 9,
    9, 8, 8, 7, 7, 6, 6, 6, 5, 5, 5, 4,
    4, 4, 4, 3, 3, 3, 3, 3, 2, 2, 2, 2,
    2, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0
};
static const uint16_t eb_exp_lo[256] = {
    32768, 32760, 32752, 32744, 32736, 32728, 32720, 32712, 32704, 32696, 32688, 32680,
    32672, 32664, 32656, 32648, 32640, 32632, 32624, 32616, 32608, 32600, 32592, 32585,
    32577, 32569, 32561, 32553, 32545, 32537, 32529, 32521, 32513, 32505, 32497, 32489,
    32481, 32473, 32465, 32457, 32450, 32442, 32434, 32426, 32418, 32410, 32402, 32394,
    32386, 32378, 32370, 32363, 32355, 32347, 32339, 32331, 32323, 32315, 32307, 32299,
    32291, 32284, 32276, 32268, 32260, 32252, 32244, 32236, 32228, 32221, 32213, 32205,
    32197, 32189, 32181, 32173, 32166, 32158, 32150, 32142, 32134, 32126, 32119, 32111,
    32103, 32095, 32087, 32079, 32072, 32064, 32056, 32048, 32040, 32032, 32025, 32017,
    32009, 32001, 31993, 31985, 31978, 31970, 31962, 31954, 31946, 31939, 31931, 31923,
    31915, 31908, 31900, 31892, 31884, 31876, 31869, 31861, 31853, 31845, 31837, 31830,
    31822, 31814, 31806, 31799, 31791, 31783, 31775, 31768, 31760, 31752, 31744, 31737,
    31729, 31721, 31713, 31706, 31698, 31690, 31682, 31675, 31667, 31659, 31651, 31644,
    31636, 31628, 31621, 31613, 31605, 31597, 31590, 31582, 31574, 31567, 31559, 31551,
    31543, 31536, 31528, 31520, 31513, 31505, 31497, 31490, 31482, 31474, 31467, 31459,
    31451, 31444, 31436, 31428, 31420, 31413, 31405, 31397, 31390, 31382, 31374, 31367,
    31359, 31352, 31344, 31336, 31329, 31321, 31313, 31306, 31298, 31290, 31283, 31275,
    31267, 31260, 31252, 31245, 31237, 31229, 31222, 31214, 31206, 31199, 31191, 31184,
    31176, 31168, 31161, 31153, 31146, 31138, 31130, 31123, 31115, 31108, 31100, 31092,
    31085, 31077, 31070, 31062, 31054, 31047, 31039, 31032, 31024, 31017, 31009, 31001,
    30994, 30986, 30979, 30971, 30964, 30956, 30948, 30941, 30933, 30926, 30918, 30911,
    30903, 30896, 30888, 30881, 30873, 30865, 30858, 30850, 30843, 30835, 30828, 30820,
    30813, 30805, 30798, 30790
};

/* n / d rounded half away from zero, d > 0 */
static inline int64_t eb_rdiv64(int64_t n, int64_t d) {
    const int64_t q = ((n < 0 ? -n : n) + d / 2) / d;
    return n < 0 ? -q : q;
}

/* floor(sqrt(v)), bit by bit */
static inline int64_t eb_isqrt64(uint64_t v) {
    uint64_t r = 0, bit = (uint64_t)1 << 62;
    while (bit > v) {
        bit >>= 2;
    }
    while (bit != 0) {
        if (v >= r + bit) {
            v -= r + bit;
            r = (r >> 1) + bit;
        } else {
            r >>= 1;
        }
        bit >>= 2;
    }
    return (int64_t)r;
}

/* x * m * 2**(shift - 31) rounded half up, in one 64-bit product (1 <= 31 - shift <= 62) */
static inline int64_t eb_scale_round(int32_t x, int32_t m, int shift) {
    const int r = 31 - shift;
    return ((int64_t)x * m + ((int64_t)1 << (r - 1))) >> r;
}

static inline int32_t eb_exp_q15(int64_t x) {
    if (x >= EB_EXP_LIMIT) {
        return 0;
    }
    return (int32_t)(((int32_t)eb_exp_hi[x >> 8] * (int32_t)eb_exp_lo[x & 255] + (1 << 14)) >> 15);
}

/* int8 probabilities of n int32 scores; e: n int32 of scratch */
static inline void eb_softmax_row(const int32_t *s, int n, int32_t m, int shift, int32_t *e, int8_t *p) {
    int32_t top = s[0], total = 0;
    int j;
    for (j = 1; j < n; ++j) {
        top = s[j] > top ? s[j] : top;
    }
    for (j = 0; j < n; ++j) {
        e[j] = eb_exp_q15(eb_scale_round(top - s[j], m, shift));
        total += e[j];
    }
    for (j = 0; j < n; ++j) {
        const int32_t q = (int32_t)eb_rdiv64((int64_t)e[j] << 8, total) - 128;
        p[j] = (int8_t)(q > 127 ? 127 : q);
    }
}

/* The integer mean and std (at least 1) of one int32 row, as both LayerNorms compute them */
static inline void eb_ln_stats(const int32_t *x, int n, int32_t eps, int64_t *mean, int64_t *std) {
    int64_t sum = 0, sq = 0;
    int i;
    for (i = 0; i < n; ++i) {
        sum += x[i];
    }
    *mean = eb_rdiv64(sum, n);
    for (i = 0; i < n; ++i) {
        const int64_t d = x[i] - *mean;
        sq += d * d;
    }
    *std = eb_isqrt64((uint64_t)(sq / n + eps));
    *std = *std < 1 ? 1 : *std;
}

/* LayerNorm of one int32 row to int8: zp + rdiv(d * g + b * std, std << EB_LN_FRAC) */
static inline void eb_layernorm_row(const int32_t *x, int n, const int32_t *g, const int32_t *b, int32_t eps,
                                    int32_t zp, int8_t *out) {
    int64_t mean, std, den;
    int i;
    eb_ln_stats(x, n, eps, &mean, &std);
    den = std << EB_LN_FRAC;
    for (i = 0; i < n; ++i) {
        const int64_t y = eb_rdiv64((x[i] - mean) * g[i] + (int64_t)b[i] * std, den) + zp;
        out[i] = (int8_t)(y < -128 ? -128 : (y > 127 ? 127 : y));
    }
}

/* eb_layernorm_row's output at 256 times its resolution, unclipped, without the zero point: int32
 * codes of s_out / 256 (a CLS state: one token's int8 codes are not averaged away) */
static inline void eb_layernorm_fine_row(const int32_t *x, int n, const int32_t *g, const int32_t *b, int32_t eps,
                                         int32_t *out) {
    int64_t mean, std, den;
    int i;
    eb_ln_stats(x, n, eps, &mean, &std);
    den = std << EB_LN_FRAC;
    for (i = 0; i < n; ++i) {
        out[i] = (int32_t)eb_rdiv64(((x[i] - mean) * g[i] + (int64_t)b[i] * std) * 256, den);
    }
}

/* out[c] = clamp(scale_round(bias[c] + sum_k x[k] w[c][k]) + (h[c] - h_zp) * hmul[c]): an output
 * projection written into the int32 residual stream, its residual added (bias has the input
 * zero point folded in, as in eb_fully_connected) */
static inline void eb_fc_residual(const int8_t *x, int n_in, const int8_t *w, const int32_t *bias,
                                  const int32_t *mult, const int8_t *shift, int n_out, const int8_t *h,
                                  int32_t h_zp, const int32_t *hmul, int32_t *out) {
    int c, k;
    for (c = 0; c < n_out; ++c) {
        const int8_t *row = w + (long)c * n_in;
        int32_t acc = bias[c];
        int64_t y;
        for (k = 0; k + 3 < n_in; k += 4) {
            acc += (int32_t)x[k] * row[k] + (int32_t)x[k + 1] * row[k + 1]
                 + (int32_t)x[k + 2] * row[k + 2] + (int32_t)x[k + 3] * row[k + 3];
        }
        for (; k < n_in; ++k) {
            acc += (int32_t)x[k] * row[k];
        }
        y = eb_scale_round(acc, mult[c], shift[c]) + (int64_t)(h[c] - h_zp) * hmul[c];
        out[c] = (int32_t)(y < -EB_RESIDUAL_LIMIT ? -EB_RESIDUAL_LIMIT : (y > EB_RESIDUAL_LIMIT ? EB_RESIDUAL_LIMIT : y));
    }
}

/* Multi-head attention over n tokens of int8 Q, K, V rows (width = heads * hd); scores: n int32,
 * probs: n int8 of scratch; ctx: n rows of int8 context */
static inline void eb_attention(const int8_t *q, const int8_t *k, const int8_t *v, int n, int width, int heads,
                                int32_t zq, int32_t zk, int32_t zv, int32_t sm_m, int sm_shift, int32_t ctx_m,
                                int ctx_shift, int32_t ctx_zp, int32_t *scores, int8_t *probs, int8_t *ctx) {
    const int hd = width / heads;
    int a, i, j, d;
    for (a = 0; a < heads; ++a) {
        for (i = 0; i < n; ++i) {
            const int8_t *qi = q + (long)i * width + a * hd;
            for (j = 0; j < n; ++j) {
                const int8_t *kj = k + (long)j * width + a * hd;
                int32_t acc = 0;
                for (d = 0; d < hd; ++d) {
                    acc += ((int32_t)qi[d] - zq) * ((int32_t)kj[d] - zk);
                }
                scores[j] = acc;
            }
            eb_softmax_row(scores, n, sm_m, sm_shift, scores, probs);
            for (d = 0; d < hd; ++d) {
                int32_t acc = 0, y;
                for (j = 0; j < n; ++j) {
                    acc += ((int32_t)probs[j] + 128) * ((int32_t)v[(long)j * width + a * hd + d] - zv);
                }
                y = eb_requantize(acc, ctx_m, ctx_shift) + ctx_zp;
                ctx[(long)i * width + a * hd + d] = (int8_t)(y < -128 ? -128 : (y > 127 ? 127 : y));
            }
        }
    }
}

/* int8 codes through a 256-entry table, in place */
static inline void eb_lut(int8_t *x, long n, const int8_t *table) {
    long i;
    for (i = 0; i < n; ++i) {
        x[i] = table[(int32_t)x[i] + 128];
    }
}

#endif /* EB_TEXT_H */
