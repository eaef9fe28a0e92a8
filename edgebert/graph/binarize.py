"""1-bit weights and activations: pure functions on numpy arrays, no I/O.

A binarized weight row is its mean plus a scaled sign of what is left (BinaryBERT, BiBERT):
``W[o] ~= centre[o] + scale[o] * sign(W[o] - centre[o])`` with ``centre`` the row's mean and
``scale`` the mean absolute deviation from it (the least-squares scale of a sign, XNOR-Net). Signs
are stored packed, eight to a byte, little bit order (bit ``i % 8`` of byte ``i // 8`` is input
``i``; 1 means +1), each row padded with zero bits to whole bytes: ``in_features / 8`` bytes a
row, 1/32 of its float32 bytes.

Two integer cores, exact in int32/int64 (the oracle the C kernels are compared with bit for bit):

- **W1A8** (1-bit weights, 8-bit activations): for uint8 codes ``x`` with zero point ``z``,
  ``sum_i sign_i (x_i - z) = 2 P - T`` where ``P`` sums ``x_i - z`` over the +1 inputs and ``T``
  over all of them; the real output is ``s_x (scale * (2P - T) + centre * T) + bias``.
- **W1A1** (1-bit activations too): ``sum_i w_i a_i = n - 2 popcount(w XOR a)`` over the ``n``
  real inputs (padding bits are 0 in both, so they never differ).

**Bi-Attention** (BiBERT, Qin et al., ICLR 2022), the attention of a fully binarized encoder: a
query attends to every real key whose sign vector agrees with its own in at least half of the
head's dimensions (``bool(sign(q) . sign(k) >= 0)``: 0/1 weights, no softmax), and its context is
the mean of those keys' binarized values (each token's signs times its mean absolute value, per
head); a query that agrees with no key gets zeros. The scores are integers, so the choice of keys
is exact on every CPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgebert.errors import InputError


@dataclass(frozen=True)
class BinaryWeight:
    """A (out, in) weight as packed signs, per-row scale and centre."""

    bits: np.ndarray     # uint8 (out, ceil(in / 8))
    scale: np.ndarray    # float32 (out,), or (1,): one for every row
    centre: np.ndarray   # float32 (out,), or (1,)
    in_features: int

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.bits.shape[0]), self.in_features


# rows shorter than this share one scale and centre per matrix (a TinyML net's 32- and 64-input rows:
# 8 bytes a row would outweigh their 4 and 8 bytes of bits); BERT's rows (128 inputs and up) get their own
PER_ROW_MIN_INPUTS = 128


def scale_per_row(in_features: int) -> bool:
    """Whether a weight with rows of ``in_features`` inputs gets a scale and centre per row."""
    return int(in_features) >= PER_ROW_MIN_INPUTS


def row_bytes(in_features: int) -> int:
    return (int(in_features) + 7) // 8


def pack_signs(positive: np.ndarray) -> np.ndarray:
    """(rows, n) booleans (True = +1) as uint8 (rows, ceil(n / 8)), little bit order, zero-padded."""
    positive = np.asarray(positive, dtype=bool)
    if positive.ndim != 2:
        raise InputError(f"signs: expected a 2-D array, found shape {positive.shape}")
    return np.packbits(positive, axis=1, bitorder="little")


def unpack_signs(bits: np.ndarray, n: int) -> np.ndarray:
    """±1 int8 (rows, n) of packed signs."""
    bits = np.asarray(bits, dtype=np.uint8)
    if bits.ndim != 2 or bits.shape[1] != row_bytes(n):
        raise InputError(f"packed signs: expected (rows, {row_bytes(n)}) bytes for {n} inputs, found {bits.shape}")
    on = np.unpackbits(bits, axis=1, count=n, bitorder="little")
    return (on.astype(np.int8) * 2 - 1).astype(np.int8)


def binarize(w: np.ndarray, per_row: bool | None = None) -> BinaryWeight:
    """Mean-centred sign of each row of a float (out, in) weight with its least-squares scale; with
    ``per_row`` False one centre and scale for the whole matrix (short rows, e.g. a TinyML net's,
    where 8 bytes a row would outweigh the bits), stored once and applied to every row. By default
    the choice of ``scale_per_row``."""
    w = np.asarray(w, dtype=np.float64)
    if w.ndim != 2 or not w.size or not np.isfinite(w).all():
        raise InputError(f"weight: expected a finite (out, in) matrix, found shape {w.shape}")
    per_row = scale_per_row(w.shape[1]) if per_row is None else per_row
    axis = 1 if per_row else None
    centre = np.atleast_1d(w.mean(axis=axis))
    rest = w - centre[:, None] if per_row else w - centre[0]
    scale = np.atleast_1d(np.abs(rest).mean(axis=axis))
    return BinaryWeight(pack_signs(rest >= 0), scale.astype(np.float32), centre.astype(np.float32), int(w.shape[1]))


def per_row(b: BinaryWeight) -> BinaryWeight:
    """The same weight with a scale and centre on every row (a per-matrix one repeated)."""
    rows = b.bits.shape[0]
    return BinaryWeight(b.bits, np.broadcast_to(b.scale, (rows,)).astype(np.float32),
                        np.broadcast_to(b.centre, (rows,)).astype(np.float32), b.in_features)


def dequantize(b: BinaryWeight) -> np.ndarray:
    """The float32 (out, in) weight a BinaryWeight stands for."""
    b = per_row(b)
    signs = unpack_signs(b.bits, b.in_features).astype(np.float32)
    return b.centre[:, None] + b.scale[:, None] * signs


def w1a8_core(x: np.ndarray, zero_point: int, bits: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Integer core of a W1A8 product for uint8 codes x (tokens, n): (sum_i sign_oi (x_ti - z) as int32
    (tokens, out), sum_i (x_ti - z) as int32 (tokens,))."""
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[1] != n or x.dtype != np.uint8:
        raise InputError(f"activations: expected uint8 (tokens, {n}), found {x.dtype} {x.shape}")
    d = x.astype(np.int64) - int(zero_point)
    on = np.unpackbits(np.asarray(bits, np.uint8), axis=1, count=n, bitorder="little").astype(np.int64)
    p = d @ on.T
    t = d.sum(axis=1)
    return (2 * p - t[:, None]).astype(np.int32), t.astype(np.int32)


