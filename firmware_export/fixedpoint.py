"""Integer-only requantization as TFLite Micro's reference kernels compute it (gemmlowp), in numpy.

An int8 layer's int32 accumulator is brought back to int8 by a real multiplier
``M = s_in * s_w / s_out`` held as a 32-bit fixed-point mantissa and a power-of-two exponent
(``quantize_multiplier``), applied with a saturating rounding doubling high multiply and a
rounding right shift (``multiply_by_quantized_multiplier``): the "double rounding" form of
TFLite's ``MultiplyByQuantizedMultiplier`` (Jacob et al., CVPR 2018; gemmlowp's
``fixedpoint.h``). The exported C kernels do the same operations, so the numpy reference, TFLM
and the C build agree bit for bit. Pure functions; int64 numpy arithmetic throughout.
"""

from __future__ import annotations

import math

import numpy as np

from edgebert.errors import InputError

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


def quantize_multiplier(real: float) -> tuple[int, int]:
    """TFLite's ``QuantizeMultiplier``: (m, shift) with ``real ~= m * 2**(shift - 31)``, m in
    [2**30, 2**31) (m = 0 for real = 0, or when real is too small to matter)."""
    if not math.isfinite(real) or real < 0:
        raise InputError(f"multiplier: expected a finite non-negative real, found {real!r}")
    if real == 0.0:
        return 0, 0
    q, shift = math.frexp(real)  # real = q * 2**shift, q in [0.5, 1)
    q_fixed = math.floor(q * (1 << 31) + 0.5)  # TfLiteRound: half away from zero (q > 0)
    if q_fixed == 1 << 31:
        q_fixed //= 2
        shift += 1
    if shift < -31:  # every bit would be shifted out
        return 0, 0
    return int(q_fixed), int(shift)


def saturating_rounding_doubling_high_mul(a: np.ndarray, b: int) -> np.ndarray:
    """gemmlowp ``SaturatingRoundingDoublingHighMul``: round(a * b / 2**31), saturating the one
    overflow case (a = b = INT32_MIN); ``a`` int32 values (as int64), ``b`` one int32."""
    a = np.asarray(a, np.int64)
    ab = a * np.int64(b)
    nudge = np.where(ab >= 0, np.int64(1 << 30), np.int64(1 - (1 << 30)))
    total = ab + nudge
    out = np.where(total >= 0, total // (1 << 31), -((-total) // (1 << 31)))  # C division truncates toward 0
    return np.where((a == INT32_MIN) & (b == INT32_MIN), np.int64(INT32_MAX), out)


def rounding_divide_by_pot(x: np.ndarray, exponent: int) -> np.ndarray:
    """gemmlowp ``RoundingDivideByPOT``: x / 2**exponent rounded half away from zero."""
    if not 0 <= exponent <= 31:
        raise InputError(f"exponent: expected 0..31, found {exponent}")
    x = np.asarray(x, np.int64)
    mask = np.int64((1 << exponent) - 1)
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0).astype(np.int64)
    return (x >> exponent) + (remainder > threshold).astype(np.int64)


def multiply_by_quantized_multiplier(x: np.ndarray, multiplier: int, shift: int) -> np.ndarray:
    """TFLite's ``MultiplyByQuantizedMultiplier`` (double rounding): x * m * 2**(shift - 31)."""
    left, right = max(shift, 0), max(-shift, 0)
    scaled = np.asarray(x, np.int64) * np.int64(1 << left)
    scaled = np.clip(scaled, INT32_MIN, INT32_MAX)  # the int32 multiply of the C code cannot exceed this
    return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(scaled, multiplier), right)


def requantize(acc: np.ndarray, multipliers: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """``multiply_by_quantized_multiplier`` with one (multiplier, shift) per channel along the last
    axis (or one for all), vectorized; multipliers are non-negative (``quantize_multiplier``)."""
    acc = np.asarray(acc, np.int64)
    shifts = np.asarray(shifts, np.int64)
    m = np.asarray(multipliers, np.int64)
    left, right = np.maximum(shifts, 0), np.maximum(-shifts, 0)
    scaled = np.clip(acc << left, INT32_MIN, INT32_MAX)
    ab = scaled * m
    total = ab + np.where(ab >= 0, np.int64(1 << 30), np.int64(1 - (1 << 30)))
    high = np.where(total >= 0, total >> 31, -((-total) >> 31))  # C division truncates toward zero
    mask = (np.int64(1) << right) - 1
    threshold = (mask >> 1) + (high < 0)
    return (high >> right) + ((high & mask) > threshold)


def fully_connected_int8(x: np.ndarray, x_zero_point: int, w: np.ndarray, bias: np.ndarray | None,
                         multipliers: list[int], shifts: list[int], out_zero_point: int,
                         act_min: int = -128, act_max: int = 127) -> np.ndarray:
    """TFLM's per-channel int8 FULLY_CONNECTED: x (batch, in) int8, w (out, in) int8 (zero point 0),
    int32 bias; output channel c requantized with (multipliers[c], shifts[c]), then clamped to the
    activation range (a fused ReLU sets ``act_min`` to the output zero point). Returns int8."""
    acc = (np.asarray(x, np.int64) - np.int64(x_zero_point)) @ np.asarray(w, np.int64).T  # (batch, out)
    if bias is not None:
        acc = acc + np.asarray(bias, np.int64)
    if acc.size and (acc.min() < INT32_MIN or acc.max() > INT32_MAX):
        raise InputError("fully_connected: expected int32 accumulators, found a sum beyond int32")
    if len(multipliers) != acc.shape[1] or len(shifts) != acc.shape[1]:
        raise InputError(f"fully_connected: expected {acc.shape[1]} multipliers and shifts, found "
                         f"{len(multipliers)} and {len(shifts)}")
    out = requantize(acc, np.asarray(multipliers, np.int64), np.asarray(shifts, np.int64))
    return np.clip(out + np.int64(out_zero_point), act_min, act_max).astype(np.int8)


__all__ = ["fully_connected_int8", "multiply_by_quantized_multiplier", "quantize_multiplier", "requantize",
           "rounding_divide_by_pot", "saturating_rounding_doubling_high_mul"]
