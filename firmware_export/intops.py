"""Integer-only transformer arithmetic for microcontrollers (pure numpy, int64 throughout).

The C kernels of ``c/eb_text.h`` do the same integer operations in the same order, so the
numpy reference (``encoder.run``) and the C build agree bit for bit:

- ``rdiv``: division rounded half away from zero (C: ``(|n| + d / 2) / d`` with the sign put back);
- ``isqrt``: floor of the square root of a non-negative integer (exact, no floats);
- ``scale_round``: ``x * m * 2**(shift - 31)`` rounded half up, in one 64-bit product (an int32
  result, for the residual stream, which never goes through int8);
- ``exp_q15``: ``exp(-x)`` for ``x >= 0`` in units of 2**-12, from two 256-entry Q15 tables
  (``exp(-hi / 16) * exp(-lo / 4096)``), so softmax needs neither floats nor a libm;
- ``softmax_row``: softmax of int32 scores to int8 probabilities with scale 1/256 and zero point
  -128 (TFLite's int8 softmax output quantization);
- ``layernorm``: LayerNorm of an int32 row with integer mean, variance and square root, and
  gamma, beta as fixed-point numbers with ``LN_FRAC`` fraction bits.
"""

from __future__ import annotations

import math

import numpy as np

from edgebert.errors import InputError

EXP_FRAC = 12            # softmax exponent fixed point: units of 2**-12
EXP_LIMIT = 16 << EXP_FRAC  # exp(-16) < 2**-23: below every Q15 step
LN_FRAC = 16             # fraction bits of LayerNorm's gamma / s_out and beta / s_out
PROB_ZERO_POINT = -128   # int8 probabilities: p = (q + 128) / 256
PROB_SCALE = 1.0 / 256.0
RESIDUAL_LIMIT = (1 << 24) - 1  # |residual stream| in its int32 units: LayerNorm's sums stay in int64

EXP_HI = np.array([round(math.exp(-k / 16.0) * 32768.0) for k in range(256)], np.int64)
EXP_LO = np.array([round(math.exp(-k / 4096.0) * 32768.0) for k in range(256)], np.int64)


def rdiv(n: np.ndarray, d: np.ndarray | int) -> np.ndarray:
    """n / d rounded half away from zero, for d > 0 (int64)."""
    n = np.asarray(n, np.int64)
    d = np.asarray(d, np.int64)
    q = (np.abs(n) + d // 2) // d
    return np.where(n < 0, -q, q)


def isqrt(v: np.ndarray) -> np.ndarray:
    """floor(sqrt(v)) of non-negative int64 values below 2**62, exactly."""
    v = np.asarray(v, np.int64)
    if (v < 0).any() or (v >= (1 << 62)).any():
        raise InputError("isqrt: expected integers in [0, 2**62), found others")
    r = np.floor(np.sqrt(v.astype(np.float64))).astype(np.int64)
    for _ in range(2):  # the float estimate is off by at most one either way
        r = np.where(r * r > v, r - 1, r)
        r = np.where((r + 1) * (r + 1) <= v, r + 1, r)
    return r


def scale_round(x: np.ndarray, multiplier: np.ndarray | int, shift: np.ndarray | int) -> np.ndarray:
    """``x * m * 2**(shift - 31)`` rounded half up: (x * m + 2**(r - 1)) >> r with r = 31 - shift
    (1 <= r <= 62); x int32 values, m a quantize_multiplier mantissa (< 2**31)."""
    r = 31 - np.asarray(shift, np.int64)
    if (r < 1).any() or (r > 62).any():
        raise InputError("scale_round: expected a multiplier below 2**30, found a larger one")
    prod = np.asarray(x, np.int64) * np.asarray(multiplier, np.int64)
    return (prod + (np.int64(1) << (r - 1))) >> r


def exp_q15(x: np.ndarray) -> np.ndarray:
    """round(exp(-x / 2**12) * 2**15) for x >= 0, as two table look-ups and one rounded product."""
    x = np.asarray(x, np.int64)
    inside = x < EXP_LIMIT
    xi = np.where(inside, x, 0)
    e = (EXP_HI[xi >> 8] * EXP_LO[xi & 255] + (1 << 14)) >> 15
    return np.where(inside, e, 0)


def softmax_row(scores: np.ndarray, multiplier: int, shift: int) -> np.ndarray:
    """int8 probabilities (scale 1/256, zero point -128) of int32 scores along the last axis; the
    real score is ``scores * s`` and (multiplier, shift) = quantize_multiplier(s * 2**12)."""
    s = np.asarray(scores, np.int64)
    diff = s.max(-1, keepdims=True) - s                       # >= 0
    e = exp_q15(scale_round(diff, multiplier, shift))
    total = e.sum(-1, keepdims=True)                          # >= 2**15: the maximum's own term
    return np.clip(rdiv(e << 8, total) + PROB_ZERO_POINT, -128, 127)


def layernorm(x: np.ndarray, gamma_fx: np.ndarray, beta_fx: np.ndarray, eps: int, out_zp: int) -> np.ndarray:
    """int8 codes of LayerNorm over the last axis of int32 values ``x`` (|x| <= RESIDUAL_LIMIT):
    ``out_zp + rdiv(d * G + B * std, std << LN_FRAC)`` with d = x - mean, std = isqrt(var + eps),
    G = gamma / s_out and B = beta / s_out with LN_FRAC fraction bits."""
    d, std = _deviation(x, eps)
    y = rdiv(d * np.asarray(gamma_fx, np.int64) + np.asarray(beta_fx, np.int64) * std, std << LN_FRAC)
    return np.clip(y + out_zp, -128, 127)


def _deviation(x: np.ndarray, eps: int) -> tuple[np.ndarray, np.ndarray]:
    """(x - integer mean, integer std) over the last axis, as both LayerNorms compute them."""
    x = np.asarray(x, np.int64)
    n = x.shape[-1]
    d = x - rdiv(x.sum(-1, keepdims=True), n)
    return d, np.maximum(isqrt((d * d).sum(-1, keepdims=True) // n + np.int64(eps)), 1)


FINE = 256  # a CLS state's finer LayerNorm codes: 1/256 of the int8 step


def layernorm_fine(x: np.ndarray, gamma_fx: np.ndarray, beta_fx: np.ndarray, eps: int) -> np.ndarray:
    """``layernorm``'s output at FINE times its resolution, unclipped and without the zero point:
    int64 codes of ``s_out / FINE`` (for one token whose int8 codes are not averaged away)."""
    d, std = _deviation(x, eps)
    return rdiv((d * np.asarray(gamma_fx, np.int64) + np.asarray(beta_fx, np.int64) * std) * FINE, std << LN_FRAC)


__all__ = ["EXP_FRAC", "FINE", "layernorm_fine", "EXP_HI", "EXP_LO", "LN_FRAC", "PROB_SCALE", "PROB_ZERO_POINT", "RESIDUAL_LIMIT",
           "exp_q15", "isqrt", "layernorm", "rdiv", "scale_round", "softmax_row"]