def w1a8_linear(x: np.ndarray, x_scale: float, zero_point: int, b: BinaryWeight,
                bias: np.ndarray | None = None) -> np.ndarray:
    """The real output (tokens, out) of a W1A8 linear on uint8 codes."""
    b = per_row(b)
    signed, total = w1a8_core(x, zero_point, b.bits, b.in_features)
    y = np.float32(x_scale) * (b.scale[None, :] * signed.astype(np.float32)
                               + b.centre[None, :] * total[:, None].astype(np.float32))
    return y + (bias[None, :] if bias is not None else np.float32(0))


def w1a1_core(a_bits: np.ndarray, w_bits: np.ndarray, n: int) -> np.ndarray:
    """sum_i a_ti w_oi over n ±1 inputs of packed activations (tokens, ceil(n/8)) and weights
    (out, ceil(n/8)): n - 2 popcount(a XOR w), int32 (tokens, out)."""
    a_bits, w_bits = np.asarray(a_bits, np.uint8), np.asarray(w_bits, np.uint8)
    if a_bits.ndim != 2 or w_bits.ndim != 2 or a_bits.shape[1] != row_bytes(n) or w_bits.shape[1] != row_bytes(n):
        raise InputError(f"packed operands: expected (rows, {row_bytes(n)}) bytes each, found {a_bits.shape} and "
                         f"{w_bits.shape}")
    diff = np.bitwise_count(a_bits[:, None, :] ^ w_bits[None, :, :]).sum(axis=2, dtype=np.int64)
    return (n - 2 * diff).astype(np.int32)


def binarize_activations(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Packed signs of float activations (tokens, n) (x >= 0 is +1) and each token's scale, the mean
    absolute value (the least-squares scale of its sign)."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise InputError(f"activations: expected (tokens, n), found shape {x.shape}")
    return pack_signs(x >= 0), np.abs(x).mean(axis=1).astype(np.float32)


def bi_attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Bi-Attention's context (batch, heads, seq, head_dim) of float q, k, v of that shape and the
    real keys ``keys`` (batch, seq) booleans."""
    q, k, v = (np.asarray(t, dtype=np.float32) for t in (q, k, v))
    if q.ndim != 4 or q.shape != k.shape or q.shape != v.shape or np.shape(keys) != (q.shape[0], q.shape[2]):
        raise InputError(f"attention: expected q, k, v of one (batch, heads, seq, head_dim) shape and keys "
                         f"(batch, seq), found {q.shape}, {k.shape}, {v.shape} and {np.shape(keys)}")
    qs, ks = np.where(q >= 0, 1.0, -1.0).astype(np.float32), np.where(k >= 0, 1.0, -1.0).astype(np.float32)
    scores = qs @ ks.transpose(0, 1, 3, 2)  # integers in [-head_dim, head_dim], exact in float32
    weights = ((scores >= 0) & np.asarray(keys, dtype=bool)[:, None, None, :]).astype(np.float32)
    vb = np.abs(v).mean(axis=-1, keepdims=True) * np.where(v >= 0, 1.0, -1.0).astype(np.float32)
    count = weights.sum(axis=-1, keepdims=True)
    return ((weights @ vb) / np.maximum(count, np.float32(1.0))).astype(np.float32)


__all__ = ["PER_ROW_MIN_INPUTS", "BinaryWeight", "bi_attention", "binarize", "binarize_activations", "dequantize", "pack_signs",
           "per_row", "row_bytes", "scale_per_row", "unpack_signs", "w1a1_core", "w1a8_core", "w1a8_linear"]
