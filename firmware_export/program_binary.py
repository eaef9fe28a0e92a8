"""The integer program of a binarized (W1A8) TinyML net on a microcontroller, and its semantics.

A 1-bit linear stands for ``W[o] = centre[o] + scale[o] * sign[o]`` on 8-bit inputs; with
``d = x - in_zp`` (int8 codes) its real output is ``s_in * (scale[o] * acc[o] + centre[o] * T) + b[o]``
where ``acc[o] = sum_i sign_oi d_i`` (the W1A8 core, ``2P - T``) and ``T = sum_i d_i``. In integers,
in units of ``s_in * scale[o] / 2**F``:

    a[o] = acc[o] * 2**F + centre_q[o] * T + bias_q[o]         (int32: the lowering proves it fits)
    out[o] = clamp(requantize(a[o], m[o], shift[o]) + out_zp)   (TFLite's double-rounding multiplier)

with ``centre_q = round(centre / scale * 2**F)``, ``bias_q = round(b / (s_in * scale) * 2**F)`` and
``(m, shift)`` the quantized multiplier of ``s_in * scale / (2**F * s_out)``. Input quantization,
the int8 activations between layers (the next layer's input range, ReLU fused as the clamp), the
features and output tensors are those of the int8 program (``program.py``), so the same firmware
API, learning head, host runtime and Cortex-M4 harness run it. Pure numpy; no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgebert.graph.binarize import row_bytes, w1a8_core
from firmware_export.fixedpoint import INT32_MAX, INT32_MIN, requantize
from firmware_export.program import Readouts, fused_relu_range, quantize_input


@dataclass(frozen=True)
class BinLayer:
    """One W1A8 layer of the program (see the module docstring)."""

    name: str
    bits: np.ndarray           # (out, ceil(in / 8)) uint8 packed signs, bit i % 8 of byte i // 8 is input i
    in_features: int
    frac_bits: int             # F
    centre_q: np.ndarray       # (out,) int32
    bias_q: np.ndarray         # (out,) int32
    multipliers: tuple[int, ...]
    shifts: tuple[int, ...]
    in_scale: float
    in_zero_point: int         # int8
    out_scale: float
    out_zero_point: int
    relu: bool

    @property
    def act_range(self) -> tuple[int, int]:
        return fused_relu_range(self.out_zero_point, self.relu)

    @property
    def n_out(self) -> int:
        return int(self.bits.shape[0])

    def worst_accumulator(self) -> int:
        """The largest |a[o]| any int8 input can give (the lowering keeps it within int32)."""
        n = self.in_features
        return int(n * 255 * (2 ** self.frac_bits + np.abs(self.centre_q.astype(np.int64)).max())
                   + np.abs(self.bias_q.astype(np.int64)).max())


@dataclass(frozen=True)
class BinMlp(Readouts):
    """The whole program; the same readouts as ``program.IntMlp``."""

    input_mul: np.ndarray       # (in,) float32 ones (a binarized graph has no SmoothQuant divisor)
    input_scale: float
    input_zero_point: int
    layers: tuple[BinLayer, ...]
    feature_layer: int
    feature_scale: np.ndarray   # (features,) float32
    task: str = ""
    loss: str = "xent"

    @property
    def input_dim(self) -> int:
        return self.layers[0].in_features

    def weight_bytes(self) -> int:
        """Constant bytes of the layers: packed signs plus the int32 centre, bias and multiplier and
        the int8 shift of every output."""
        return int(sum(lay.bits.nbytes + lay.n_out * (4 + 4 + 4 + 1) for lay in self.layers))


def binary_layer(lay: BinLayer, h: np.ndarray) -> np.ndarray:
    """One layer on int8 codes (batch, in) -> int8 (batch, out)."""
    if h.shape[1] != lay.in_features or lay.bits.shape[1] != row_bytes(lay.in_features):
        raise ValueError(f"{lay.name}: expected {lay.in_features} inputs, found {h.shape[1]}")
    acc, total = w1a8_core((h.astype(np.int16) + 128).astype(np.uint8), lay.in_zero_point + 128, lay.bits,
                           lay.in_features)
    a = ((acc.astype(np.int64) << lay.frac_bits) + lay.centre_q.astype(np.int64)[None, :] * total[:, None]
         + lay.bias_q.astype(np.int64)[None, :])
    if a.size and (a.min() < INT32_MIN or a.max() > INT32_MAX):
        raise ValueError(f"{lay.name}: an accumulator left int32 (a lowering bug)")
    lo, hi = lay.act_range
    out = requantize(a, np.asarray(lay.multipliers, np.int64), np.asarray(lay.shifts, np.int64)) + lay.out_zero_point
    return np.clip(out, lo, hi).astype(np.int8)


def run(model: BinMlp, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The fixed-point reference: (features int8 (batch, features), output int8 (batch, outputs))."""
    h = quantize_input(model, x)  # type: ignore[arg-type]  # the same input fields as IntMlp
    features = h
    for i, lay in enumerate(model.layers):
        h = binary_layer(lay, h)
        if i == model.feature_layer:
            features = h
    return features, h


__all__ = ["BinLayer", "BinMlp", "binary_layer", "run"]
