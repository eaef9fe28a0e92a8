/* eb_binary.h - 1-bit weight kernels of edgebert's binarized artifacts (C99, header only).
 *
 * Packed signs: bit (i % 8) of byte (i / 8) is input i, 1 means +1; each row is padded with zero
 * bits to whole bytes (edgebert/graph/binarize.py is the numpy oracle these match bit for bit).
 *
 * W1A8: uint8 activation codes x (zero point zp) times 1-bit weights. For each token the
 * kernel first tabulates, for every group of 4 inputs, the 16 sums of (x - zp) over the inputs a
 * nibble of weight bits selects (a lookup-table GEMM: one table per token, 4 KB for 512 inputs);
 * each output is then n/4 table reads instead of n multiply-adds. acc = 2 P - T, where P sums
 * (x - zp) over the +1 inputs and T over all inputs (the second output).
 *
 * W1A1: packed activation signs times packed weight signs: n - 2 popcount(a XOR w), 64 bits at a
 * time (GCC/Clang's popcount builtin when available, a portable bit count otherwise).
 */
#ifndef EB_BINARY_H
#define EB_BINARY_H

#include <stdint.h>
#include <string.h>

#define EB_ROW_BYTES(n) (((n) + 7) / 8)

/* Signs of uint8 codes: +1 (bit 1) where the real value (x - zp) is >= 0. */
static inline void eb_pack_signs_u8(const uint8_t *x, int n, int32_t zp, uint8_t *bits) {
    int i;
    memset(bits, 0, (size_t)EB_ROW_BYTES(n));
    for (i = 0; i < n; ++i) {
        if ((int32_t)x[i] >= zp) { bits[i >> 3] |= (uint8_t)(1u << (i & 7)); }
    }
}

/* Signs of float activations: +1 where x >= 0; returns their mean absolute value (the scale). */
static inline float eb_pack_signs_f32(const float *x, int n, uint8_t *bits) {
    int i;
    float total = 0.0f;
    memset(bits, 0, (size_t)EB_ROW_BYTES(n));
    for (i = 0; i < n; ++i) {
        if (x[i] >= 0.0f) { bits[i >> 3] |= (uint8_t)(1u << (i & 7)); total += x[i]; } else { total -= x[i]; }
    }
    return n > 0 ? total / (float)n : 0.0f;
}

/* W1A8 for one token: x (n codes), bits (n_out rows of EB_ROW_BYTES(n)), table scratch of
 * 16 * ((n + 3) / 4) int16; writes acc[o] = sum_i sign_oi (x_i - zp) and returns T. */
static inline int32_t eb_w1a8_token(const uint8_t *x, int n, int32_t zp, const uint8_t *bits, int n_out,
                             int16_t *table, int32_t *acc) {
    const int groups = (n + 3) / 4, rb = EB_ROW_BYTES(n);
    int g, o;
    int32_t total = 0;
    for (g = 0; g < groups; ++g) {
        int16_t d[4];
        int k, m;
        for (k = 0; k < 4; ++k) {
            const int i = g * 4 + k;
            d[k] = (int16_t)(i < n ? (int32_t)x[i] - zp : 0);
            total += d[k];
        }
        for (m = 0; m < 16; ++m) {
            table[g * 16 + m] = (int16_t)(((m & 1) ? d[0] : 0) + ((m & 2) ? d[1] : 0) + ((m & 4) ? d[2] : 0)
                                          + ((m & 8) ? d[3] : 0));
        }
    }
    for (o = 0; o < n_out; ++o) {
        const uint8_t *row = bits + (long)o * rb;
        const int16_t *t = table;
        int32_t p = 0;
        int b;
        for (b = 0; b < rb; ++b, t += 32) {
            p += t[row[b] & 15];
            if (2 * b + 1 < groups) { p += t[16 + (row[b] >> 4)]; }
        }
        acc[o] = 2 * p - total;
    }
    return total;
}

static inline int eb_popcount64(uint64_t v) {
#if defined(__GNUC__) || defined(__clang__)
    return __builtin_popcountll(v);
#else
    int c = 0;
    while (v) { v &= v - 1; ++c; }
    return c;
#endif
}

/* W1A1 for one token: a (EB_ROW_BYTES(n) packed signs) against n_out packed weight rows:
 * acc[o] = n - 2 popcount(a XOR w_o). */
static inline void eb_w1a1_token(const uint8_t *a, int n, const uint8_t *bits, int n_out, int32_t *acc) {
    const int rb = EB_ROW_BYTES(n), words = rb / 8;
    int o;
    for (o = 0; o < n_out; ++o) {
        const uint8_t *row = bits + (long)o * rb;
        int diff = 0, w, b;
        for (w = 0; w < words; ++w) {
            uint64_t x, y;
            memcpy(&x, a + 8 * w, 8);
            memcpy(&y, row + 8 * w, 8);
            diff += eb_popcount64(x ^ y);
        }
        for (b = 8 * words; b < rb; ++b) { diff += eb_popcount64((uint64_t)(a[b] ^ row[b])); }
        acc[o] = n - 2 * diff;
    }
}

#endif /* EB_BINARY_H */
