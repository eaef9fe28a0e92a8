"""Bi-Attention (BiBERT), the attention of a fully binarized (W1A1) student: its numpy definition
against a loop over keys, the torch forward against it, a straight-through gradient that reaches
the query and key weights, the lowered graph and its ONNX emission against torch, the config flag
round-trip, and ``convert --precision binary-full`` with a budget building a student with it."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from edgebert import measure
from edgebert.compress.lower import lower_bert
from edgebert.compress.ste import bi_attention as bi_attention_torch
from edgebert.errors import CheckpointError, InputError
from edgebert.graph import reference
from edgebert.graph.binarize import bi_attention
from edgebert.graph.form import Graph
from edgebert.model.config import BertConfig
from edgebert.model.encoder import BertEncoder
from edgebert.model.zoo import random_weights

EPS32 = float(np.finfo(np.float32).eps)


def loop_bi_attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """BiBERT's definition, one query at a time, in float64."""
    out = np.zeros(q.shape)
    for b, h, i in np.ndindex(*q.shape[:3]):
        chosen = [j for j in range(q.shape[2])
                  if keys[b, j] and np.sum(np.where(q[b, h, i] >= 0, 1, -1) * np.where(k[b, h, j] >= 0, 1, -1)) >= 0]
        for j in chosen:
            out[b, h, i] += np.abs(v[b, h, j]).mean() * np.where(v[b, h, j] >= 0, 1.0, -1.0) / len(chosen)
    return out


def test_bi_attention_is_the_mean_of_the_agreeing_real_keys_binarized_values() -> None:
    rng = np.random.default_rng(0)
    q, k, v = (rng.normal(size=(2, 3, 7, 8)).astype(np.float32) for _ in range(3))
    q[0, 0, 0] = 0.0  # a zero counts as +1, as everywhere in the 1-bit path
    keys = np.ones((2, 7), bool)
    keys[1, 4:] = False  # padding
    got = bi_attention(q, k, v, keys)
    np.testing.assert_allclose(got, loop_bi_attention(q, k, v, keys), rtol=0, atol=8 * EPS32 * np.abs(v).max())
    # a query that agrees with no real key gets zeros; padding never contributes, however it agrees
    k2 = np.broadcast_to(-np.sign(q[:, :, :1]) - (q[:, :, :1] == 0), k.shape).copy()  # every key opposite query 0
    k2[1, :, 4:] = np.sign(q[1, :, :1]) + (q[1, :, :1] == 0)  # padded keys agree fully
    out = bi_attention(q, k2, v, keys)
    assert np.all(out[:, :, 0] == 0.0)
    with pytest.raises(InputError, match="expected q, k, v"):
        bi_attention(q, k[:, :, :5], v, keys)


def test_the_torch_forward_is_the_numpy_definition_and_its_gradient_reaches_q_and_k() -> None:
    rng = np.random.default_rng(1)
    q, k, v = (torch.tensor(rng.normal(size=(2, 2, 6, 16)).astype(np.float32), requires_grad=True) for _ in range(3))
    keys = np.ones((2, 6), bool)
    keys[0, 5] = False
    keep = torch.tensor(keys, dtype=torch.float32)[:, None, None, :]
    out = bi_attention_torch(q, k, v, keep)
    want = bi_attention(q.detach().numpy(), k.detach().numpy(), v.detach().numpy(), keys)
    np.testing.assert_allclose(out.detach().numpy(), want, rtol=0, atol=8 * EPS32 * float(v.detach().abs().max()))
    (out * torch.tensor(rng.normal(size=out.shape).astype(np.float32))).sum().backward()
    # the signs and the 0/1 weights are straight-through: a plain sign would leave q and k without gradient
    assert all(t.grad is not None and float(t.grad.abs().sum()) > 0 for t in (q, k, v))


@pytest.fixture(scope="module")
def bi_encoder() -> BertEncoder:
    cfg = BertConfig(vocab_size=60, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=128, max_position_embeddings=32, binary_attention=True)
    model = BertEncoder(cfg)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in random_weights(cfg, seed=3, std=0.2).items()})
    return model.eval()


def _feeds() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(2)
    ids = rng.integers(1, 60, size=(3, 9))
    mask = np.ones((3, 9), np.int64)
    mask[1, 6:], mask[2, 2:] = 0, 0
    return {"input_ids": ids, "attention_mask": mask}


