"""Lower an artifact's int8 graph form (``edgebert.graph.form``) to the integer program of ``program.py``.

The graph's quantization decisions are kept, never re-derived: each linear's int8 codes and
per-channel weight scales, its calibrated uint8 input scale and zero point (int8 zero point =
uint8 zero point - 128), and the output ranges the converter recorded. SmoothQuant's
per-input-channel multiplier of layer i+1 is folded into layer i's per-output-channel filter
scale (exact through a ReLU, since every multiplier is positive); the first layer's multiplier
becomes a float MUL before the input QUANTIZE. The last layer is quantized with the [min, max]
of the outputs over the calibration set. Pure; no I/O.
"""

from __future__ import annotations

import numpy as np

from edgebert.errors import ArtifactError
from edgebert.graph.form import Graph, Node
from edgebert.graph.quantize import affine_params
from firmware_export.fixedpoint import INT32_MAX, INT32_MIN, quantize_multiplier
from firmware_export.program import IntLayer, IntMlp


def is_binary(node: Node) -> bool:
    """A W1A8 linear of a binarized graph (1-bit weights, static 8-bit inputs)."""
    return node.op == "linear" and node.attrs.get("weight_bits") == 1 and node.attrs.get("act") == "static"


def linear_chain(graph: Graph, binary: bool = False) -> list[tuple[Node, bool, str]]:
    """The graph as (linear, followed by a ReLU, the name of the value it ends in) triples, or
    ArtifactError naming what cannot be expressed; ``binary``: every linear W1A8 instead of int8."""
    if graph.meta.get("architecture") != "mlp":
        raise ArtifactError(f"firmware export: expected a TinyML MLP graph (architecture mlp), found "
                            f"{graph.meta.get('architecture')!r} (transformer ops come with a later release)")
    chain: list[tuple[Node, bool, str]] = []
    for node in graph.nodes:
        if node.op == "linear":
            a = node.attrs
            if binary and not is_binary(node):
                raise ArtifactError(f"{node.name}: expected a W1A8 linear (1-bit weights, static 8-bit inputs), "
                                    f"found act={a.get('act')!r}, weight_bits={a.get('weight_bits', 8)} (convert "
                                    "with --precision binary)")
            if not binary and (a.get("act") != "static" or graph.tensors[a["weight"]].dtype != np.int8):
                raise ArtifactError(f"{node.name}: expected an int8 linear with static activations, found act="
                                    f"{a.get('act')!r}, weights {graph.tensors[a['weight']].dtype} (convert with "
                                    f"--precision int8 and no --dynamic/--keep-fp32)")
            source = chain[-1][2] if chain else graph.inputs[0]
            if node.inputs[0] != source:
                raise ArtifactError(f"{node.name}: expected a chain of layers reading {source!r}, found input "
                                    f"{node.inputs[0]!r}")
            chain.append((node, False, node.outputs[0]))
        elif node.op == "relu" and chain and not chain[-1][1] and node.inputs[0] == chain[-1][2]:
            chain[-1] = (chain[-1][0], True, node.outputs[0])
        else:
            raise ArtifactError(f"{node.name}: op {node.op!r} cannot be expressed by the firmware targets "
                                f"(int8 FULLY_CONNECTED with fused ReLU)")
    if not chain:
        raise ArtifactError("firmware export: expected at least one linear layer, found none")
    return chain


def _input_mul(graph: Graph, node: Node) -> np.ndarray:
    n_in = graph.tensors[node.attrs["weight"]].shape[1]
    name = node.attrs.get("input_mul")
    mul = graph.tensors[name].astype(np.float32) if name else np.ones(n_in, np.float32)
    if mul.shape != (n_in,) or not (np.isfinite(mul).all() and (mul > 0).all()):
        raise ArtifactError(f"{node.name}: expected {n_in} positive finite input multipliers, found others")
    return mul


def output_quantization(graph: Graph, name: str) -> tuple[float, int]:
    ranges = graph.meta.get("output_ranges", {}).get(name)
    if ranges is None:
        raise ArtifactError(f"graph: expected the calibrated range of output {name!r} (recorded by edgebert 0.1 "
                            "converters since issue 13), found none: convert the model again")
    scale, zp = affine_params(float(ranges[0]), float(ranges[1]))
    return float(np.float32(scale)), int(zp) - 128


def _layer(graph: Graph, node: Node, relu: bool, out_q: tuple[float, int], next_mul: np.ndarray) -> IntLayer:
    a = node.attrs
    w = graph.tensors[a["weight"]].astype(np.int8)
    in_scale = float(np.float32(a["act_scale"]))
    in_zp = int(a["act_zero_point"]) - 128
    filter_scale = (graph.tensors[a["weight_scale"]].astype(np.float32) * next_mul).astype(np.float32)
    bias_f = graph.tensors[a["bias"]].astype(np.float64) if a.get("bias") else np.zeros(w.shape[0])
    # the bias keeps its real value: b / (s_in * s_w); folding the next multiplier scales both alike
    bias = np.rint(bias_f * next_mul / (np.float64(in_scale) * filter_scale.astype(np.float64)))
    if (bias < INT32_MIN).any() or (bias > INT32_MAX).any():
        raise ArtifactError(f"{node.name}: expected int32 biases, found a bias beyond int32 (input scale too small)")
    out_scale, out_zp = out_q
    pairs = [quantize_multiplier(float(np.float64(in_scale) * np.float64(fs) / np.float64(out_scale)))
             for fs in filter_scale]
    return IntLayer(node.name, w, bias.astype(np.int32), filter_scale, tuple(m for m, _ in pairs),
                    tuple(s for _, s in pairs), in_scale, in_zp, out_scale, out_zp, relu)


def lower_mlp(graph: Graph) -> IntMlp:
    """The integer program of an int8 MLP graph whose outputs are ``features`` and ``output``."""
    chain = linear_chain(graph)
    ends = [end for _, _, end in chain]
    if ends[-1] != "output" or "features" not in ends:
        raise ArtifactError(f"firmware export: expected a chain ending in 'output' with a 'features' value, found "
                            f"{ends}")
    feature_layer = ends.index("features")
    layers = []
    for i, (node, relu, _) in enumerate(chain):
        if i + 1 < len(chain):
            nxt = chain[i + 1][0]
            next_mul = _input_mul(graph, nxt)
            out_q = (float(np.float32(nxt.attrs["act_scale"])), int(nxt.attrs["act_zero_point"]) - 128)
        else:
            next_mul = np.ones(graph.tensors[node.attrs["weight"]].shape[0], np.float32)
            out_q = output_quantization(graph, "output")
        layers.append(_layer(graph, node, relu, out_q, next_mul))
    first = chain[0][0]
    feature_mul = (_input_mul(graph, chain[feature_layer + 1][0]) if feature_layer + 1 < len(chain)
                   else np.ones(layers[feature_layer].weight.shape[0], np.float32))
    feature_scale = (np.float32(layers[feature_layer].out_scale) / feature_mul).astype(np.float32)
    cfg = graph.meta.get("config", {})
    return IntMlp(_input_mul(graph, first), float(np.float32(first.attrs["act_scale"])),
                  int(first.attrs["act_zero_point"]) - 128, tuple(layers), feature_layer, feature_scale,
                  str(cfg.get("task", "")), str(cfg.get("loss", "xent")))


__all__ = ["is_binary", "linear_chain", "lower_mlp", "output_quantization"]
