"""``edgebert convert --precision binary``: a binarized artifact holds packed bits and no ONNX
model, its host library runs the 1-bit linears as the numpy oracle does, the runtime embeds with
it and refuses hostile ids and tampered files; a --steps budget distils it binarization-aware."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgebert.artifact import BINARY_RUNTIME
from edgebert.cli import main
from edgebert.errors import ArtifactError, InputError
from edgebert.graph import reference
from edgebert.graph.form import Graph
from edgebert.runtime.engine import Engine

SENTENCES = ["A binarized BERT keeps one bit per weight.", "Packed signs, eight to a byte.", "ok"]


@pytest.fixture(scope="module")
def binary_artifact(tiny_ckpt: Path, calibration_file: Path, tmp_path_factory: pytest.TempPathFactory):
    import edgebert

    return edgebert.convert(tiny_ckpt, tmp_path_factory.mktemp("bin") / "tiny-binary", "binary", calibration_file)


def test_the_artifact_holds_packed_bits_and_its_kernels_agree_with_the_oracle(binary_artifact) -> None:
    m = binary_artifact.manifest
    assert m.runtime == BINARY_RUNTIME and m.precision == "binary" and "model.onnx" not in m.files
    assert "graph.safetensors" in m.device_files() and "libedgebert_binary.so" in m.device_files()
    sizes = m.quantization["sizes"]
    assert sizes["linear_bits"] * 32 == sizes["linear_weights_fp32"]  # one bit per fp32 weight (widths divide by 8)
    g = Graph.load(binary_artifact.path / "graph.safetensors")
    rows = sum(g.tensors[n.attrs["weight"]].shape[0] for n in g.linears())
    assert sizes["linear_scales_centres"] == 8 * rows  # a float32 scale and centre per output row, nothing else
    fid = m.metrics["fidelity"]
    # the C kernels compute the oracle's integers; the float edges differ by rounding order at most
    assert fid["kernel_vs_reference_max_abs"] <= 1e-4 and abs(fid["mean"] - fid["reference_mean"]) <= 1e-4
    engine = Engine.load(binary_artifact.path)
    emb = engine.embed(SENTENCES)
    assert emb.shape == (3, 128) and np.isfinite(emb).all()
    ids, mask = engine.tokenizer.encode_batch(SENTENCES[:1])[0].ids, None
    feeds = {"input_ids": np.array([ids]), "attention_mask": np.ones((1, len(ids)), np.int64)}
    want = reference.run(g, feeds)["sentence_embedding"]
    assert np.abs(engine.backend.run(feeds)["sentence_embedding"] - want).max() <= 1e-5 and mask is None


def test_hostile_ids_and_a_tampered_artifact_are_refused(binary_artifact, tmp_path: Path) -> None:
    import shutil

    backend = Engine.load(binary_artifact.path).backend
    for bad in (np.array([[0, 10**6]]), np.array([[-1, 2]]), np.array([[0.5, 1.0]]), np.zeros((1, 10_000), int)):
        with pytest.raises(InputError):
            backend.run({"input_ids": bad, "attention_mask": np.ones(bad.shape, np.int64)})
    copy = Path(shutil.copytree(binary_artifact.path, tmp_path / "t"))
    data = bytearray((copy / "graph.safetensors").read_bytes())
    data[-1] ^= 0xFF  # one flipped bit among the packed signs
    (copy / "graph.safetensors").write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="sha256"):
        Engine.load(copy)


def test_binary_full_and_a_distillation_budget_from_the_cli(tiny_ckpt: Path, calibration_file: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["convert", str(tiny_ckpt), "--precision", "binary-full", "--calibration", str(calibration_file),
                 "--out", str(tmp_path / "full"), "--quiet"])
    out = capsys.readouterr().out
    assert code == 0 and "1-bit" in out and "through the artifact's C kernels" in out
    assert Engine.load(tmp_path / "full").manifest.quantization["bits"]["activations"] == 1
    code = main(["convert", str(tiny_ckpt), "--precision", "binary", "--calibration", str(calibration_file),
                 "--out", str(tmp_path / "d"), "--steps", "8", "--json", "--quiet"])
    m = json.loads(capsys.readouterr().out)
    assert code == 0 and m["quantization"]["binarization_aware_training"] and "distilled" in m["source"]
    assert not (tmp_path / ".d.binarize").exists()  # the distillation's state is gone once the artifact is written
    full_rows = Graph.load(tmp_path / "full" / "graph.safetensors").tensors["emb.word"].shape[0]
    code = main(["convert", str(tiny_ckpt), "--precision", "binary", "--calibration", str(calibration_file),
                 "--out", str(tmp_path / "v"), "--steps", "4", "--vocab-size", "200", "--quiet"])
    capsys.readouterr()
    rows = Graph.load(tmp_path / "v" / "graph.safetensors").tensors["emb.word"].shape[0]
    assert code == 0 and rows < full_rows  # the student's pruned table is what the artifact holds
    # its fidelity is to the teacher all the same: the held-out texts through the teacher's own tokenizer
    assert "teacher" in Engine.load(tmp_path / "v").manifest.metrics["fidelity"]["metric"]
    code = main(["convert", str(tiny_ckpt), "--precision", "binary", "--calibration", str(calibration_file),
                 "--out", str(tmp_path / "w"), "--vocab-size", "64"])
    err = capsys.readouterr().err
    assert code == 2 and "--vocab-size: expected" in err and not (tmp_path / "w").exists()
    code = main(["convert", str(tiny_ckpt), "--precision", "int8", "--calibration", str(calibration_file),
                 "--out", str(tmp_path / "x"), "--steps", "8"])
    err = capsys.readouterr().err
    assert code == 2 and "only with --precision binary" in err and not (tmp_path / "x").exists()
    code = main(["convert", str(tiny_ckpt), "--precision", "binary", "--calibration", str(calibration_file),
                 "--out", str(tmp_path / "y"), "--steps", "-3"])
    err = capsys.readouterr().err
    assert code == 2 and "expected a positive --steps" in err and err.count("\n") == 1
    assert not (tmp_path / "y").exists() and not (tmp_path / ".y.binarize").exists()  # nothing left behind


def test_a_tinyml_net_distilled_binarization_aware_beats_plain_binarization(digits_model: Path, tmp_path: Path) -> None:
    import edgebert
    from edgebert.model.tinyml import digits_data

    x, y = digits_data()
    test = np.random.default_rng(0).permutation(len(x))[1400:]  # the rows the net's training left out

    def accuracy(artifact) -> float:  # noqa: ANN001
        out = Engine.load(artifact.path).backend.run({"x": x[test]})
        return float((out[list(out)[-1]].argmax(1) == y[test]).mean())  # the logits, after the features

    plain = edgebert.convert(digits_model, tmp_path / "plain", "binary", digits_model / "calibration.npy")
    trained = edgebert.convert(digits_model, tmp_path / "aware", "binary", digits_model / "calibration.npy", steps=400)
    sizes = trained.manifest.quantization["sizes"]
    assert sizes["linear_bits"] == (64 * 32 + 32 * 32 + 32 * 10) // 8 and sizes["linear_scales_centres"] == 3 * 8
    assert accuracy(trained) > accuracy(plain) + 0.1
    backend = Engine.load(trained.path).backend  # non-finite or non-float inputs never reach the C kernels
    for bad in (np.full((1, 64), np.nan, np.float32), np.full((1, 64), np.inf, np.float32), np.ones((1, 64), int)):
        with pytest.raises(InputError, match="expected finite float inputs"):
            backend.run({"x": bad})


def test_four_bit_word_rows_halve_the_table_and_follow_their_codes(tiny_ckpt: Path, calibration_file: Path,
                                                                   binary_artifact, tmp_path: Path) -> None:
    import edgebert
    from edgebert.graph.quantize import dequantize_rows_4bit

    art = edgebert.convert(tiny_ckpt, tmp_path / "b4", "binary", calibration_file, embedding_bits=4)
    g4, g8 = (Graph.load(a / "graph.safetensors") for a in (art.path, binary_artifact.path))
    emb = g4.nodes[0].attrs
    word4, word8 = g4.tensors[emb["word"]], g8.tensors[g8.nodes[0].attrs["word"]]
    assert emb["word_bits"] == 4 and word4.dtype == np.uint8 and word4.shape == (word8.shape[0], word8.shape[1] // 2)
    assert art.manifest.quantization["bits"]["embeddings"] == 4
    ids = np.array([[0, 5, 17, 99]])
    out = reference.run(g4, {"input_ids": ids, "attention_mask": np.ones_like(ids)})
    rows = dequantize_rows_4bit(word4, g4.tensors[emb["word_scale"]], emb["word_cols"])
    assert np.isfinite(out["sentence_embedding"]).all() and rows.shape == word8.shape
    engine = Engine.load(art.path)  # the device runs the 4-bit rows through the same executor
    assert np.abs(engine.backend.run({"input_ids": ids, "attention_mask": np.ones_like(ids)})["sentence_embedding"]
                  - out["sentence_embedding"]).max() <= 1e-5
    with pytest.raises(InputError, match="--embedding-bits"):
        edgebert.convert(tiny_ckpt, tmp_path / "x", "int8", calibration_file, embedding_bits=4)


def test_a_binarization_aware_net_keeps_the_biases_it_trained(digits_model: Path, tmp_path: Path) -> None:
    """Bias correction moves a bias by the shift binarization causes from the float weights; a net
    distilled through 1-bit weights never ran with its float weights, so the correction would undo
    its training (measured: a W1A8 MiniLM student fell from 0.998 of its own forward to 0.11)."""
    import edgebert
    from edgebert.convert_binary import binarization_aware
    from edgebert.distill.mlp import distill_mlp
    from edgebert.model.tinyml import load_mlp

    calib = np.load(digits_model / "calibration.npy")
    student = tmp_path / "student"
    distill_mlp(digits_model, calib, student, "w1a8", steps=50)
    assert binarization_aware(student) == "w1a8" and binarization_aware(digits_model) is None
    _, latent = load_mlp(student)
    for model_dir, aware in ((student, True), (digits_model, False)):
        art = edgebert.convert(model_dir, tmp_path / f"out-{aware}", "binary", digits_model / "calibration.npy")
        assert art.manifest.quantization["binarization_aware_training"] is aware
        g = Graph.load(art.path / "graph.safetensors")
        _, weights = load_mlp(model_dir)
        same = [np.array_equal(g.tensors[n.attrs["bias"]], weights[f"layers.{i}.bias"])
                for i, n in enumerate(g.linears())]
        assert all(same) if aware else not any(same)  # trained biases kept; a float net's corrected
    assert set(latent) == {f"layers.{i}.{k}" for i in range(3) for k in ("weight", "bias")}


def test_a_binarized_text_encoder_has_no_firmware_export_and_says_so(binary_artifact, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    for target in ("c", "tflite"):
        code = main(["export", str(binary_artifact.path), "--target", target, "--out", str(tmp_path / target)])
        err = capsys.readouterr().err
        assert code == 2 and "expected an int8 text encoder, found a binarized one" in err and err.count("\n") == 1
        assert not (tmp_path / target).exists()
