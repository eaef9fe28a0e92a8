"""A transformer text encoder on a microcontroller: the integer arithmetic (against its real-valued
definition, with bounds from the rounding steps), the lowering of an int8 BERT graph, the C build
(bit for bit with the fixed-point reference, host and Cortex-M4), the export and the runtime, and
hostile token ids."""

from __future__ import annotations

import ctypes
import math
import re
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from edgebert.cli import main
from edgebert.errors import ArtifactError, InputError
from edgebert.graph import reference
from edgebert.graph.form import RANGE_PREFIX, Graph, Node
from edgebert.runtime.engine import Engine
from edgebert.runtime.text_firmware import TextFirmware
from firmware_export import c99_text, encoder, intops, toolchain
from firmware_export.export import export
from firmware_export.fixedpoint import quantize_multiplier
from firmware_export.lower_encoder import lower_encoder
from firmware_export.text import probe_sentences
from tests.firmware.conftest import needs_m4

SENTENCES = ["A tiny BERT runs on a microcontroller.", "Federated rounds travel over MQTT.",
             "Quantization keeps int8 weights and a scale per channel.", "x"]


@pytest.fixture(scope="module")
def tiny_encoder_graph(tiny_artifact) -> Graph:
    return Graph.load(tiny_artifact.path / "graph.safetensors")


@pytest.fixture(scope="module")
def text_c(tiny_artifact, tmp_path_factory: pytest.TempPathFactory):
    """The tiny BERT exported to C for the Cortex-M4 budget (measured under QEMU when the tools exist)."""
    from tests.firmware.conftest import M4_TOOLS

    return export(tiny_artifact.path, "c", tmp_path_factory.mktemp("fw") / "tiny-c", device="cortex-m4" if M4_TOOLS
                  else None, measure=M4_TOOLS)


