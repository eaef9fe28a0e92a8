"""A binarized (W1A8) TinyML net exported as C: the integer program follows the binarized graph to
the output's quantization step, the C build on the host (and the Cortex-M4 under QEMU) computes
the program bit for bit, its flash is below the int8 firmware's, and what cannot be built is
refused in one line."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from edgebert.artifact import Artifact
from edgebert.cli import main
from edgebert.errors import ArtifactError
from edgebert.graph import reference
from edgebert.graph.form import Graph
from edgebert.runtime.engine import Engine
from firmware_export import program, program_binary
from firmware_export.export import export
from firmware_export.lower_binary import lower_binary_mlp
from tests.firmware.conftest import M4_TOOLS, needs_m4


@pytest.fixture(scope="module")
def binary_digits(digits_model: Path, tmp_path_factory: pytest.TempPathFactory):
    import edgebert

    return edgebert.convert(digits_model, tmp_path_factory.mktemp("bin") / "digits-binary", "binary",
                            digits_model / "calibration.npy", steps=400)


@pytest.fixture(scope="module")
def binary_c(binary_digits, tmp_path_factory: pytest.TempPathFactory):
    return export(binary_digits.path, "c", tmp_path_factory.mktemp("fw") / "digits-binary-c", measure=M4_TOOLS)


def test_each_integer_layer_follows_the_binarized_graph_to_its_rounding(binary_digits, digits_inputs) -> None:
    from edgebert.graph.binarize import per_row
    from edgebert.graph.quantize import quantize_affine

    g = Graph.load(binary_digits.path / "graph.safetensors")
    model = lower_binary_mlp(g)
    seen: dict[str, np.ndarray] = {}
    out = reference.run(g, {"x": digits_inputs}, observer=lambda n, v, m: seen.__setitem__(n.name, v))["output"]
    nodes = g.linears()
    for i, (lay, node) in enumerate(zip(model.layers, nodes, strict=True)):
        a = node.attrs
        codes = quantize_affine(seen[node.name], np.float32(a["act_scale"]), np.uint8(a["act_zero_point"]))
        q_in = (codes.astype(np.int16) - 128).astype(np.int8)  # the graph's own input codes, as int8
        want = seen[nodes[i + 1].name] if i + 1 < len(nodes) else out  # the graph's real output of the layer
        got = (pb_out := program_binary.binary_layer(lay, q_in)).astype(np.float32)
        got = (got - np.float32(lay.out_zero_point)) * np.float32(lay.out_scale)
        # the exact integer value is off by the rounding of centre and bias at 2**-F accumulator steps
        # (at most (|T| + 1) / 2**(F + 1) steps of s_in * scale), then requantized: half an output step
        total = np.abs(q_in.astype(np.int64) - lay.in_zero_point).sum(1, keepdims=True)
        unit = np.float32(lay.in_scale) * per_row(reference.binary_weight(g, node)).scale[None, :]
        bound = 0.5 * lay.out_scale + (total + 1) / 2.0 ** (lay.frac_bits + 1) * unit + 1e-5 * np.abs(want).max()
        lo, hi = lay.act_range
        inside = (want >= (lo - lay.out_zero_point) * lay.out_scale) & (want <= (hi - lay.out_zero_point) * lay.out_scale)
        assert (np.abs(got - want) <= bound)[inside].all() and inside.mean() >= 0.99
        assert ((pb_out == lo) | (pb_out == hi))[~inside].all()  # beyond the range: clamped, as the graph's codes
    assert all(0 <= lay.frac_bits <= 16 and lay.worst_accumulator() <= 2**31 - 1 for lay in model.layers)


def test_the_c_export_runs_the_packed_bits_bit_exactly(binary_c, binary_digits, digits_inputs) -> None:
    art = Artifact.load(binary_c.artifact.path)  # every file verifies against the manifest
    m = art.manifest
    assert m.runtime == "c99" and m.precision == "binary" and m.firmware["ops"] == ["linear_w1a8", "relu"]
    assert "model.onnx" not in m.files and "eb_binary_fc.h" in m.files and "eb_binary.h" in m.files
    assert binary_c.firmware["agreement"]["c_host_vs_reference"] == "bit-exact"
    model = lower_binary_mlp(Graph.load(binary_digits.path / "graph.safetensors"))
    source = (art.path / "edgebert_model.c").read_text()
    assert "const int8_t eb_w" not in source and source.count("static const uint8_t eb_w") == 3  # no int8 weights
    assert all(f"int32_t eb_c{i}[1]" in source and f"int32_t eb_m{i}[1]" in source for i in range(3))
    engine = Engine.load(art.path)  # the host build of the same C, through the firmware runtime
    f, q = program_binary.run(model, digits_inputs)
    assert np.array_equal(engine.output(digits_inputs), program.dequantize_output(model, q))  # type: ignore[arg-type]
    assert np.array_equal(engine.features(digits_inputs), program.dequantize_features(model, f))  # type: ignore[arg-type]


@needs_m4
def test_on_the_cortex_m4_it_is_bit_exact_and_smaller_than_int8(binary_c, digits_c) -> None:
    fig, fig8 = binary_c.firmware["figures"], digits_c.firmware["figures"]
    assert binary_c.firmware["agreement"]["m4_vs_host"].startswith("bit-exact")
    # 3,392 int8 weight bytes become 424 bytes of signs, a bias per row and one centre, multiplier and
    # shift per layer (a per-matrix scale)
    assert fig["inference_flash_bytes"] < fig8["inference_flash_bytes"]
    assert binary_c.artifact.manifest.memory["measured"] and fig["instructions_per_inference"] > 0


def test_what_cannot_be_built_is_refused_in_one_line(binary_digits, tmp_path: Path, capsys) -> None:
    code = main(["export", str(binary_digits.path), "--target", "tflite", "--out", str(tmp_path / "t")])
    err = capsys.readouterr().err
    assert code == 2 and "expected --target c for a binarized net" in err and err.count("\n") == 1
    assert not (tmp_path / "t").exists()
    g = Graph.load(binary_digits.path / "graph.safetensors")
    node = g.linears()[0]
    g.tensors[node.attrs["bias"]] = g.tensors[node.attrs["bias"]] * np.float32(1e12)  # no int32 accumulator holds it
    with pytest.raises(ArtifactError, match="expected int32 accumulators"):
        lower_binary_mlp(g)
    g2 = Graph.load(binary_digits.path / "graph.safetensors")
    first = g2.linears()[0]
    g2.replace(replace(first, attrs={**first.attrs, "act": "binary"}))  # W1A1 has no firmware form
    with pytest.raises(ArtifactError, match="expected a W1A8 linear"):
        lower_binary_mlp(g2)