def test_the_lowered_graph_and_its_onnx_follow_the_torch_encoder(bi_encoder: BertEncoder) -> None:
    g = lower_bert(bi_encoder)
    assert [n.attrs.get("binary") for n in g.nodes if n.op == "attention"] == [True, True]
    feeds = _feeds()
    with torch.no_grad():
        want = bi_encoder(torch.from_numpy(feeds["input_ids"]), torch.from_numpy(feeds["attention_mask"])).numpy()
    valid = feeds["attention_mask"].astype(bool)
    got = reference.run(g, feeds)["last_hidden_state"]
    # the key choices are integers on both sides (exact); what differs is float rounding after LayerNorm
    np.testing.assert_allclose(got[valid], want[valid], rtol=0, atol=256 * EPS32 * float(np.abs(want).max()))
    softmax = lower_bert(BertEncoder(replace(bi_encoder.config, binary_attention=False)))
    assert not any(n.attrs.get("binary") for n in softmax.nodes)
    model = to_onnx_checked(g)
    onnx_out = measure.session(model.SerializeToString()).run(None, feeds)[0]
    np.testing.assert_allclose(onnx_out[valid], got[valid], rtol=0, atol=256 * EPS32 * float(np.abs(got).max()))
    assert "Softmax" not in {n.op_type for n in model.graph.node}


def to_onnx_checked(g: Graph) -> onnx.ModelProto:
    from edgebert.emit.onnx import to_onnx

    model = to_onnx(g)
    onnx.checker.check_model(model)
    return model


def test_the_padding_mask_reaches_bi_attention(bi_encoder: BertEncoder) -> None:
    feeds = _feeds()
    ids = torch.from_numpy(feeds["input_ids"])
    mask = torch.from_numpy(feeds["attention_mask"])
    noisy = ids.clone()
    noisy[mask == 0] = 7  # other ids under the padding
    with torch.no_grad():
        a, b = bi_encoder(ids, mask), bi_encoder(noisy, mask)
    assert torch.equal(a[mask.bool()], b[mask.bool()])


def test_the_config_flag_round_trips_and_plain_configs_stay_as_hugging_face_writes_them() -> None:
    base = {"model_type": "bert", "vocab_size": 10, "hidden_size": 8, "num_hidden_layers": 1,
            "num_attention_heads": 2, "intermediate_size": 16}
    assert "binary_attention" not in BertConfig.from_dict(base).to_dict()
    cfg = BertConfig.from_dict({**base, "binary_attention": True})
    assert cfg.binary_attention and BertConfig.from_dict({**cfg.to_dict(), "model_type": "bert"}) == cfg
    with pytest.raises(CheckpointError, match="binary_attention true or false, found 'yes'"):
        BertConfig.from_dict({**base, "binary_attention": "yes"})


def test_binary_full_with_a_budget_distils_a_bi_attention_student(tiny_ckpt: Path, calibration_file: Path,
                                                                 tmp_path: Path) -> None:
    import edgebert
    from edgebert.runtime.engine import Engine

    art = edgebert.convert(tiny_ckpt, tmp_path / "full", "binary-full", calibration_file, steps=6)
    m = art.manifest
    assert m.quantization["groups"]["softmax"] == "none (Bi-Attention)"
    assert m.quantization["binarization_aware_training"] and m.quantization["bits"]["activations"] == 1
    g = Graph.load(art.path / "graph.safetensors")
    assert all(n.attrs.get("binary") for n in g.nodes if n.op == "attention")
    assert g.meta["config"]["binary_attention"] is True
    fid = m.metrics["fidelity"]
    assert "teacher" in fid["metric"]  # measured against the fp32 checkpoint it was distilled from
    # the C kernels compute the oracle's integers; the attention's key choices follow from them
    assert fid["kernel_vs_reference_max_abs"] <= 1e-4
    emb = Engine.load(art.path).embed(["Bi-Attention picks keys by their signs.", "ok"])
    assert emb.shape == (2, 128) and np.isfinite(emb).all()
    # the W1A8 conversion of the same teacher keeps softmax attention
    w1a8 = edgebert.convert(tiny_ckpt, tmp_path / "w1a8", "binary", calibration_file, steps=2)
    assert w1a8.manifest.quantization["groups"]["softmax"] == "fp32"
    config = json.loads((tmp_path / "full").joinpath("manifest.json").read_text())["architecture"]["config"]
    assert config["binary_attention"] is True


def test_a_w1a1_student_converts_to_an_int8_onnx_artifact_with_its_bi_attention(tiny_ckpt: Path, calibration_file: Path,
                                                                               tmp_path: Path) -> None:
    import edgebert
    from edgebert.distill import distill
    from edgebert.runtime.engine import Engine

    distill(tiny_ckpt, calibration_file, tmp_path / "s", "L1H64", steps=2, save_every=2, binarize="w1a1")
    assert json.loads((tmp_path / "s" / "config.json").read_text())["binary_attention"] is True
    art = edgebert.convert(tmp_path / "s", tmp_path / "int8", "int8", calibration_file)
    ops = {n.op_type for n in onnx.load(art.path / "model.onnx").graph.node}
    assert "Softmax" not in ops and "GreaterOrEqual" in ops  # the artifact runs Bi-Attention, as the student did
    emb = Engine.load(art.path).embed(["Signs pick the keys.", "ok"])
    assert emb.shape[0] == 2 and np.isfinite(emb).all()
