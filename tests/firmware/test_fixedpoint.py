"""TFLM's integer requantization in numpy: each primitive against exact rational arithmetic."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from edgebert.errors import InputError
from firmware_export.fixedpoint import (
    INT32_MAX,
    INT32_MIN,
    fully_connected_int8,
    multiply_by_quantized_multiplier,
    quantize_multiplier,
    rounding_divide_by_pot,
    saturating_rounding_doubling_high_mul,
)


def test_quantize_multiplier_matches_tflite_on_known_values_and_reconstructs_any_real() -> None:
    assert quantize_multiplier(0.5) == (1 << 30, 0)
    assert quantize_multiplier(1.0) == (1 << 30, 1)
    assert quantize_multiplier(0.0) == (0, 0)
    assert quantize_multiplier(2.0 ** -40) == (0, 0)  # shifted out entirely
    rng = np.random.default_rng(0)
    for real in rng.uniform(1e-6, 8.0, 500):
        m, shift = quantize_multiplier(float(real))
        assert (1 << 30) <= m < (1 << 31)
        assert abs(m * 2.0 ** (shift - 31) - real) <= 2.0 ** (shift - 32)  # half an ulp of the 31-bit mantissa
    with pytest.raises(InputError, match="non-negative"):
        quantize_multiplier(-1.0)


def test_rounding_divide_by_pot_rounds_half_away_from_zero() -> None:
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.integers(INT32_MIN, INT32_MAX, 2000), [-6, -5, -3, 3, 5, 6, 0, INT32_MIN, INT32_MAX]])
    for exponent in (0, 1, 2, 7, 31):
        got = rounding_divide_by_pot(x, exponent)
        for xi, g in zip(x.tolist(), got.tolist(), strict=True):
            q = Fraction(xi, 2 ** exponent)
            want = math.floor(abs(q) + Fraction(1, 2)) * (1 if q >= 0 else -1)
            assert g == want, (xi, exponent)


def test_doubling_high_mul_rounds_half_up_and_saturates_the_one_overflow() -> None:
    rng = np.random.default_rng(2)
    a = rng.integers(INT32_MIN, INT32_MAX, 2000)
    for b in (INT32_MAX, 1 << 30, 1_518_500_250, -(1 << 30), 12345):
        got = saturating_rounding_doubling_high_mul(a, b)
        want = [math.floor(Fraction(int(ai) * b, 1 << 31) + Fraction(1, 2)) for ai in a]
        assert got.tolist() == want
    assert saturating_rounding_doubling_high_mul(np.array([INT32_MIN]), INT32_MIN).tolist() == [INT32_MAX]


def test_requantization_is_within_one_step_of_the_real_product() -> None:
    rng = np.random.default_rng(3)
    x = rng.integers(-(1 << 24), 1 << 24, 5000)
    for real in (0.000731, 0.0421, 0.5, 0.99999, 1.7, 3.3):
        m, shift = quantize_multiplier(real)
        got = multiply_by_quantized_multiplier(x, m, shift)
        exact = x * (m * 2.0 ** (shift - 31))
        assert np.abs(got - exact).max() <= 1.0  # double rounding: at most one step from the real product


def test_fully_connected_matches_the_float_layer_within_one_output_step() -> None:
    rng = np.random.default_rng(4)
    x_scale, x_zp, out_scale, out_zp = 0.02, -5, 0.05, -20
    w_scales = rng.uniform(0.001, 0.01, 10)
    w = rng.integers(-127, 128, (10, 32)).astype(np.int8)
    bias = rng.integers(-2000, 2000, 10).astype(np.int32)
    x = rng.integers(-128, 128, (200, 32)).astype(np.int8)
    mults = [quantize_multiplier(x_scale * s / out_scale) for s in w_scales]

    got = fully_connected_int8(x, x_zp, w, bias, [m for m, _ in mults], [s for _, s in mults], out_zp,
                               act_min=out_zp)  # fused ReLU

    real = ((x.astype(np.float64) - x_zp) * x_scale) @ (w.astype(np.float64) * w_scales[:, None]).T \
        + bias * x_scale * w_scales
    want = np.clip(np.rint(np.maximum(real, 0.0) / out_scale) + out_zp, -128, 127)
    assert got.dtype == np.int8 and np.abs(got.astype(np.int64) - want).max() <= 1
    assert (got >= out_zp).all()
