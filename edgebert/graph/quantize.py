"""Quantization maths: pure functions on numpy arrays, no I/O.

Conventions follow ONNX ``QuantizeLinear``: ``q = saturate(round_half_even(x / scale) + zp)``,
``x ~= (q - zp) * scale``. Weights are symmetric int8 in [-127, 127] (zero point 0) so that a
zero weight stays exactly zero; activations are asymmetric uint8 in [0, 255] with a range that
always contains 0 so that zero (padding, ReLU/GELU floor) is represented exactly
(Jacob et al., "Quantization and Training of Neural Networks for Efficient
Integer-Arithmetic-Only Inference", CVPR 2018).
"""

from __future__ import annotations

import numpy as np

from edgebert.errors import InputError

INT8_MAX = 127
UINT8_MAX = 255
_TINY = np.float32(1e-12)


def symmetric_scales(absmax: np.ndarray, qmax: int = INT8_MAX) -> np.ndarray:
    """Per-channel scales ``absmax / qmax``; an all-zero channel gets scale 1 (its codes are 0)."""
    absmax = np.asarray(absmax, dtype=np.float32)
    return np.where(absmax > _TINY, absmax / np.float32(qmax), np.float32(1.0)).astype(np.float32)


def quantize_symmetric(w: np.ndarray, axis: int = 0, qmax: int = INT8_MAX) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-channel int8 codes in [-qmax, qmax]: one scale per index of ``axis``.
    Returns (codes int8, scales)."""
    w = np.asarray(w, dtype=np.float32)
    reduce_axes = tuple(i for i in range(w.ndim) if i != axis % w.ndim)
    scales = symmetric_scales(np.abs(w).max(axis=reduce_axes) if w.size else np.zeros(w.shape[axis]), qmax)
    shape = [1] * w.ndim
    shape[axis] = -1
    codes = np.clip(np.rint(w / scales.reshape(shape)), -qmax, qmax).astype(np.int8)
    return codes, scales


def dequantize_symmetric(codes: np.ndarray, scales: np.ndarray, axis: int = 0) -> np.ndarray:
    shape = [1] * codes.ndim
    shape[axis] = -1
    return codes.astype(np.float32) * scales.reshape(shape).astype(np.float32)


def affine_params(lo: float, hi: float, qmax: int = UINT8_MAX) -> tuple[np.float32, np.uint8]:
    """uint8 scale and zero point mapping [lo, hi], extended to contain 0, onto codes [0, qmax]."""
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    if hi - lo <= float(_TINY):
        return np.float32(1.0), np.uint8(0)
    scale = np.float32((hi - lo) / qmax)
    zero_point = np.clip(np.rint(-lo / scale), 0, qmax)
    return scale, np.uint8(zero_point)


def quantize_affine(x: np.ndarray, scale: np.ndarray | float, zero_point: np.ndarray | int) -> np.ndarray:
    """uint8 codes ``saturate(round(x / scale) + zero_point)`` (broadcasting scale/zp)."""
    q = np.rint(np.asarray(x, dtype=np.float32) / scale) + np.asarray(zero_point, dtype=np.float32)
    return np.clip(q, 0, UINT8_MAX).astype(np.uint8)


def dequantize_affine(q: np.ndarray, scale: np.ndarray | float, zero_point: np.ndarray | int) -> np.ndarray:
    return (q.astype(np.float32) - np.asarray(zero_point, dtype=np.float32)) * np.float32(scale)


def dynamic_affine_params(x: np.ndarray) -> tuple[np.float32, np.uint8]:
    """ONNX ``DynamicQuantizeLinear``: range of x extended to 0, scale=(max-min)/255."""
    return affine_params(float(np.min(x)), float(np.max(x)))


def percentile_range(sample: np.ndarray, percentile: float) -> tuple[float, float]:
    """Clip range keeping the central ``percentile`` % of values on each side."""
    if not 50.0 < percentile <= 100.0:
        raise InputError(f"percentile: expected a value in (50, 100], found {percentile}")
    lo, hi = np.percentile(sample, [100.0 - percentile, percentile])
    return float(lo), float(hi)


def mse_range(sample: np.ndarray, lo: float, hi: float, steps: int = 40, qmax: int = UINT8_MAX) -> tuple[float, float]:
    """Clip range in [lo, hi] whose uint8 quantization of ``sample`` has the least squared error.

    Searches shrink factors of the min-max range (the "MSE" calibration of Banner et al.,
    "Post-training 4-bit quantization", and of TensorRT/ORT's percentile/entropy cousins).
    """
    sample = np.asarray(sample, dtype=np.float32).ravel()
    best, best_err = (lo, hi), np.inf
    for factor in np.linspace(1.0, 0.3, steps):
        cand_lo, cand_hi = lo * factor, hi * factor
        scale, zp = affine_params(cand_lo, cand_hi, qmax)
        err = float(np.mean((dequantize_affine(quantize_affine(sample, scale, zp), scale, zp) - sample) ** 2))
        if err < best_err:
            best, best_err = (cand_lo, cand_hi), err
    return best


# ------------------------------------------------------------------ 4-bit rows (embedding tables)
INT4_MAX = 7


CLIP_RATIOS = np.linspace(0.4, 1.0, 31)  # of absmax / 7: the 4-bit scales tried per row


def quantize_rows_4bit(table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """4-bit codes in [-8, 7] with one scale per row, two codes per byte: column 2j in the low nibble,
    2j+1 in the high one, two's complement (an odd last column pads with 0). Each row's scale is the
    one of ``CLIP_RATIOS x absmax / 7`` with the least squared error (16 levels are few: clipping a
    row's rare large values buys finer steps for all the others; ratio 1 is plain absmax scaling).
    Returns (packed uint8 (rows, ceil(cols / 2)), scales float32 (rows,))."""
    t = np.asarray(table, np.float32)
    base = symmetric_scales(np.abs(t).max(axis=1) if t.size else np.zeros(len(t)), INT4_MAX)[:, None]
    best_scale, best_err = base, np.full((len(t), 1), np.inf)
    for ratio in CLIP_RATIOS:
        scale = (base * np.float32(ratio)).astype(np.float32)
        err = ((np.clip(np.rint(t / scale), -INT4_MAX - 1, INT4_MAX) * scale - t) ** 2).sum(axis=1, keepdims=True)
        better = err < best_err
        best_err, best_scale = np.where(better, err, best_err), np.where(better, scale, best_scale)
    codes = np.clip(np.rint(t / best_scale), -INT4_MAX - 1, INT4_MAX).astype(np.int8)
    scales = best_scale[:, 0].astype(np.float32)
    rows, cols = codes.shape
    padded = np.zeros((rows, cols + cols % 2), np.int8)
    padded[:, :cols] = codes
    nibbles = padded.astype(np.uint8) & np.uint8(0x0F)
    return (nibbles[:, 0::2] | (nibbles[:, 1::2] << np.uint8(4))).astype(np.uint8), scales


def unpack_rows_4bit(packed: np.ndarray, cols: int) -> np.ndarray:
    """The int8 codes (rows, cols) of ``quantize_rows_4bit``'s packed bytes (sign-extended nibbles)."""
    packed = np.asarray(packed, np.uint8)
    if packed.ndim != 2 or packed.shape[1] != (cols + 1) // 2:
        raise InputError(f"4-bit rows: expected (rows, {(cols + 1) // 2}) bytes for {cols} columns, found {packed.shape}")
    out = np.empty((packed.shape[0], packed.shape[1] * 2), np.int8)
    for half, shift in ((0, 0), (1, 4)):
        nib = ((packed >> np.uint8(shift)) & np.uint8(0x0F)).astype(np.int16)
        out[:, half::2] = np.where(nib > 7, nib - 16, nib).astype(np.int8)
    return out[:, :cols]


def dequantize_rows_4bit(packed: np.ndarray, scales: np.ndarray, cols: int) -> np.ndarray:
    return unpack_rows_4bit(packed, cols).astype(np.float32) * np.asarray(scales, np.float32)[:, None]
