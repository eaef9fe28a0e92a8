"""The ONNX emitter against the numpy reference semantics, in ONNX Runtime."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from edgebert import measure
from edgebert.compress import reference
from edgebert.compress.calibrate import calibrate
from edgebert.compress.int8 import Int8Scheme, quantize_graph
from edgebert.compress.lower import lower_bert
from edgebert.emit.onnx import to_onnx
from edgebert.model.checkpoint import load_checkpoint
from edgebert.model.encoder import BertEncoder
from edgebert.model.tokenizer import encode_batch
from edgebert.model.zoo import corpus_path


@pytest.fixture(scope="module")
def graphs(tiny_ckpt):
    ckpt = load_checkpoint(tiny_ckpt)
    g = lower_bert(BertEncoder.from_checkpoint(ckpt))
    lines = corpus_path().read_text().splitlines()
    stats = calibrate(g, [dict(zip(("input_ids", "attention_mask"), encode_batch(ckpt.tokenizer, lines[:24]),
                                   strict=True))])
    return ckpt, g, stats


@pytest.mark.parametrize("variant", ["fp32", "static", "static-unfused", "dynamic", "minmax-nosmooth"])
def test_onnx_matches_reference_on_a_padded_batch(graphs, variant: str) -> None:
    ckpt, g, stats = graphs
    names = tuple(n.name for n in g.linears())
    schemes = {"static": Int8Scheme(), "static-unfused": Int8Scheme(), "dynamic": Int8Scheme(dynamic=names),
               "minmax-nosmooth": Int8Scheme(activation_range="minmax", smoothquant_alpha=None)}
    graph = g if variant == "fp32" else quantize_graph(g, stats, schemes[variant])
    model = to_onnx(graph, fused=variant != "static-unfused")
    onnx.checker.check_model(model)
    ids, mask = encode_batch(ckpt.tokenizer, corpus_path().read_text().splitlines()[200:205])

    got = measure.session(model.SerializeToString()).run(None, {"input_ids": ids, "attention_mask": mask})
    want = reference.run(graph, {"input_ids": ids, "attention_mask": mask})

    valid = mask.astype(bool)
    np.testing.assert_allclose(got[0][valid], want["last_hidden_state"][valid], atol=2e-3)
    np.testing.assert_allclose(got[1], want["sentence_embedding"], atol=1e-4)
    assert got[0].shape == (5, ids.shape[1], 128) and got[1].shape == (5, 128)


def test_unfused_emission_uses_standard_ops_only(graphs) -> None:
    _, g, stats = graphs

    model = to_onnx(quantize_graph(g, stats, Int8Scheme()), fused=False)

    assert {n.domain for n in model.graph.node} == {""}
    assert {"QuantizeLinear", "MatMulInteger"} <= {n.op_type for n in model.graph.node}
