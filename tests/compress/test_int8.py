"""The int8 pass on the graph form: SmoothQuant equivalence, per-linear search, overrides."""

from __future__ import annotations

import numpy as np
import pytest

from edgebert.compress.calibrate import calibrate
from edgebert.compress.int8 import Int8Scheme, quantize_graph, search_linear, smooth_factors
from edgebert.compress.lower import lower_bert
from edgebert.graph import reference
from edgebert.graph.form import Graph
from edgebert.model.checkpoint import load_checkpoint
from edgebert.model.encoder import BertEncoder
from edgebert.model.tokenizer import encode_batch
from edgebert.model.zoo import corpus_path


@pytest.fixture(scope="module")
def fp32_and_stats(tiny_ckpt):
    ckpt = load_checkpoint(tiny_ckpt)
    g = lower_bert(BertEncoder.from_checkpoint(ckpt))
    lines = corpus_path().read_text().splitlines()
    ids, mask = encode_batch(ckpt.tokenizer, lines[:32])
    stats = calibrate(g, [{"input_ids": ids, "attention_mask": mask}])
    ids, mask = encode_batch(ckpt.tokenizer, lines[100:116])
    return g, stats, {"input_ids": ids, "attention_mask": mask}


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_smoothing_is_exact_before_rounding() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (16, 8)).astype(np.float32) * np.array([1, 50, 1, 1, 1, 1, 1, 1], np.float32)
    w = rng.normal(0, 0.1, (4, 8)).astype(np.float32)

    s = smooth_factors(np.abs(x).max(0), w, 0.5)

    np.testing.assert_allclose((x / s) @ (w * s).T, x @ w.T, rtol=1e-4, atol=1e-5)
    assert s[1] == s.max()  # the outlier channel is divided the most


def test_search_picks_smoothing_for_an_outlier_channel(fp32_and_stats) -> None:
    g, stats, _ = fp32_and_stats
    st = stats["l0.ffn1"]
    st.channel_max[3] *= 40.0  # a LayerNorm outlier dimension, as in real BERTs
    st.rows = [np.concatenate(st.rows) * np.where(np.arange(st.channel_max.size) == 3, 40.0, 1.0)]

    plan = search_linear(g.tensors["l0.ffn1.weight"], st, Int8Scheme())

    assert plan.alpha is not None


def test_int8_graph_stays_close_to_fp32_and_overrides_apply(fp32_and_stats) -> None:
    g, stats, feeds = fp32_and_stats
    scheme = Int8Scheme(dynamic=("l0.qkv",), keep_fp32=("l1.ffn2",))

    q = quantize_graph(g, stats, scheme)
    got = reference.run(q, feeds)["sentence_embedding"]
    want = reference.run(g, feeds)["sentence_embedding"]

    assert _cos(got, want).min() > 0.999
    assert q.node("l0.qkv").attrs["act"] == "dynamic"
    assert "act" not in q.node("l1.ffn2").attrs and q.tensors["l1.ffn2.weight"].dtype == np.float32
    assert q.tensors["l0.ffn1.weight"].dtype == np.int8 and q.tensors["emb.word"].dtype == np.int8
    assert g.tensors["l0.ffn1.weight"].dtype == np.float32  # the fp32 graph is left untouched


def test_graph_round_trips_through_safetensors(fp32_and_stats, tmp_path) -> None:
    g, stats, feeds = fp32_and_stats
    q = quantize_graph(g, stats, Int8Scheme(activation_range="minmax", smoothquant_alpha=0.5))

    q.save(tmp_path / "graph.safetensors")
    back = Graph.load(tmp_path / "graph.safetensors")

    assert [n.attrs for n in back.nodes] == [n.attrs for n in q.nodes]
    np.testing.assert_array_equal(reference.run(back, feeds)["sentence_embedding"],
                                  reference.run(q, feeds)["sentence_embedding"])


@pytest.mark.parametrize("kwargs, match", [
    ({"activation_range": "entropy"}, "activation_range"),
    ({"smoothquant_alpha": 1.5}, "smoothquant_alpha"),
])
def test_scheme_rejects_bad_settings(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        Int8Scheme(**kwargs)


def test_greedy_mixed_precision_switches_the_linear_that_helps_most(fp32_and_stats) -> None:
    from edgebert.compress.int8 import choose_dynamic

    g, stats, feeds = fp32_and_stats
    want = reference.run(g, feeds)["sentence_embedding"]
    calls: list[tuple[str, ...]] = []

    def score(q: Graph) -> float:
        calls.append(tuple(n.name for n in q.linears() if n.attrs.get("act") == "dynamic"))
        return float(_cos(reference.run(q, feeds)["sentence_embedding"], want).mean())

    scheme, trail = choose_dynamic(g, stats, Int8Scheme(activation_range="minmax", smoothquant_alpha=None), score,
                                   budget=1)

    assert len(calls) == 1 + len(g.linears())  # the all-static baseline, then each single switch
    assert trail[0][0] == "(all static)"
    if len(trail) > 1:  # a switch is kept only when it scored better than the baseline
        assert scheme.dynamic == (trail[1][0],) and trail[1][1] > trail[0][1]
    else:
        assert scheme.dynamic == ()


def test_bias_correction_removes_the_mean_output_shift_of_weight_rounding(fp32_and_stats) -> None:
    from edgebert.graph.quantize import dequantize_symmetric

    g, stats, _ = fp32_and_stats
    corrected = quantize_graph(g, stats, Int8Scheme())
    plain = quantize_graph(g, stats, Int8Scheme(bias_correction=False))

    for name in ("l0.qkv", "l1.ffn2"):
        x = np.concatenate(stats[name].rows).astype(np.float64)  # the calibration rows
        want = x @ g.tensors[f"{name}.weight"].T + g.tensors[f"{name}.bias"]
        shifts = []
        for q in (corrected, plain):
            a = q.node(name).attrs
            w = dequantize_symmetric(q.tensors[a["weight"]], q.tensors[a["weight_scale"]])
            w = w * q.tensors[a["input_mul"]][None, :] if a.get("input_mul") else w
            shifts.append(np.abs((x @ w.T + q.tensors[a["bias"]] - want).mean(0)).max())
        assert shifts[0] <= 1e-3 * shifts[1] + 1e-6, (name, shifts)
        assert shifts[1] > 0