# ------------------------------------------------------------------ integer arithmetic
def test_isqrt_and_rounded_division_are_exact() -> None:
    rng = np.random.default_rng(0)
    v = np.concatenate([rng.integers(0, 2**62, 2000), np.arange(0, 300), [2**62 - 1, 4, 9, 15, 16]]).astype(np.int64)
    assert (intops.isqrt(v) == np.array([math.isqrt(int(x)) for x in v])).all()
    n, d = rng.integers(-10**12, 10**12, 2000), rng.integers(1, 10**6, 2000)
    want = [int(math.copysign(math.floor(abs(a) / b + 0.5), a)) if (abs(a) * 2) % (2 * b) != b else
            int(math.copysign(abs(a) // b + 1, a)) for a, b in zip(n.tolist(), d.tolist(), strict=True)]
    assert intops.rdiv(n, d).tolist() == want
    assert intops.rdiv(np.array([5, -5, 3, -3]), 2).tolist() == [3, -3, 2, -2]  # halves away from zero
    with pytest.raises(InputError):
        intops.isqrt(np.array([-1]))


def test_exp_tables_are_exp_within_their_rounding() -> None:
    x = np.arange(0, intops.EXP_LIMIT + 5000, 7)
    got = intops.exp_q15(x).astype(np.float64)
    real = np.exp(-x / 4096.0) * 32768
    # each table entry is off by <= 1/2, their product is rounded once more: <= 1/2 + 1/2 + 1/2 + 1/2**15
    assert np.abs(got - real).max() <= 1.5 + 2**-15
    assert (got[x >= intops.EXP_LIMIT] == 0).all()
    header = resources.files("firmware_export").joinpath("c", "eb_text.h").read_text()
    for name, table in (("eb_exp_hi", intops.EXP_HI), ("eb_exp_lo", intops.EXP_LO)):
        body = re.search(rf"{name}\[256\] = \{{(.*?)\}};", header, re.S).group(1)
        assert [int(v) for v in body.replace("\n", " ").split(",") if v.strip()] == table.tolist()


def test_integer_softmax_is_softmax_within_its_steps() -> None:
    rng = np.random.default_rng(1)
    s = 0.004  # real score per unit
    m, shift = quantize_multiplier(s * 4096)
    for n in (1, 2, 7, 32):
        scores = rng.integers(-3000, 3000, (200, n))
        p = (intops.softmax_row(scores, m, shift) + 128) / 256.0
        z = np.exp((scores - scores.max(1, keepdims=True)) * s)
        true = z / z.sum(1, keepdims=True)
        # output step 1/512 plus, per term of the sum, the exp tables' 1.5/2**15 and the exponent's rounding
        bound = 1 / 512 + (n + 1) * (1.5 / 32768 + 2**-13)
        clamped = true > 255.5 / 256
        assert np.abs(p - true)[~clamped].max(initial=0.0) <= bound
        assert (p[clamped] == 255 / 256).all()


def test_integer_layernorm_is_layernorm_within_one_output_step() -> None:
    rng = np.random.default_rng(2)
    s_in, s_out, zp = 1e-5, 0.03, -7
    gamma, beta = rng.uniform(0.5, 1.5, 64), rng.normal(0, 0.3, 64)
    g = np.rint(gamma / s_out * 2**intops.LN_FRAC).astype(np.int64)
    b = np.rint(beta / s_out * 2**intops.LN_FRAC).astype(np.int64)
    x = (rng.normal(0, 1, (300, 64)) * rng.uniform(0.1, 3, (300, 1)) / s_in).astype(np.int64)
    got = intops.layernorm(x, g, b, 0, zp)
    real = x * s_in
    norm = (real - real.mean(1, keepdims=True)) / real.std(1, keepdims=True) * gamma + beta
    want = np.clip(norm / s_out + zp, -128, 127)
    assert np.abs(got - want).max() <= 1.0  # half a step of rounding + the integer mean's and isqrt's error


# ------------------------------------------------------------------ lowering and the reference
def test_the_converter_records_ranges_and_the_integer_encoder_follows_the_artifact(tiny_encoder_graph) -> None:
    g = tiny_encoder_graph
    assert {f"{RANGE_PREFIX}l0.qkv", f"{RANGE_PREFIX}l1.res2", f"{RANGE_PREFIX}last_hidden_state"} <= set(g.tensors)
    for bits in (8, 4):
        model = lower_encoder(g, 32, bits)
        cos = []
        for i in range(20):
            ids = np.random.default_rng(i).integers(0, model.vocab, 5 + i)
            ref = reference.run(g, {"input_ids": ids[None], "attention_mask": np.ones((1, len(ids)), np.int64)})
            want = ref["sentence_embedding"][0] if "sentence_embedding" in ref else ref["last_hidden_state"][0].mean(0)
            got = encoder.embedding(model, encoder.run(model, ids), len(ids))
            cos.append(want @ got / np.linalg.norm(want) / np.linalg.norm(got))
        assert min(cos) >= 0.99  # issue 14's fidelity target for the firmware
    with pytest.raises(InputError, match="token ids"):
        encoder.run(model, np.zeros(33, np.int64))
    with pytest.raises(InputError, match=r"integers in \[0"):
        encoder.run(model, np.array([model.vocab]))


def test_an_artifact_without_ranges_or_with_a_foreign_graph_is_refused(tiny_encoder_graph, digits_artifact) -> None:
    old = tiny_encoder_graph.copy()
    old.tensors = {k: v for k, v in old.tensors.items() if not k.startswith(RANGE_PREFIX)}
    with pytest.raises(ArtifactError, match="convert the model again"):
        lower_encoder(old)
    with pytest.raises(ArtifactError, match="expected a BERT graph"):
        lower_encoder(Graph.load(digits_artifact.path / "graph.safetensors"))
    with pytest.raises(InputError, match="--max-length"):
        lower_encoder(tiny_encoder_graph, max_len=10_000)
    with pytest.raises(InputError, match="--embedding-bits"):
        lower_encoder(tiny_encoder_graph, word_bits=2)
    bi = tiny_encoder_graph.copy()
    att = next(n for n in bi.nodes if n.op == "attention")
    bi.replace(Node(att.op, att.name, att.inputs, att.outputs, {**att.attrs, "binary": True}))
    with pytest.raises(ArtifactError, match=f"{att.name}: expected softmax attention, found Bi-Attention"):
        lower_encoder(bi)


@pytest.mark.parametrize("bits", [8, 4])
def test_the_host_c_build_is_bit_exact_and_refuses_hostile_ids(tiny_encoder_graph, tmp_path: Path, bits: int) -> None:
    model = lower_encoder(tiny_encoder_graph, 32, bits)
    for name, text in c99_text.sources(model, "test").items():
        (tmp_path / name).write_text(text)
    lib = ctypes.CDLL(str(toolchain.host_library(tmp_path, ["edgebert_model.c", "eb_text_api.c"], tmp_path / "l.so")))
    out = np.zeros(model.out_dim, np.int32)
    p32 = ctypes.POINTER(ctypes.c_int32)
    for ids in probe_sentences(model, 40, seed=bits):
        x = np.ascontiguousarray(ids, np.int32)
        assert lib.eb_text_run(x.ctypes.data_as(p32), len(x), out.ctypes.data_as(p32)) == 0
        assert np.array_equal(out, encoder.run(model, ids))
    bad = np.array([1, model.vocab, -1] + [0] * 40, np.int32)
    assert lib.eb_text_run(bad.ctypes.data_as(p32), 2, out.ctypes.data_as(p32)) == -2  # id beyond the table
    assert lib.eb_text_run(bad[2:].ctypes.data_as(p32), 1, out.ctypes.data_as(p32)) == -2  # negative id
    assert lib.eb_text_run(bad.ctypes.data_as(p32), 0, out.ctypes.data_as(p32)) == -1
    assert lib.eb_text_run(bad.ctypes.data_as(p32), 33, out.ctypes.data_as(p32)) == -1


# ------------------------------------------------------------------ the export, the device, the CLI
def test_the_text_export_is_an_artifact_the_runtime_embeds_with(text_c, tiny_artifact) -> None:
    fw = text_c.firmware
    assert fw["agreement"]["c_host_vs_reference"] == "bit-exact"
    assert fw["agreement"]["cosine_to_artifact"]["min"] >= 0.99
    m = text_c.artifact.manifest
    assert m.runtime == "c99" and m.memory["seq"] == 32 and "model.onnx" not in m.device_files()
    engine, source = Engine.load(text_c.artifact.path), Engine.load(tiny_artifact.path)
    a, b = engine.embed(SENTENCES), source.embed(SENTENCES)
    assert a.shape == b.shape
    assert ((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)).min() >= 0.99
    long = " ".join(["microcontroller"] * 80)  # far beyond 32 tokens: cut as the tokenizer's truncation cuts
    assert np.isfinite(engine.embed([long])).all()
    tf = TextFirmware(text_c.artifact.path)
    for bad in (np.array([0, 10**9]), np.array([-5]), np.array([]), np.array([0.5, 1.5]), np.zeros(33, int)):
        with pytest.raises(InputError):
            tf.encode(bad)


@needs_m4
def test_the_cortex_m4_build_agrees_and_fits_the_issue_budgets(text_c) -> None:
    fw = text_c.firmware
    fig = fw["figures"]
    assert fw["agreement"]["m4_vs_host"].startswith("bit-exact")
    assert fig["tokens"] == 32 and fig["instructions_per_inference"] > 0
    assert fig["ram_bytes"] <= 64_000 and fig["flash_bytes"] <= 1_000_000  # issue 14's microcontroller budget
    assert fw["budget"]["fits"] and text_c.artifact.manifest.memory["measured"]


@needs_m4
def test_int8_rows_over_the_flash_budget_fall_back_to_4_bit_rows_or_are_refused(tiny_artifact, text_c, tmp_path,
                                                                                capsys) -> None:
    flash8 = text_c.firmware["figures"]["flash_bytes"]
    code = main(["export", str(tiny_artifact.path), "--target", "c", "--out", str(tmp_path / "a"), "--flash",
                 str(flash8 - 1), "--ram", "64K", "--json"])
    out, _ = capsys.readouterr()
    assert code == 0
    import json

    fw = json.loads(out)
    assert fw["quantization"]["word_bits"] == 4 and fw["figures"]["flash_bytes"] < flash8
    code = main(["export", str(tiny_artifact.path), "--target", "c", "--out", str(tmp_path / "b"), "--flash", "100K",
                 "--ram", "64K"])
    err = capsys.readouterr().err
    assert code == 2 and "over on flash" in err and err.count("\n") == 1 and not (tmp_path / "b").exists()


def test_the_tflm_export_runs_in_tflm_and_litert_close_to_the_artifact(tiny_artifact, tmp_path: Path,
                                                                        capsys) -> None:
    result = export(tiny_artifact.path, "tflm", tmp_path / "tflm", device="cortex-m4")
    fw = result.firmware
    ops = set(fw["ops"])
    assert {"BATCH_MATMUL", "SOFTMAX", "MEAN", "RSQRT", "GATHER", "FULLY_CONNECTED"} <= ops and "GELU" not in ops
    assert fw["agreement"]["cosine_to_artifact"]["min"] >= 0.99  # in TFLM
    assert fw["agreement"]["litert_cosine_to_artifact"]["min"] >= 0.99
    resolver = (result.artifact.path / "edgebert_ops.h").read_text()
    assert "AddBatchMatMul" in resolver and f"kEdgebertArenaSize = {fw['figures']['arena_bytes']}" in resolver
    source = Engine.load(tiny_artifact.path).embed(SENTENCES)
    for runtime_dir in (result.artifact.path,):
        got = Engine.load(runtime_dir).embed(SENTENCES)
        assert ((got * source).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(source, axis=1)).min() >= 0.99
    backend = Engine.load(result.artifact.path).backend
    for bad in (np.array([[0, 10**6]]), np.array([[-3, 1]]), np.array([[0.5, 1.0]])):  # GATHER must never see these
        with pytest.raises(InputError):
            backend.run({"input_ids": bad, "attention_mask": np.ones(bad.shape, np.int64)})
    code = main(["export", str(tiny_artifact.path), "--target", "tflite", "--embedding-bits", "4", "--out",
                 str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "expected 8 for --target tflite" in err and not (tmp_path / "o").exists()


# ------------------------------------------------------------------ several pooling modes (a distilled student's)
def _pooled_artifact(tiny_ckpt: Path, calibration_file: Path, where: Path, modes: list[str]):  # noqa: ANN202
    """The tiny BERT with sentence-transformers pooling ``modes`` and a Dense module over their
    concatenation, converted to int8."""
    import json
    import shutil

    from safetensors.numpy import save_file

    import edgebert

    ckpt = Path(shutil.copytree(tiny_ckpt, where / "ckpt"))
    (ckpt / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode": modes}))
    modules = json.loads((ckpt / "modules.json").read_text())
    modules.insert(2, {"path": "2_Dense", "type": "sentence_transformers.models.Dense"})
    (ckpt / "modules.json").write_text(json.dumps([{**m, "idx": i, "name": str(i)} for i, m in enumerate(modules)]))
    (ckpt / "2_Dense").mkdir()
    rng = np.random.default_rng(3)
    save_file({"linear.weight": rng.normal(0, 0.1, (48, 128 * len(modes))).astype(np.float32),
               "linear.bias": rng.normal(0, 0.1, 48).astype(np.float32)}, str(ckpt / "2_Dense" / "model.safetensors"))
    return edgebert.convert(ckpt, where / "int8", "int8", calibration_file)


@pytest.mark.parametrize("modes", [["cls", "mean"], ["mean", "max"]])
def test_several_pooling_modes_run_bit_exact_in_c_and_follow_the_artifact(tiny_ckpt, calibration_file, tmp_path: Path,
                                                                          modes: list[str]) -> None:
    art = _pooled_artifact(tiny_ckpt, calibration_file, tmp_path, modes)
    g = Graph.load(art.path / "graph.safetensors")
    model = lower_encoder(g, 32, 8)
    assert model.modes == tuple(modes) and model.projection is not None and model.projection.shape == (48, 256)
    for name, text in c99_text.sources(model, "test").items():
        (tmp_path / name).write_text(text)
    lib = ctypes.CDLL(str(toolchain.host_library(tmp_path, ["edgebert_model.c", "eb_text_api.c"], tmp_path / "l.so")))
    out = np.zeros(model.out_dim, np.int32)
    p32 = ctypes.POINTER(ctypes.c_int32)
    cos = []
    for ids in probe_sentences(model, 24, seed=5):
        x = np.ascontiguousarray(ids, np.int32)
        assert lib.eb_text_run(x.ctypes.data_as(p32), len(x), out.ctypes.data_as(p32)) == 0
        assert np.array_equal(out, encoder.run(model, ids))
        want = reference.run(g, {"input_ids": ids[None], "attention_mask": np.ones((1, len(ids)), np.int64)})
        got = encoder.embedding(model, out, len(ids))
        w = want["sentence_embedding"][0]
        cos.append(w @ got / np.linalg.norm(w) / np.linalg.norm(got))
    assert min(cos) >= 0.99  # issue 14's fidelity target for the firmware


def test_cls_and_mean_pooling_exports_to_tflite_and_max_is_refused_there(tiny_ckpt, calibration_file,
                                                                         tmp_path: Path) -> None:
    art = _pooled_artifact(tiny_ckpt, calibration_file, tmp_path / "cm", ["cls", "mean"])
    result = export(art.path, "tflite", tmp_path / "tfl")
    assert result.firmware["quantization"]["pool"] == "cls+mean"
    assert result.firmware["agreement"]["cosine_to_artifact"]["min"] >= 0.99
    got, want = Engine.load(result.artifact.path).embed(SENTENCES), Engine.load(art.path).embed(SENTENCES)
    assert ((got * want).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)).min() >= 0.99
    art = _pooled_artifact(tiny_ckpt, calibration_file, tmp_path / "mm", ["mean", "max"])
    with pytest.raises(ArtifactError, match="found max"):
        export(art.path, "tflite", tmp_path / "tfl-max")
    assert not (tmp_path / "tfl-max").exists()


def test_4_bit_tables_keep_the_special_tokens_rows_in_int8_bit_exact_in_c(tiny_artifact, tmp_path: Path) -> None:
    from firmware_export.text import special_ids

    g = Graph.load(tiny_artifact.path / "graph.safetensors")
    specials = special_ids(tiny_artifact.path / "tokenizer.json")
    assert len(specials) == 2  # [CLS] and [SEP]
    model = lower_encoder(g, 32, 4, specials)
    plain = lower_encoder(g, 32, 4)
    assert model.wide.shape == (2, model.hidden) and list(model.wide_ids) == sorted(specials)
    for name, text in c99_text.sources(model, "test").items():
        (tmp_path / name).write_text(text)
    lib = ctypes.CDLL(str(toolchain.host_library(tmp_path, ["edgebert_model.c", "eb_text_api.c"], tmp_path / "l.so")))
    out = np.zeros(model.out_dim, np.int32)
    p32 = ctypes.POINTER(ctypes.c_int32)
    closer = 0
    for ids in probe_sentences(model, 24, seed=9):
        assert ids[0] in specials and ids[-1] in specials
        x = np.ascontiguousarray(ids, np.int32)
        assert lib.eb_text_run(x.ctypes.data_as(p32), len(x), out.ctypes.data_as(p32)) == 0
        assert np.array_equal(out, encoder.run(model, ids))
        ref = reference.run(g, {"input_ids": ids[None], "attention_mask": np.ones((1, len(ids)), np.int64)})
        want = ref["sentence_embedding"][0]
        cos = [float(e @ want / np.linalg.norm(e) / np.linalg.norm(want)) for e in
               (encoder.embedding(model, out, len(ids)), encoder.embedding(plain, encoder.run(plain, ids), len(ids)))]
        closer += cos[0] >= cos[1]
    assert closer >= 12  # int8 special rows are at least as faithful on most sentences
