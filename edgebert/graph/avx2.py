"""What ONNX Runtime's u8 x s8 integer kernels compute on x86 with AVX2 and no VNNI (pure numpy).

``MatMulInteger``, ``MatMulIntegerToFloat`` and ``DynamicQuantizeMatMul`` on x86 CPUs with AVX2 or
AVX-512BW but without VNNI multiply activation bytes (unsigned) by weight bytes (signed) with
``VPMADDUBSW``, which adds each pair of adjacent products along the reduction axis,
``a[2j] * w[2j] + a[2j+1] * w[2j+1]``, into a *saturating* int16; the pairs are then summed
exactly in int32 (``VPMADDWD``). VNNI (``VPDPBUSD``), ARM dot-product kernels and the u8 x u8
kernels accumulate exactly. So a product of 64 codes 255 by 64 codes 127 is 2,072,640 on one CPU
and 1,048,544 (= 32,767 x 32) on another.

The pairing (2j, 2j+1 from the first reduction index, zero-padded when odd) was measured on ONNX
Runtime 1.31's AVX2 kernel run under ``qemu-x86_64 -cpu Haswell``
(``tests/compress/test_saturation.py`` checks it there). ``compress.saturation`` chooses weights
that never saturate; this module says what the kernel does either way.
"""

from __future__ import annotations

import numpy as np

INT16_MAX = 32767
INT16_MIN = -32768
UINT8_MAX = 255
_CHUNK = 1 << 22  # pair-sum elements computed at once by the emulation


def _pairs(w: np.ndarray) -> np.ndarray:
    """(out, in) weight codes -> (out, ceil(in/2), 2), zero-padded."""
    w = np.asarray(w)
    if w.shape[1] % 2:
        w = np.concatenate([w, np.zeros((w.shape[0], 1), w.dtype)], axis=1)
    return w.reshape(w.shape[0], -1, 2)


def pair_sum_bounds(w: np.ndarray, act_max: int = UINT8_MAX) -> tuple[int, int]:
    """The most negative and most positive pair sum any activation codes in [0, act_max] can make
    with these (out, in) weight codes."""
    p = _pairs(np.asarray(w, np.int64))
    pos = np.clip(p, 0, None).sum(-1)
    neg = np.clip(p, None, 0).sum(-1)
    return int(neg.min(initial=0)) * act_max, int(pos.max(initial=0)) * act_max


def saturation_free(w: np.ndarray) -> bool:
    """True when no uint8 input can saturate a VPMADDUBSW pair with these (out, in) weight codes."""
    lo, hi = pair_sum_bounds(w)
    return lo >= INT16_MIN and hi <= INT16_MAX


def vpmaddubsw_matmul(a: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``a @ w.T`` for uint8 (rows, in) by int8 (out, in) codes as AVX2 without VNNI computes it:
    each adjacent pair of products saturated to int16, then summed exactly. Returns int64 (rows, out).

    Exact products come from one float64 GEMM (sums < 2**53); only the (pair, output) entries
    whose weights can leave int16 for these inputs are recomputed and corrected.
    """
    a = np.asarray(a)
    rows = a.reshape(-1, a.shape[-1]).astype(np.float64)
    wp = _pairs(np.asarray(w, np.int64))  # (out, pairs, 2)
    exact = np.rint(rows @ np.asarray(w, np.float64).T).astype(np.int64)  # (rows, out)
    a_max = int(rows.max(initial=0))
    pos = np.clip(wp, 0, None).sum(-1) * a_max
    neg = np.clip(wp, None, 0).sum(-1) * a_max
    out_idx, pair_idx = np.nonzero((pos > INT16_MAX) | (neg < INT16_MIN))
    if out_idx.size:
        ap = _pairs(rows)  # (rows, pairs, 2)
        step = max(1, _CHUNK // max(1, rows.shape[0]))
        for i in range(0, out_idx.size, step):
            o, j = out_idx[i:i + step], pair_idx[i:i + step]
            s = ap[:, j, 0] * wp[o, j, 0] + ap[:, j, 1] * wp[o, j, 1]  # (rows, chosen)
            correction = (np.clip(s, INT16_MIN, INT16_MAX) - s).astype(np.int64)
            np.add.at(exact.T, o, correction.T)
    return exact.reshape(*a.shape[:-1], -1)
