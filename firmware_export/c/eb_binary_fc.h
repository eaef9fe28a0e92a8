/* eb_binary_fc.h - the W1A8 FULLY_CONNECTED layer of edgebert's binarized firmware (C99, header only).
 *
 * int8 codes x (zero point in_zp) times packed 1-bit weights (eb_binary.h's lookup-table core on
 * the same codes as uint8: x + 128, in_zp + 128), then in int32:
 *   a[o] = (acc[o] << frac) + centre[o] * T + bias[o],  out[o] = clamp(requant(a[o]) + out_zp)
 * firmware_export/program_binary.py is the reference this matches bit for bit; the exporter proves
 * that no int8 input takes a[o] beyond int32. ``shared`` 1: centre, mult and shift hold one value
 * for every row (a per-matrix scale, a TinyML net's), 0: one per row. No malloc; the caller owns
 * the scratch buffers:
 * u (n_in bytes), table (16 * ((n_in + 3) / 4) int16), acc (n_out int32).
 * Part of edgebert (Apache-2.0).
 */
#ifndef EB_BINARY_FC_H
#define EB_BINARY_FC_H

#include <stdint.h>

#include "eb_binary.h"
#include "eb_kernels.h"

static inline void eb_binary_fc(const int8_t *x, int n_in, int32_t in_zp, const uint8_t *bits, int n_out,
                                const int32_t *centre, const int32_t *bias, const int32_t *mult,
                                const int8_t *shift, int shared, int frac, int32_t out_zp, int32_t act_min,
                                int32_t act_max, uint8_t *u, int16_t *table, int32_t *acc, int8_t *out) {
    int i, o;
    int32_t total;
    for (i = 0; i < n_in; ++i) { u[i] = (uint8_t)((int32_t)x[i] + 128); }
    total = eb_w1a8_token(u, n_in, in_zp + 128, bits, n_out, table, acc);
    for (o = 0; o < n_out; ++o) {
        const int k = shared ? 0 : o;
        int32_t a = (int32_t)((uint32_t)acc[o] << frac) + centre[k] * total + bias[o];
        a = eb_requantize(a, mult[k], shift[k]) + out_zp;
        out[o] = (int8_t)(a < act_min ? act_min : (a > act_max ? act_max : a));
    }
}

#endif /* EB_BINARY_FC_H */
