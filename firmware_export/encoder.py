"""The integer program of a BERT-style text encoder on a microcontroller, and its semantics.

One sentence of ``n <= max_len`` token ids runs through (no padding, so no mask):

- **embedding**: ``x = word_code[id] * word_mul[id] + pos_code[t] * pos_mul[t]`` in int32 at
  one fine scale ``s_e`` (the per-row scales become integer multipliers); word rows are int8 or
  4-bit (two codes per byte);
- **LayerNorm** of int32 rows with integer mean, variance and square root (``intops.layernorm``)
  to int8; the next linear's SmoothQuant divisor is folded into gamma and beta;
- **attention**: Q, K, V as three per-channel int8 FULLY_CONNECTED layers (TFLite Micro's
  requantization); int32 scores; integer softmax to int8 probabilities (1/256, -128); the
  context ``sum_j (p + 128) (v - z_v)`` requantized to int8; the output projection's SmoothQuant
  divisor is folded into V's per-channel filter scale;
- **output projections** (attention out, FFN down) produce int32 at the residual stream's fine
  scale (``intops.scale_round``) and the residual is added there, never clamped to int8 before
  LayerNorm; GELU is a 256-entry table between two int8 quantizations (``lut.py``);
- **pooling**: per mode, int32 sums of the last hidden codes over the n tokens (mean pooling's
  numerator), token 0 (CLS, from the last LayerNorm at 1/256 of the int8 step: one token's codes
  are not averaged) or the per-channel max, concatenated (``pool``), then the sentence-transformers
  Dense projection as int8 weights in int64 sums; the output is int32 with a per-channel real
  scale: ``embedding = out * out_scale / n`` (CLS and max blocks are multiplied by n when a mean is
  pooled beside them; without a mean the divisor is 1).

``run`` is the fixed-point reference the C build (``c99_text.py``) matches bit for bit. Pure numpy.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edgebert.graph.form import pooling_modes
from edgebert.graph.quantize import unpack_rows_4bit
from edgebert.runtime.text_firmware import check_ids as runtime_check_ids
from edgebert.runtime.text_firmware import real_embedding
from firmware_export.fixedpoint import requantize
from firmware_export.intops import FINE, RESIDUAL_LIMIT, layernorm, layernorm_fine, rdiv, scale_round, softmax_row
from firmware_export.lut import apply


@dataclass(frozen=True)
class IntLinear:
    """int8 weights (out, in), int32 bias at s_in * s_w, per-channel (multiplier, shift).
    ``out_zero_point`` is None for int32 output (``scale_round``, no clamp), else int8 output
    with TFLite's double-rounding requantization."""

    weight: np.ndarray
    bias: np.ndarray
    multipliers: np.ndarray     # int64 (out,)
    shifts: np.ndarray          # int64 (out,)
    in_zero_point: int
    out_zero_point: int | None

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.weight.shape[0]), int(self.weight.shape[1])


@dataclass(frozen=True)
class IntLayerNorm:
    gamma: np.ndarray           # int64 (hidden,): gamma * mul / s_out, LN_FRAC fraction bits
    beta: np.ndarray            # int64 (hidden,)
    eps: int                    # eps / s_in**2
    out_zero_point: int


@dataclass(frozen=True)
class IntBlock:
    q: IntLinear
    k: IntLinear
    v: IntLinear
    softmax: tuple[int, int]    # quantize_multiplier(s_q * s_k * 2**12)
    context: tuple[int, int]    # quantize_multiplier(s_v / 256 / s_ctx)
    context_zero_point: int
    out: IntLinear              # int32 out at the residual scale
    residual1: np.ndarray       # int64 (hidden,): h code -> residual units
    ln1: IntLayerNorm
    ffn1: IntLinear
    gelu: np.ndarray            # int8 (256,)
    ffn2: IntLinear             # int32 out at the second residual scale
    residual2: np.ndarray
    ln2: IntLayerNorm


@dataclass(frozen=True)
class IntEncoder:
    word: np.ndarray            # int8 (vocab, hidden), or packed 4-bit uint8 (vocab, hidden / 2)
    word_bits: int              # 8 or 4
    word_mul: np.ndarray        # int64 (vocab,)
    position: np.ndarray        # int8 (max_len, hidden)
    position_mul: np.ndarray    # int64 (max_len,)
    ln0: IntLayerNorm
    blocks: tuple[IntBlock, ...]
    heads: int
    hidden_zero_point: int      # of the last LayerNorm's output
    pool: str                   # pooling modes: "mean", "cls", "max" or several joined by "+"
    projection: IntLinear | None  # int32 out (multipliers unused)
    out_scale: np.ndarray       # float32 (out,): embedding = out * out_scale / divisor(n)
    normalize: bool
    # int8 rows used instead of 4-bit ones for a few ids (the special tokens every input carries)
    wide_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))   # sorted (R,)
    wide: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.int8))   # int8 (R, hidden)
    wide_mul: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))   # int64 (R,)

    @property
    def modes(self) -> tuple[str, ...]:
        return pooling_modes(self.pool)

    def divisor(self, n: int) -> int:
        """What the int32 output is divided by (after its scale): n when a mean is pooled, else 1."""
        return pool_divisor(self.modes, n)

    @property
    def vocab(self) -> int:
        return int(self.word.shape[0])

    @property
    def hidden(self) -> int:
        return int(self.position.shape[1])

    @property
    def max_len(self) -> int:
        return int(self.position.shape[0])

    @property
    def out_dim(self) -> int:
        return int(self.out_scale.shape[0])

    @property
    def intermediate(self) -> int:
        return self.blocks[0].ffn1.shape[0] if self.blocks else 0

    def word_codes(self) -> np.ndarray:
        return self.word if self.word_bits == 8 else unpack_rows_4bit(self.word, self.hidden)


