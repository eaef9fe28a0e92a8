"""The integer program a microcontroller runs, and its semantics (the fixed-point reference).

An int8 TinyML net lowered for firmware (``lower.py``) is: the float input times a per-feature
multiplier (SmoothQuant's divisor of the first layer), quantized to int8 as TFLite's QUANTIZE does
(``round_half_away(x / scale) + zero_point``, in float32), then a chain of per-channel int8
FULLY_CONNECTED layers (TFLite Micro's fixed-point requantization, ``fixedpoint.py``), each with
an optional fused ReLU. The .tflite writer, the C generator and this reference express the same
program, so TFLM, the C build and ``run`` agree bit for bit. Pure numpy; no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edgebert.errors import InputError
from firmware_export.fixedpoint import fully_connected_int8


def fused_relu_range(out_zero_point: int, relu: bool) -> tuple[int, int]:
    """The int8 clamp of a layer's output: a fused ReLU starts it at the output's zero point."""
    return (max(-128, out_zero_point) if relu else -128), 127


@dataclass(frozen=True)
class IntLayer:
    """One int8 FULLY_CONNECTED layer: ``out = clamp(requant(sum((x - in_zp) * w) + bias) + out_zp)``."""

    name: str
    weight: np.ndarray         # (out, in) int8, zero point 0
    bias: np.ndarray           # (out,) int32, scale in_scale * filter_scale
    filter_scale: np.ndarray   # (out,) float32: the weight scale with the next layer's input multiplier folded in
    multipliers: tuple[int, ...]
    shifts: tuple[int, ...]
    in_scale: float            # float32 values
    in_zero_point: int         # int8
    out_scale: float
    out_zero_point: int
    relu: bool

    @property
    def act_range(self) -> tuple[int, int]:
        return fused_relu_range(self.out_zero_point, self.relu)

    @property
    def n_out(self) -> int:
        return int(self.weight.shape[0])


class Readouts:
    """What every integer MLP program reads out, from its ``layers`` (each with ``n_out``,
    ``out_scale``, ``out_zero_point``) and ``feature_layer``: the int8 one here, the W1A8 one in
    ``program_binary``."""

    layers: tuple[Any, ...]
    feature_layer: int

    @property
    def feature_dim(self) -> int:
        return int(self.layers[self.feature_layer].n_out)

    @property
    def output_dim(self) -> int:
        return int(self.layers[-1].n_out)

    @property
    def feature_zero_point(self) -> int:
        return int(self.layers[self.feature_layer].out_zero_point)

    @property
    def output_scale(self) -> float:
        return float(self.layers[-1].out_scale)

    @property
    def output_zero_point(self) -> int:
        return int(self.layers[-1].out_zero_point)


@dataclass(frozen=True)
class IntMlp(Readouts):
    """The whole program: input multiplier and quantization, layers, which outputs are read out."""

    input_mul: np.ndarray       # (in,) float32 (ones when the graph has none)
    input_scale: float
    input_zero_point: int
    layers: tuple[IntLayer, ...]
    feature_layer: int          # index of the layer whose output is the ``features`` tensor
    feature_scale: np.ndarray   # (features,) float32: real feature = (q - zp) * feature_scale
    task: str = ""
    loss: str = "xent"

    @property
    def input_dim(self) -> int:
        return int(self.layers[0].weight.shape[1])



def quantize_input(model: IntMlp, x: np.ndarray) -> np.ndarray:
    """TFLite MUL (float32) then QUANTIZE: ``clamp(round_half_away(float32(x * m) / scale) + zp)``."""
    x = np.asarray(x, np.float32)
    if x.ndim != 2 or x.shape[1] != model.input_dim:
        raise InputError(f"x: expected (batch, {model.input_dim}) numbers, found shape {x.shape}")
    if not np.isfinite(x).all():
        raise InputError("x: expected finite numbers, found NaN/Inf")
    scaled = (x * model.input_mul) / np.float32(model.input_scale)  # float32 throughout, as TFLM computes it
    rounded = np.sign(scaled) * np.floor(np.abs(scaled) + np.float32(0.5))  # std::round: half away from zero
    return np.clip(rounded.astype(np.float64) + model.input_zero_point, -128, 127).astype(np.int8)


def run(model: IntMlp, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The fixed-point reference: (features int8 (batch, features), output int8 (batch, outputs))."""
    h = quantize_input(model, x)
    features = h
    for i, lay in enumerate(model.layers):
        lo, hi = lay.act_range
        h = fully_connected_int8(h, lay.in_zero_point, lay.weight, lay.bias, list(lay.multipliers),
                                 list(lay.shifts), lay.out_zero_point, lo, hi)
        if i == model.feature_layer:
            features = h
    return features, h


def dequantize_features(model: IntMlp, q: np.ndarray) -> np.ndarray:
    return ((q.astype(np.float32) - np.float32(model.feature_zero_point)) * model.feature_scale).astype(np.float32)


def dequantize_output(model: IntMlp, q: np.ndarray) -> np.ndarray:
    return ((q.astype(np.float32) - np.float32(model.output_zero_point)) * np.float32(model.output_scale))


__all__ = ["IntLayer", "IntMlp", "Readouts", "dequantize_features", "dequantize_output", "fused_relu_range",
           "quantize_input", "run"]
