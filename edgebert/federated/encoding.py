"""The ``int8-delta`` update encoding, both sides (pure): a device sends ``adapted - global`` as
per-tensor symmetric int8 codes with one float scale each (and keeps the rounding error for the
next round: error feedback, Seide et al., 2014); the aggregator decodes it against the global
model it sent, refusing anything that is not exactly that layout."""

from __future__ import annotations

import numpy as np

from edgebert.federated.aggregate import Weights, dequantize_int8, quantize_int8

INT8_DELTA = "int8-delta"


def encode_int8_delta(adapted: Weights, global_w: Weights, residual: Weights | None
                      ) -> tuple[Weights, Weights]:
    """(tensors to send: ``name`` int8 codes and ``name.scale`` (1,) float32, the new residual)."""
    codes, new_residual = quantize_int8({k: adapted[k] - global_w[k] for k in adapted}, residual)
    tensors: Weights = {}
    for k, (q, scale) in codes.items():
        tensors[k], tensors[f"{k}.scale"] = q, np.array([scale], np.float32)
    return tensors, new_residual


def decode_int8_delta(tensors: Weights, reference: Weights) -> tuple[Weights | None, str | None]:
    """The weights an ``int8-delta`` update stands for, or the reason it is malformed."""
    expected = set(reference) | {f"{k}.scale" for k in reference}
    if set(tensors) != expected:
        missing, extra = sorted(expected - set(tensors)), sorted(set(tensors) - expected)
        return None, f"expected int8 codes and scales for {sorted(reference)}, found missing {missing} and extra {extra}"
    codes = {}
    for k, ref in reference.items():
        q, scale = tensors[k], tensors[f"{k}.scale"]
        if q.dtype != np.int8 or q.shape != ref.shape:
            return None, f"expected {k} as int8 of shape {ref.shape}, found {q.dtype} of shape {q.shape}"
        if scale.shape != (1,) or not np.issubdtype(scale.dtype, np.floating) or not np.isfinite(scale).all() \
                or not 0 < float(scale[0]) < 1e30:
            return None, f"expected {k}.scale as one positive finite float, found shape {scale.shape} {scale.dtype}"
        codes[k] = (q, float(scale[0]))
    return {k: reference[k] + d for k, d in dequantize_int8(codes).items()}, None