def linear(lay: IntLinear, x: np.ndarray) -> np.ndarray:
    """int8 (tokens, in) -> int8 or int32 (tokens, out)."""
    acc = (np.asarray(x, np.int64) - lay.in_zero_point) @ lay.weight.astype(np.int64).T + lay.bias.astype(np.int64)
    if lay.out_zero_point is None:
        return scale_round(acc, lay.multipliers, lay.shifts)
    return np.clip(requantize(acc, lay.multipliers, lay.shifts) + lay.out_zero_point, -128, 127)


def _ln(p: IntLayerNorm, x: np.ndarray) -> np.ndarray:
    return layernorm(x, p.gamma, p.beta, p.eps, p.out_zero_point)


def attention(b: IntBlock, h: np.ndarray, heads: int) -> np.ndarray:
    q, k, v = linear(b.q, h), linear(b.k, h), linear(b.v, h)
    n, width = q.shape
    hd = width // heads
    ctx = np.empty((n, width), np.int64)
    for a in range(heads):
        cols = slice(a * hd, (a + 1) * hd)
        scores = (q[:, cols] - b.q.out_zero_point) @ (k[:, cols] - b.k.out_zero_point).T  # (n, n)
        p = softmax_row(scores, *b.softmax)
        acc = (p + 128) @ (v[:, cols] - b.v.out_zero_point)
        ctx[:, cols] = requantize(acc, np.int64(b.context[0]), np.int64(b.context[1])) + b.context_zero_point
    return np.clip(ctx, -128, 127)


def residual(x32: np.ndarray, h: np.ndarray, zero_point: int, mul: np.ndarray) -> np.ndarray:
    return np.clip(x32 + (np.asarray(h, np.int64) - zero_point) * mul, -RESIDUAL_LIMIT, RESIDUAL_LIMIT)


def check_ids(model: IntEncoder, ids: np.ndarray) -> np.ndarray:
    return runtime_check_ids(ids, model.vocab, model.max_len)


def hidden(model: IntEncoder, ids: np.ndarray) -> np.ndarray:
    """int8 codes (n, hidden) of the last LayerNorm's output."""
    return forward(model, ids)[0]


def last_layernorm(model: IntEncoder) -> IntLayerNorm:
    return model.blocks[-1].ln2 if model.blocks else model.ln0


def forward(model: IntEncoder, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(int8 codes (n, hidden) of the last LayerNorm's output, its int32 input (n, hidden))."""
    ids = check_ids(model, ids)
    n = len(ids)
    rows = model.word_codes()[ids].astype(np.int64) * model.word_mul[ids, None]
    for r, wid in enumerate(model.wide_ids):  # a special token's int8 row in place of its 4-bit one
        rows[ids == wid] = model.wide[r].astype(np.int64) * model.wide_mul[r]
    x = rows + model.position[:n].astype(np.int64) * model.position_mul[:n, None]
    h, zp = _ln(model.ln0, x), model.ln0.out_zero_point
    for b in model.blocks:
        h1 = _ln(b.ln1, residual(linear(b.out, attention(b, h, model.heads)), h, zp, b.residual1))
        x = residual(linear(b.ffn2, apply(linear(b.ffn1, h1), b.gelu)), h1, b.ln1.out_zero_point, b.residual2)
        h = _ln(b.ln2, x)
        zp = b.ln2.out_zero_point
    return h, x


def pool_divisor(modes: tuple[str, ...], n: int) -> int:
    return n if "mean" in modes else 1


def pool(h: np.ndarray, modes: tuple[str, ...], cls_fine: np.ndarray) -> np.ndarray:
    """Integer pooling in units of ``s_h / FINE / divisor``: each mode's block concatenated - the sum
    over tokens of (n, hidden) codes less their zero point for a mean, the per-channel max for max
    (both times FINE), and token 0's FINE-times-finer LayerNorm codes ``cls_fine`` for CLS (one token's
    int8 codes are coarse: nothing averages them) - with CLS and max blocks multiplied by n when a
    mean is pooled, so that one divisor (``pool_divisor``) serves all."""
    d = pool_divisor(modes, len(h))
    blocks = {"mean": lambda: h.sum(0) * FINE, "cls": lambda: np.asarray(cls_fine, np.int64) * d,
              "max": lambda: h.max(0) * (FINE * d)}
    return np.concatenate([blocks[m]() for m in modes])


def run(model: IntEncoder, ids: np.ndarray) -> np.ndarray:
    """The int32 output (out_dim,) of one sentence: real embedding = out * out_scale / divisor(n). With
    a projection, its int64 sums are divided by FINE (rounded) back to the int8 step's units."""
    h, x = forward(model, ids)
    ln = last_layernorm(model)
    cls_fine = layernorm_fine(x[0], ln.gamma, ln.beta, ln.eps) if "cls" in model.modes else np.zeros(0, np.int64)
    pooled = pool(h - model.hidden_zero_point, model.modes, cls_fine)
    if model.projection is None:
        return pooled
    p = model.projection
    acc = pooled @ p.weight.astype(np.int64).T + (FINE * model.divisor(len(h))) * p.bias.astype(np.int64)
    return rdiv(acc, FINE)


def embedding(model: IntEncoder, out: np.ndarray, n: int) -> np.ndarray:
    """The real sentence embedding of ``run``'s output (L2-normalized when the model normalizes)."""
    return real_embedding(out, model.out_scale, model.divisor(n), model.normalize)


__all__ = ["IntBlock", "IntEncoder", "IntLayerNorm", "IntLinear", "attention", "check_ids", "embedding",
           "forward", "hidden", "last_layernorm", "linear", "pool", "pool_divisor", "residual", "run"]
