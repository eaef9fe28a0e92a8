"""The .tflite writer: TFLite Micro agrees bit for bit with the fixed-point reference, LiteRT within
1 LSB; the TFLM bundle holds the same bytes; the arena is measured by trying it."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from edgebert.graph.form import Graph
from firmware_export import program, tflite, tflm
from firmware_export.lower import lower_mlp


def test_tflm_is_bit_exact_with_the_reference_on_2000_digits_inputs(digits_program, digits_inputs) -> None:
    data = tflite.to_tflite(digits_program)
    arena = tflm.arena_bytes(data, digits_program.input_dim)
    feats, outs = tflm.run(data, digits_inputs, arena)
    ref_f, ref_o = program.run(digits_program, digits_inputs)
    assert len(digits_inputs) == 2000
    assert np.array_equal(outs, ref_o) and np.array_equal(feats, ref_f)
    assert (ref_o == 127).any() or (ref_o == -128).any()  # the noisy inputs reach saturation too


def test_tflm_is_bit_exact_on_the_sine_net_whose_first_layer_has_no_multiplier(sine_artifact) -> None:
    m = lower_mlp(Graph.load(sine_artifact.path / "graph.safetensors"))
    data = tflite.to_tflite(m)
    assert tflite.ops_of(m) == ["QUANTIZE", "FULLY_CONNECTED"]  # no MUL when the multiplier is all ones
    x = np.linspace(-6, 6, 500, dtype=np.float32)[:, None]
    feats, outs = tflm.run(data, x, tflm.arena_bytes(data, 1))
    ref_f, ref_o = program.run(m, x)
    assert np.array_equal(outs, ref_o) and np.array_equal(feats, ref_f)


def test_litert_runs_the_file_within_one_lsb(digits_program, digits_inputs) -> None:
    """LiteRT's optimized kernels (XNNPACK) round the requantization once, not twice: 1 LSB."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=tflite.to_tflite(digits_program))
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]["index"]
    out = {d["name"]: d["index"] for d in interp.get_output_details()}
    got = []
    for row in digits_inputs:
        interp.set_tensor(inp, row[None])
        interp.invoke()
        got.append(interp.get_tensor(out["output"])[0])
    _, ref = program.run(digits_program, digits_inputs)
    assert np.abs(np.array(got, np.int64) - ref).max() <= 1


def test_constant_buffers_are_16_byte_aligned_in_the_file(digits_program) -> None:
    from ai_edge_litert import schema_py_generated as schema

    data = tflite.to_tflite(digits_program)
    model = schema.Model.GetRootAsModel(data, 0)
    sizes = 0
    for i in range(1, model.BuffersLength()):
        buf = model.Buffers(i)
        if buf.DataLength():
            start = buf._tab.Vector(buf._tab.Offset(4))  # the first data byte's offset in the file
            assert start % 16 == 0
            sizes += buf.DataLength()
    assert sizes >= sum(lay.weight.size for lay in digits_program.layers)


def test_the_arena_is_the_smallest_that_runs(digits_program) -> None:
    data = tflite.to_tflite(digits_program)
    arena = tflm.arena_bytes(data, digits_program.input_dim)
    x = np.zeros((1, digits_program.input_dim), np.float32)
    tflm.run(data, x, arena)  # runs
    with pytest.raises(Exception):  # noqa: B017 - TFLM raises RuntimeError
        with tflm.quiet():
            tflm.run(data, x, arena - 16)
    assert tflm.recommended_arena(arena) >= arena * 1.1


def test_the_bundles_c_array_holds_the_tflite_bytes(digits_program, tmp_path) -> None:
    data = tflite.to_tflite(digits_program)
    files = tflm.bundle_files(data, tflite.ops_of(digits_program), 4096, "test")
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    assert "AddFullyConnected" in files["edgebert_ops.h"] and "kEdgebertArenaSize = 4096" in files["edgebert_ops.h"]
    (tmp_path / "dump.c").write_text(
        '#include <stdio.h>\n#include "model_data.h"\nint main(void) {\n'
        '    fwrite(edgebert_model_data, 1, edgebert_model_data_len, stdout);\n'
        '    return ((unsigned long)edgebert_model_data % 16u) != 0;\n}\n')
    subprocess.run(["cc", "-std=c99", "-Wall", "-Wextra", "-Werror", "-o", "dump", "dump.c", "model_data.c"],
                   cwd=tmp_path, check=True)
    assert subprocess.run([str(tmp_path / "dump")], capture_output=True, check=True).stdout == data
