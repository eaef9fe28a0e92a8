"""Tables for element-wise int8 functions (GELU on a microcontroller) and 4-bit embedding rows."""

from __future__ import annotations

import numpy as np
import pytest

from edgebert.errors import InputError
from edgebert.graph.quantize import dequantize_rows_4bit, quantize_rows_4bit, unpack_rows_4bit
from firmware_export import lut


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_the_gelu_table_is_gelu_within_half_an_output_step(approximate: str) -> None:
    in_scale, in_zp, out_scale, out_zp = 6.0 / 255, -20, 5.0 / 255, -100
    table = lut.table(lambda x: lut.gelu(x, approximate), in_scale, in_zp, out_scale, out_zp)
    q = np.random.default_rng(0).integers(-128, 128, 5000)
    got = (lut.apply(q, table).astype(np.float64) - out_zp) * out_scale
    real = lut.gelu((q - in_zp) * in_scale, approximate)
    inside = (real / out_scale + out_zp >= -128) & (real / out_scale + out_zp <= 127)
    assert np.abs(got - real)[inside].max() <= out_scale / 2 + 1e-12  # rounding only, where no clamp
    assert inside.mean() > 0.9
    assert lut.apply(np.array([in_zp]), table)[0] == out_zp  # GELU(0) = 0 lands on the zero point
    with pytest.raises(InputError, match="256 entries"):
        lut.apply(q, table[:10])
    with pytest.raises(InputError, match="positive finite scales"):
        lut.table(np.tanh, 0.0, 0, 1.0, 0)


def test_four_bit_rows_round_trip_their_codes_and_beat_absmax_scaling() -> None:
    rng = np.random.default_rng(1)
    for cols in (7, 8, 128):
        table = rng.normal(0, 0.3, (50, cols)).astype(np.float32)
        packed, scales = quantize_rows_4bit(table)
        assert packed.shape == (50, (cols + 1) // 2) and packed.dtype == np.uint8
        codes = unpack_rows_4bit(packed, cols)
        assert codes.min() >= -8 and codes.max() <= 7 and (codes == -8).any() and (codes == 7).any()
        back = dequantize_rows_4bit(packed, scales, cols)
        inside = (table >= -8.5 * scales[:, None]) & (table <= 7.5 * scales[:, None])  # not clipped: half a step
        assert np.all(np.abs(back - table)[inside] <= scales[:, None].repeat(cols, 1)[inside] / 2 + 1e-7)
        plain = np.abs(table).max(1, keepdims=True) / 7  # absmax scaling, the ratio-1 candidate
        plain_err = ((np.clip(np.rint(table / plain), -8, 7) * plain - table) ** 2).sum(1)
        assert np.all(((back - table) ** 2).sum(1) <= plain_err + 1e-9)
        if cols == 128:
            assert ((back - table) ** 2).sum() < 0.9 * plain_err.sum()  # a Gaussian row gains from clipping
    assert unpack_rows_4bit(np.array([[0x9F]], np.uint8), 2).tolist() == [[-1, -7]]  # low nibble first, signed
    with pytest.raises(InputError, match="expected"):
        unpack_rows_4bit(np.zeros((2, 3), np.uint8), 2)
