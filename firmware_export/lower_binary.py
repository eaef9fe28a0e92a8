"""A binarized (W1A8) TinyML graph -> its integer program (``program_binary.BinMlp``).

Each 1-bit linear keeps its packed signs as they are; its scale, centre and bias become the
integers of ``program_binary`` at the largest fraction F (at most ``MAX_FRAC_BITS``) for which no
int8 input can take an accumulator beyond int32. The input and inter-layer ranges are the graph's
(each W1A8 input's calibrated uint8 range, as int8 codes); the output range is the one the
converter recorded on its calibration rows (``graph.meta["output_ranges"]``).
"""

from __future__ import annotations

import numpy as np

from edgebert.errors import ArtifactError
from edgebert.graph.form import Graph, Node
from edgebert.graph.reference import binary_weight
from firmware_export.fixedpoint import INT32_MAX, quantize_multiplier
from firmware_export.lower import linear_chain, output_quantization
from firmware_export.program_binary import BinLayer, BinMlp

MAX_FRAC_BITS = 16


def _input_quantization(node: Node) -> tuple[float, int]:
    """A W1A8 linear's input range as (float32 scale, int8 zero point)."""
    return float(np.float32(node.attrs["act_scale"])), int(node.attrs["act_zero_point"]) - 128


def _layer(graph: Graph, node: Node, relu: bool, out_q: tuple[float, int]) -> BinLayer:
    b = binary_weight(graph, node)  # per-row scale and centre (a per-matrix one repeated)
    in_scale, in_zp = _input_quantization(node)
    scale = b.scale.astype(np.float64)
    if not (np.isfinite(scale).all() and (scale > 0).all() and np.isfinite(b.centre).all()):
        raise ArtifactError(f"{node.name}: expected positive finite weight scales and finite centres, found others")
    bias_f = graph.tensors[node.attrs["bias"]].astype(np.float64) if node.attrs.get("bias") else np.zeros(len(scale))
    unit = np.float64(in_scale) * scale  # the real value of one accumulator step at F = 0
    out_scale, out_zp = out_q
    for frac in range(MAX_FRAC_BITS, -1, -1):
        centre_q = np.rint(b.centre.astype(np.float64) / scale * 2.0 ** frac)
        bias_q = np.rint(bias_f / unit * 2.0 ** frac)
        if np.abs(centre_q).max() > INT32_MAX or np.abs(bias_q).max() > INT32_MAX:
            continue
        pairs = [quantize_multiplier(float(u / (2.0 ** frac * out_scale))) for u in unit]
        lay = BinLayer(node.name, np.ascontiguousarray(b.bits), b.in_features, frac, centre_q.astype(np.int32),
                       bias_q.astype(np.int32), tuple(m for m, _ in pairs), tuple(s for _, s in pairs), in_scale,
                       in_zp, out_scale, out_zp, relu)
        left = max(0, max(lay.shifts))
        if lay.worst_accumulator() << left <= INT32_MAX:
            return lay
    raise ArtifactError(f"{node.name}: expected int32 accumulators for every int8 input, found none at any fraction "
                        "(weight centre or bias too large for the scale)")


def lower_binary_mlp(graph: Graph) -> BinMlp:
    """The integer program of a W1A8 MLP graph whose outputs are ``features`` and ``output``."""
    chain = linear_chain(graph, binary=True)
    ends = [end for _, _, end in chain]
    if ends[-1] != "output" or "features" not in ends:
        raise ArtifactError(f"firmware export: expected a chain ending in 'output' with a 'features' value, found "
                            f"{ends}")
    layers = []
    for i, (node, relu, _) in enumerate(chain):
        out_q = _input_quantization(chain[i + 1][0]) if i + 1 < len(chain) else output_quantization(graph, "output")
        layers.append(_layer(graph, node, relu, out_q))
    feature_layer = ends.index("features")
    feature_scale = np.full(layers[feature_layer].n_out, layers[feature_layer].out_scale, np.float32)
    in_scale, in_zp = _input_quantization(chain[0][0])
    cfg = graph.meta.get("config", {})
    return BinMlp(np.ones(layers[0].in_features, np.float32), in_scale, in_zp, tuple(layers), feature_layer,
                  feature_scale, str(cfg.get("task", "")), str(cfg.get("loss", "xent")))


__all__ = ["MAX_FRAC_BITS", "lower_binary_mlp"]
