"""1-bit weights in the graph form: every linear's weight becomes packed signs with a scale and a
centre per output row (``graph.binarize``), never float32 again.

- **W1A8** (``--precision binary``): the input stays 8-bit - uint8 codes of a calibrated range
  (the range method with the least output error on the calibration rows, as the int8 pass
  chooses it, ``int8.activation_range``) - and the product runs as ``graph.binarize.w1a8_core``.
- **W1A1** (``--precision binary-full``): the input is binarized too, each token's signs times its
  mean absolute value (``act`` "binary"); experimental (BiBERT's whole recipe - Bi-Attention, the
  attention scores' own binarization - is not part of this pass).

The weights binarized here are the ones a binarization-aware distillation trained through
``compress.ste.binarize_weight``: the same mean, scale and sign, so nothing moves at export.
Bias correction (Nagel et al.) moves each output's bias by the mean shift the binarization causes
on the calibration rows, as the int8 pass does for its rounding - for post-training binarization
only: a binarization-aware model trained its biases beside the 1-bit weights already, and the
correction (the shift from its latent float weights, which it never ran with) would undo that
(measured on a W1A8 MiniLM student: cosine 0.998 to its own float forward without, 0.11 with).
"""

from __future__ import annotations

import numpy as np

from edgebert.compress.calibrate import InputStats
from edgebert.compress.int8 import RANGE_METHODS, activation_range, quantize_embedding
from edgebert.errors import ConversionError, InputError
from edgebert.graph.binarize import binarize, dequantize
from edgebert.graph.form import Graph, Node
from edgebert.graph.quantize import affine_params, dequantize_affine, quantize_affine, quantize_rows_4bit

MODES = {"binary": "static", "binary-full": "binary"}
_SEARCH_ROWS = 1024


def _static_range(w: np.ndarray, stats: InputStats) -> tuple[float, str]:
    """The calibrated uint8 range (method) of a W1A8 linear's input with the least output error."""
    x = stats.sample[:_SEARCH_ROWS]
    y = x @ w.T
    best: tuple[float, tuple[float, float], str] | None = None
    for method in RANGE_METHODS:
        lo_hi = activation_range(stats, None, method)
        scale, zp = affine_params(*lo_hi)
        err = float(np.mean((dequantize_affine(quantize_affine(x, scale, zp), scale, zp) @ w.T - y) ** 2))
        if best is None or err < best[0]:
            best = (err, lo_hi, method)
    assert best is not None
    return best[1], best[2]  # type: ignore[return-value]


def binarize_linear(g: Graph, node: Node, stats: InputStats, act: str, bias_correction: bool = True) -> Node:
    a = dict(node.attrs)
    w32 = g.tensors[a["weight"]].astype(np.float32)  # (out, in)
    b = binarize(w32)  # a scale per row, or per matrix for short rows (graph.binarize.scale_per_row)
    name = node.name
    g.tensors[a["weight"]] = b.bits
    g.tensors[f"{name}.weight_scale"], g.tensors[f"{name}.weight_centre"] = b.scale, b.centre
    a.update(weight_bits=1, in_features=b.in_features, weight_scale=f"{name}.weight_scale",
             weight_centre=f"{name}.weight_centre", act=act)
    wb = dequantize(b)
    if act == "static":
        lo_hi, method = _static_range(wb, stats)
        scale, zp = affine_params(*lo_hi)
        a.update(act_scale=float(scale), act_zero_point=int(zp), range_method=method)
    if bias_correction:  # the mean shift of the outputs the binarization causes
        mean_x = np.concatenate(stats.rows).mean(axis=0, dtype=np.float64)
        shift = mean_x @ (wb.astype(np.float64) - w32).T
        bias = g.tensors[a["bias"]] if a.get("bias") else np.zeros(w32.shape[0], np.float32)
        a["bias"] = a.get("bias") or f"{name}.bias"
        g.tensors[a["bias"]] = (bias - shift).astype(np.float32)
    for key in ("input_mul", "smoothquant_alpha"):
        a.pop(key, None)
    return Node(node.op, node.name, node.inputs, node.outputs, a)


def word_rows_4bit(g: Graph, node: Node) -> Node:
    """The word table as 4-bit rows (two codes a byte, a scale per row: ``quantize_rows_4bit``)."""
    a = dict(node.attrs)
    packed, scales = quantize_rows_4bit(g.tensors[a["word"]].astype(np.float32))
    cols = int(g.tensors[a["word"]].shape[1])
    g.tensors[a["word"]], g.tensors[f"{a['word']}.scale"] = packed, scales
    a.update(word_scale=f"{a['word']}.scale", word_bits=4, word_cols=cols)
    return Node(node.op, node.name, node.inputs, node.outputs, a)


def binarize_graph(fp32: Graph, stats: dict[str, InputStats], precision: str = "binary",
                   keep_fp32: tuple[str, ...] = (), quantize_embeddings: bool = True,
                   embedding_bits: int = 8, bias_correction: bool = True) -> Graph:
    """A copy of an fp32 graph with 1-bit linears (``precision`` "binary": W1A8, "binary-full":
    W1A1) and int8 embedding rows (4-bit word rows with ``embedding_bits`` 4); ``keep_fp32`` names
    linears left in float32; ``bias_correction`` False for a binarization-aware trained graph."""
    if precision not in MODES:
        raise InputError(f"--precision: expected one of {tuple(MODES)}, found {precision!r}")
    if embedding_bits not in (4, 8):
        raise InputError(f"--embedding-bits: expected 4 or 8, found {embedding_bits}")
    g = fp32.copy()
    for node in fp32.nodes:
        if node.op == "linear" and node.name not in keep_fp32:
            if node.name not in stats:
                raise ConversionError(f"{node.name}: expected calibration statistics, found none")
            g.replace(binarize_linear(g, node, stats[node.name], MODES[precision], bias_correction))
        elif node.op == "embedding" and embedding_bits == 4:
            g.replace(quantize_embedding(g, word_rows_4bit(g, node), keys=("position",)))
        elif node.op == "embedding" and quantize_embeddings:
            g.replace(quantize_embedding(g, node))
    g.meta = {**fp32.meta, "precision": precision}
    return g


__all__ = ["MODES", "binarize_graph", "binarize_linear"]
