"""End-to-end conversion of a random BERT-Tiny, and the artifact's integrity checks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import edgebert
from edgebert import measure
from edgebert.artifact import Artifact
from edgebert.errors import ArtifactError, InputError
from edgebert.model.tokenizer import encode_batch


def test_artifact_has_the_promised_files_and_manifest(tiny_artifact) -> None:
    m = tiny_artifact.manifest

    assert {p.name for p in tiny_artifact.path.iterdir()} == {"model.onnx", "tokenizer.json", "graph.safetensors",
                                                             "manifest.json"}
    assert m.precision == "int8" and m.format_version == 1 and m.toolkit_version == edgebert.__version__
    assert len(m.source["weights_sha256"]) == 64
    assert m.architecture["config"]["hidden_size"] == 128 and m.architecture["pooling"]["mode"] == "mean"
    assert m.quantization["groups"]["embeddings"].startswith("int8")
    assert set(m.quantization["per_linear"]) == {f"l{i}.{k}" for i in range(2) for k in ("qkv", "out", "ffn1", "ffn2")}
    assert "com.microsoft.MatMulIntegerToFloat" in m.onnx["ops"] and m.onnx["opset"] == 17
    assert m.metrics["fidelity"]["held_out"] and m.metrics["fidelity"]["worst"] > 0.99
    assert m.metrics["latency"]["median_ms"] > 0
    assert Artifact.load(tiny_artifact.path).manifest == m  # sha256 of every file verifies


def test_manifest_records_saturation_free_integer_ranges_and_fidelity_on_every_cpu(tiny_artifact) -> None:
    from edgebert.graph.avx2 import saturation_free
    from edgebert.graph.form import Graph

    m = tiny_artifact.manifest
    ranges, fid = m.quantization["integer_ranges"], m.metrics["fidelity"]
    graph = Graph.load(tiny_artifact.file("graph.safetensors"))

    assert ranges["name"] == "pairs" and ranges["saturation_free"] and ranges["same_sign_pair_limit"] == 128
    assert -32768 <= ranges["pair_sum_range"][0] and ranges["pair_sum_range"][1] <= 32767
    assert all(saturation_free(graph.tensors[n.attrs["weight"]]) for n in graph.linears())  # the record is true
    assert all(-32768 <= r["pair_sum_range"][0] and r["pair_sum_range"][1] <= 32767
               for r in m.quantization["per_linear"].values())
    assert abs(fid["mean"] - fid["reference_mean"]) <= 5e-4 and abs(fid["worst"] - fid["reference_worst"]) <= 5e-4
    assert fid["integer_kernel"]["name"] in ("x86-vnni", "x86-avx2", "x86-avx512bw", "x86-sse", "arm64", "unknown")


def test_artifact_runs_in_onnxruntime_with_dynamic_axes(tiny_artifact) -> None:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tiny_artifact.file("tokenizer.json")))
    sess = measure.session(tiny_artifact.onnx_path)
    inputs = {i.name: i for i in sess.get_inputs()}

    for texts in (["one sentence"], ["a", "batch of three", "sentences of different lengths here"]):
        ids, mask = encode_batch(tok, texts)
        hidden, sentence = sess.run(["last_hidden_state", "sentence_embedding"],
                                    {"input_ids": ids, "attention_mask": mask})
        assert hidden.shape == (len(texts), ids.shape[1], 128) and hidden.dtype == np.float32
        assert sentence.shape == (len(texts), 128)
    assert inputs["input_ids"].type == "tensor(int64)" and inputs["input_ids"].shape == ["batch", "seq"]


@pytest.mark.parametrize("damage, match", [
    (lambda d: (d / "model.onnx").write_bytes((d / "model.onnx").read_bytes()[:-10]), "truncated"),
    (lambda d: (d / "model.onnx").write_bytes(b"x" + (d / "model.onnx").read_bytes()[1:]), "tampered"),
    (lambda d: (d / "tokenizer.json").unlink(), "expected a file listed"),
    (lambda d: (d / "manifest.json").write_text("{}"), "invalid"),
])
def test_tampered_artifact_is_refused(tiny_artifact, tmp_path: Path, damage, match: str) -> None:
    copy = Path(shutil.copytree(tiny_artifact.path, tmp_path / "copy"))
    damage(copy)

    with pytest.raises(ArtifactError, match=match):
        Artifact.load(copy)


def test_fp32_conversion_needs_no_calibration(tiny_ckpt, tmp_path: Path) -> None:
    art = edgebert.convert(tiny_ckpt, tmp_path / "fp32", "fp32")

    assert art.manifest.precision == "fp32" and art.manifest.metrics == {}
    assert "MatMul" in art.manifest.onnx["ops"] and not any("Integer" in op for op in art.manifest.onnx["ops"])


def test_existing_output_is_kept_without_force_and_replaced_with_it(tiny_ckpt, calibration_file, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")

    with pytest.raises(InputError, match="existing one.*--force"):
        edgebert.convert(tiny_ckpt, out, "int8", calibration_file)
    assert (out / "keep.txt").read_text() == "mine"

    edgebert.convert(tiny_ckpt, out, "int8", calibration_file, force=True, measure=False)
    assert not (out / "keep.txt").exists() and (out / "manifest.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary leftovers


def test_manifest_is_plain_json_with_every_file_hashed(tiny_artifact) -> None:
    raw = json.loads((tiny_artifact.path / "manifest.json").read_text())

    assert set(raw["files"]) == {"model.onnx", "tokenizer.json", "graph.safetensors"}
    assert all(len(v["sha256"]) == 64 and v["bytes"] > 0 for v in raw["files"].values())


def test_plain_bert_with_mixed_length_calibration_and_a_small_vocabulary_converts(tmp_path: Path) -> None:
    from edgebert.model.zoo import make_random_bert

    ckpt = make_random_bert(tmp_path / "plain", "bert-tiny", seed=2, sentence_transformers=False)
    cfg = json.loads((ckpt / "config.json").read_text())
    lines = [" ".join(["word"] * n) for n in range(1, 101)]  # 100 lines of 1..100 words: batches of many lengths
    (tmp_path / "cal.txt").write_text("\n".join(lines) + "\n")

    art = edgebert.convert(ckpt, tmp_path / "out", "int8", tmp_path / "cal.txt")

    fid = art.manifest.metrics["fidelity"]
    assert "sentence_embedding" not in art.manifest.onnx["outputs"] and cfg["vocab_size"] > 0
    assert fid["texts"] == 20 and fid["worst"] > 0.99 and art.manifest.metrics["latency"]["median_ms"] > 0


def test_latency_measurement_uses_valid_token_ids_for_a_tiny_vocabulary() -> None:
    from onnx import TensorProto, helper, numpy_helper

    table = np.zeros((40, 4), np.float32)  # a 40-token vocabulary: ids >= 40 would fail in Gather
    graph = helper.make_graph([helper.make_node("Gather", ["t", "input_ids"], ["y"])], "g",
                              [helper.make_tensor_value_info("input_ids", TensorProto.INT64, [None, None]),
                               helper.make_tensor_value_info("attention_mask", TensorProto.INT64, [None, None])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(table, "t")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)

    times = measure.latency_ms(measure.session(model.SerializeToString()), 1, 16, runs=3, warmup=1, vocab=40)

    assert len(times) == 3


def test_calibration_lines_are_cut_to_the_model_length_and_bounded_in_tokens(tiny_ckpt) -> None:
    """Issue 11: a 45 MB one-line calibration file ran 300 s at 6.3 GB without a result."""
    from edgebert.model.checkpoint import load_checkpoint
    from edgebert.source import bound_lines

    ckpt = load_checkpoint(tiny_ckpt)
    huge = "word " * 9_000_000  # 45 MB on one line

    kept = bound_lines(ckpt.tokenizer, [huge, "a short line"], ckpt.max_seq_length)

    assert len(kept[0]) == ckpt.max_seq_length * 101 and kept[1] == "a short line"
    ids, _ = encode_batch(ckpt.tokenizer, [kept[0]])
    assert ids.shape[1] == ckpt.max_seq_length  # still fills the model's length
    many = bound_lines(ckpt.tokenizer, ["one two three"] * 1000, ckpt.max_seq_length, max_tokens=500)
    assert 0 < len(many) < 1000 and sum(len(e.ids) for e in ckpt.tokenizer.encode_batch(many)) <= 500


def test_an_int8_mlp_records_the_range_of_its_outputs(digits_artifact) -> None:
    """What the firmware export quantizes a TinyML net's outputs with (issue 13)."""
    from edgebert.graph import reference
    from edgebert.graph.form import Graph

    g = Graph.load(digits_artifact.path / "graph.safetensors")
    ranges = g.meta["output_ranges"]
    calib = np.load(digits_artifact.manifest.source["directory"] + "/calibration.npy")

    out = reference.run(g, {"x": calib})
    assert set(ranges) == {"features", "output"}
    for name, (lo, hi) in ranges.items():  # held-out rows may lie outside; calibration rows may not
        head = out[name][: int(len(calib) * 0.8)]
        assert lo <= float(head.min()) and float(head.max()) <= hi and lo < hi
