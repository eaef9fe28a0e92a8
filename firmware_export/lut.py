"""Element-wise functions of int8 tensors as 256-entry tables (pure): what a microcontroller uses
for GELU (TFLite Micro has no GELU builtin) and other activations of the transformer student.

Entry ``q + 128`` holds the int8 code of ``f((q - in_zp) * in_scale)`` in the output
quantization: round half away from zero (as TFLite rounds), clamped to [-128, 127]. A kernel
applies it with one load per element; the numpy reference, the C code and a TFLite GATHER over
the same table give the same codes.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from edgebert.errors import InputError

CODES = np.arange(-128, 128, dtype=np.int64)


def gelu(x: np.ndarray, approximate: str = "none") -> np.ndarray:
    """GELU in float64: exact (erf) or the tanh approximation (BERT's ``gelu_new``)."""
    x = np.asarray(x, np.float64)
    if approximate == "tanh":
        return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))
    from scipy.special import erf  # host side only

    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def table(fn: Callable[[np.ndarray], np.ndarray], in_scale: float, in_zp: int, out_scale: float,
          out_zp: int) -> np.ndarray:
    """The int8[256] table of ``fn`` between two int8 quantizations."""
    if not (in_scale > 0 and out_scale > 0 and math.isfinite(in_scale) and math.isfinite(out_scale)):
        raise InputError(f"lookup table: expected positive finite scales, found {in_scale} and {out_scale}")
    y = np.asarray(fn((CODES - in_zp) * np.float64(in_scale)), np.float64) / np.float64(out_scale)
    rounded = np.sign(y) * np.floor(np.abs(y) + 0.5)
    return np.clip(rounded + out_zp, -128, 127).astype(np.int8)


def activation_table(op: str, approximate: str, in_scale: float, in_zp: int, out_scale: float,
                     out_zp: int) -> np.ndarray:
    """The table of a graph's activation node: ``gelu`` (exact or "tanh") or ``relu``."""
    if op == "gelu":
        return table(lambda x: gelu(x, approximate), in_scale, in_zp, out_scale, out_zp)
    if op == "relu":
        return table(lambda x: np.maximum(x, 0.0), in_scale, in_zp, out_scale, out_zp)
    raise InputError(f"activation table: expected gelu or relu, found {op!r}")


def apply(q: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """``lut`` applied to int8 codes ``q``."""
    if lut.shape != (256,):
        raise InputError(f"lookup table: expected 256 entries, found {lut.shape}")
    return lut[np.asarray(q, np.int64) + 128]


__all__ = ["activation_table", "apply", "gelu", "table"]
