"""The graph form lowered to TFLite Micro's integer program: what it keeps and what it refuses."""

from __future__ import annotations

import numpy as np
import pytest

from edgebert.errors import ArtifactError
from edgebert.graph.form import Graph
from edgebert.graph.quantize import quantize_affine
from firmware_export import program
from firmware_export.fixedpoint import fully_connected_int8
from firmware_export.lower import lower_mlp


def test_each_layer_is_the_graphs_layer_rounded_once(digits_artifact, digits_program) -> None:
    """Per layer, the integer output is the graph's real output (its int8 weights and scales, the next
    layer's SmoothQuant multiplier, the next input's scale and zero point) rounded: within 1 LSB
    (0.5 for the rounding, the rest for the 2**-31 multiplier and the bias rounding)."""
    g = Graph.load(digits_artifact.path / "graph.safetensors")
    rng = np.random.default_rng(0)
    linears = g.linears()
    for i, lay in enumerate(digits_program.layers):
        node = linears[i]
        x = rng.integers(-128, 128, (200, lay.weight.shape[1])).astype(np.int8)
        lo, hi = lay.act_range
        got = fully_connected_int8(x, lay.in_zero_point, lay.weight, lay.bias, list(lay.multipliers),
                                   list(lay.shifts), lay.out_zero_point, lo, hi).astype(np.int64)
        a = node.attrs
        real = ((x.astype(np.float64) - lay.in_zero_point) * a["act_scale"]) @ (
            g.tensors[a["weight"]].astype(np.float64) * g.tensors[a["weight_scale"]][:, None]).T + g.tensors[a["bias"]]
        if i + 1 < len(linears):
            nxt = linears[i + 1].attrs
            real = np.maximum(real, 0) * g.tensors[nxt["input_mul"]] if lay.relu else real * g.tensors[nxt["input_mul"]]
        expected = np.clip(np.rint(real / lay.out_scale) + lay.out_zero_point, lo, hi)
        assert np.abs(got - expected).max() <= 1, lay.name


def test_the_input_is_quantized_as_tflite_does(digits_program) -> None:
    """MUL then QUANTIZE in float32, ties rounded away from zero (std::round), codes clamped."""
    m = digits_program
    x = np.zeros((1, m.input_dim), np.float32)
    k = int(np.argmax(m.input_mul < 10))
    x[0, k] = np.float32(2.5 * m.input_scale) / m.input_mul[k]  # lands near a tie
    scaled = (x * m.input_mul) / np.float32(m.input_scale)
    q = program.quantize_input(m, x)
    assert q[0, k] == np.clip(np.sign(scaled[0, k]) * np.floor(abs(scaled[0, k]) + 0.5) + m.input_zero_point, -128, 127)
    assert program.quantize_input(m, np.full((1, m.input_dim), 1e9, np.float32)).max() == 127


def test_the_integer_program_answers_as_the_int8_graph_does(digits_artifact, digits_program, digits_inputs) -> None:
    from edgebert.graph import reference

    g = Graph.load(digits_artifact.path / "graph.safetensors")
    x = digits_inputs[:1797]
    _, out = program.run(digits_program, x)
    ref = reference.run(g, {"x": x})["output"]
    assert (program.dequantize_output(digits_program, out).argmax(1) == ref.argmax(1)).mean() >= 0.99
    # the features tensor is the next layer's quantized input: the graph quantizes it the same way
    feats, _ = program.run(digits_program, x)
    nxt = g.linears()[-1].attrs
    graph_codes = quantize_affine(ref_features(g, x) * g.tensors[nxt["input_mul"]], np.float32(nxt["act_scale"]),
                                  nxt["act_zero_point"]).astype(np.int64) - 128
    assert np.abs(graph_codes - feats).mean() < 0.05  # the codes agree but for rare accumulated 1-LSB roundings


def ref_features(g: Graph, x: np.ndarray) -> np.ndarray:
    from edgebert.graph import reference

    return reference.run(g, {"x": x})["features"]


def test_what_the_firmware_cannot_express_is_refused_by_name(digits_artifact, tiny_graph) -> None:
    with pytest.raises(ArtifactError, match="expected a TinyML MLP graph"):
        lower_mlp(tiny_graph[1])
    g = Graph.load(digits_artifact.path / "graph.safetensors")
    no_ranges = g.copy()
    no_ranges.meta = {k: v for k, v in g.meta.items() if k != "output_ranges"}
    with pytest.raises(ArtifactError, match="convert the model again"):
        lower_mlp(no_ranges)
    gelu = g.copy()
    relu = gelu.node("layers.0.relu")
    from edgebert.graph.form import Node

    gelu.replace(Node("gelu", relu.name, relu.inputs, relu.outputs, {"approximate": "tanh"}))
    with pytest.raises(ArtifactError, match="op 'gelu' cannot be expressed"):
        lower_mlp(gelu)
    negative = g.copy()
    negative.tensors = dict(g.tensors)
    negative.tensors["layers.1.input_mul"] = -g.tensors["layers.1.input_mul"]
    with pytest.raises(ArtifactError, match="positive finite input multipliers"):
        lower_mlp(negative)
