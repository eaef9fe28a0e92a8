"""Saturation-safe integer ranges: the VPMADDUBSW emulation, the pair limit, and the converter's graphs.

The emulation tests run on any CPU. The last tests run ONNX Runtime's real AVX2 kernels under
``qemu-x86_64 -cpu Haswell`` (skipped when qemu-user is not installed; .ci/run installs it).
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgebert.compress.int8 import Int8Scheme, quantize_graph, quantize_weight
from edgebert.compress.saturation import RANGES, IntegerRanges, limit_pairs, quantize_pair_limited
from edgebert.cpu import integer_kernel, qemu_x86, run_as_cpu
from edgebert.emit.onnx import to_onnx
from edgebert.graph import reference
from edgebert.graph.avx2 import INT16_MAX, pair_sum_bounds, saturation_free, vpmaddubsw_matmul
from edgebert.model.tokenizer import encode_batch
from edgebert.model.zoo import corpus_path

needs_qemu = pytest.mark.skipif(qemu_x86() is None, reason="qemu-x86_64 not installed (apt-get install qemu-user)")


def _exact(a: np.ndarray, w: np.ndarray) -> np.ndarray:
    return a.astype(np.int64) @ w.astype(np.int64).T


def test_emulation_gives_the_documented_saturated_sum() -> None:
    a = np.full((1, 64), 255, np.uint8)
    w = np.full((1, 64), 127, np.int8)

    assert int(_exact(a, w)[0, 0]) == 2_072_640
    assert int(vpmaddubsw_matmul(a, w)[0, 0]) == 32_767 * 32  # 32 pairs, each clipped


def test_emulation_pairs_adjacent_reduction_indices_only() -> None:
    a = np.full((1, 6), 255, np.uint8)
    w = np.zeros((4, 6), np.int8)
    w[0, [0, 1]] = 127  # one pair: saturates
    w[1, [1, 2]] = 127  # two pairs, one big product each: exact
    w[2, [4, 5]] = -128  # the negative end
    w[3, [2, 3]] = [127, -127]  # opposite signs never saturate

    got = vpmaddubsw_matmul(a, w)[0]

    assert got.tolist() == [32_767, 2 * 255 * 127, -32_768, 0]


def test_emulation_equals_exact_products_when_nothing_saturates() -> None:
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (37, 95), dtype=np.uint8)  # odd reduction length: the last index is unpaired
    w = rng.integers(-40, 41, (13, 95)).astype(np.int8)  # 2 * 255 * 40 < 32767

    np.testing.assert_array_equal(vpmaddubsw_matmul(a, w), _exact(a, w))


def test_limit_pairs_respects_the_limit_and_leaves_other_pairs_rounded() -> None:
    real = np.array([[127.0, 90.2, 10.4, -3.6, -100.0, -60.0, 120.0, -126.0]])

    codes = limit_pairs(real, 128)

    assert codes.tolist()[0][2:4] == [10, -4]  # within the limit: plain rounding
    assert codes.tolist()[0][6:8] == [120, -126]  # opposite signs: no limit
    assert abs(int(codes[0, 0])) + abs(int(codes[0, 1])) <= 128
    assert abs(int(codes[0, 4])) + abs(int(codes[0, 5])) <= 128
    assert saturation_free(codes)


def test_limit_pairs_keeps_the_important_channel_closer() -> None:
    real = np.array([[100.0, 100.0]])

    even = limit_pairs(real, 128)
    first = limit_pairs(real, 128, importance=np.array([9.0, 1.0]))

    assert even.tolist() == [[64, 64]]
    assert first[0, 0] > first[0, 1] and int(first[0, 0]) + int(first[0, 1]) == 128
    assert abs(100 - int(first[0, 0])) * 9 == pytest.approx(abs(100 - int(first[0, 1])), abs=9)


def test_per_channel_scale_loses_no_more_than_either_end_of_its_grid() -> None:
    rng = np.random.default_rng(4)
    w = rng.standard_t(3, (64, 96)).astype(np.float32)
    h = rng.uniform(0.1, 2.0, 96)

    codes, scales = quantize_pair_limited(w, 128, importance=h)

    def err(c: np.ndarray, sc: np.ndarray) -> np.ndarray:
        return ((w - c * sc[:, None]) ** 2 * h).sum(1)

    fine = np.abs(w).max(1) / 127
    coarse = np.abs(w).max(1) / 64
    assert saturation_free(codes)
    assert (err(codes, scales) <= err(limit_pairs(w / fine[:, None], 128, importance=h), fine) + 1e-9).all()
    assert (err(codes, scales) <= err(np.rint(w / coarse[:, None]), coarse) + 1e-9).all()
    assert (scales > fine * 1.0001).any()  # some channels do give up resolution


@pytest.mark.parametrize("name", ["pairs", "w7"])
def test_safe_ranges_never_saturate_for_any_weights_or_inputs(name: str) -> None:
    rng = np.random.default_rng(1)
    w = rng.standard_t(3, (96, 130)).astype(np.float32)  # heavy tails: many large same-sign pairs
    ranges = RANGES[name]

    codes, _ = quantize_weight(w, ranges)
    lo, hi = pair_sum_bounds(codes)
    worst = np.where(codes > 0, 255, 0).astype(np.uint8)  # the input that maximises every positive pair

    assert ranges.safe and saturation_free(codes) and -32_768 <= lo and hi <= INT16_MAX
    np.testing.assert_array_equal(vpmaddubsw_matmul(worst, codes), _exact(worst, codes))
    a = rng.integers(0, 256, (50, 130), dtype=np.uint8)
    np.testing.assert_array_equal(vpmaddubsw_matmul(a, codes), _exact(a, codes))


def test_full_range_codes_are_not_safe() -> None:
    codes, _ = quantize_weight(np.random.default_rng(1).standard_t(3, (96, 130)), RANGES["full"])

    assert not RANGES["full"].safe and not saturation_free(codes)


def test_ranges_reject_impossible_settings() -> None:
    with pytest.raises(ValueError, match="weight_max"):
        IntegerRanges("x", weight_max=200)
    with pytest.raises(ValueError, match="pair_limit"):
        IntegerRanges("x", weight_max=64, pair_limit=200)


# ---------------------------------------------------------------- the converter's graphs
@pytest.fixture(scope="module")
def tiny(tiny_graph):
    ckpt, g, stats = tiny_graph
    ids, mask = encode_batch(ckpt.tokenizer, corpus_path().read_text().splitlines()[200:205])
    return g, stats, {"input_ids": ids, "attention_mask": mask}


@pytest.mark.parametrize("dynamic", [False, True])
def test_converter_graphs_never_saturate_while_full_range_ones_do(tiny, dynamic: bool) -> None:
    g, stats, feeds = tiny
    names = tuple(n.name for n in g.linears()) if dynamic else ()

    safe = quantize_graph(g, stats, Int8Scheme(dynamic=names))
    old = quantize_graph(g, stats, Int8Scheme(dynamic=names, integer_ranges="full"))

    # a proof for every input: no linear's weights can leave int16 in a pair
    assert all(saturation_free(safe.tensors[n.attrs["weight"]]) for n in safe.linears())
    assert not all(saturation_free(old.tensors[n.attrs["weight"]]) for n in old.linears())
    # and on real text: AVX2's arithmetic gives the exact answer bit for bit, or not
    for name, want in reference.run(safe, feeds).items():
        np.testing.assert_array_equal(reference.run(safe, feeds, kernel="vpmaddubsw")[name], want)
    exact, avx2 = reference.run(old, feeds), reference.run(old, feeds, kernel="vpmaddubsw")
    assert np.abs(avx2["last_hidden_state"] - exact["last_hidden_state"]).max() > 1e-2


def test_kernel_path_is_named_from_cpu_flags() -> None:
    assert integer_kernel({"avx2", "avx512_vnni"}, "x86_64").name == "x86-vnni"
    assert integer_kernel({"avx2", "avx_vnni"}, "x86_64").exact
    assert integer_kernel({"avx2", "fma"}, "x86_64").name == "x86-avx2"
    assert not integer_kernel({"avx2", "avx512bw"}, "x86_64").exact
    assert integer_kernel(set(), "aarch64").exact
    assert integer_kernel({"sse4_1"}, "x86_64").name == "x86-sse"


# ---------------------------------------------------------------- real AVX2 kernels (QEMU)
def _matmul_integer(w: np.ndarray) -> bytes:
    """A MatMulInteger model: uint8 (rows, in) codes times these int8 (out, in) weight codes."""
    node = helper.make_node("MatMulInteger", ["a", "w"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("a", TensorProto.UINT8, [None, w.shape[1]])],
                              [helper.make_tensor_value_info("y", TensorProto.INT32, None)],
                              [numpy_helper.from_array(np.ascontiguousarray(w.T), "w")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8).SerializeToString()


@needs_qemu
def test_onnx_runtime_on_an_avx2_cpu_saturates_exactly_as_emulated() -> None:
    rng = np.random.default_rng(2)
    w = np.concatenate([rng.integers(-127, 128, (30, 70)), np.full((2, 70), 127)]).astype(np.int8)
    a = rng.integers(0, 256, (9, 70), dtype=np.uint8)
    a[0] = 255

    got = run_as_cpu(_matmul_integer(w), {"a": a})["y"]

    np.testing.assert_array_equal(got, vpmaddubsw_matmul(a, w))
    assert (got != _exact(a, w)).any()


@needs_qemu
def test_converted_model_gives_the_same_answers_on_an_avx2_cpu(tiny) -> None:
    g, stats, feeds = tiny
    safe = quantize_graph(g, stats, Int8Scheme())
    old = quantize_graph(g, stats, Int8Scheme(integer_ranges="full"))
    valid = feeds["attention_mask"].astype(bool)
    fp32 = reference.run(g, feeds)["last_hidden_state"][valid]

    for graph, expect_same in ((safe, True), (old, False)):
        want = reference.run(graph, feeds)["last_hidden_state"][valid]
        got = run_as_cpu(to_onnx(graph).SerializeToString(), feeds)["last_hidden_state"][valid]
        ratio = np.linalg.norm(got - want) / np.linalg.norm(want - fp32)  # relative to the quantization noise
        assert (ratio <= 0.01) == expect_same, ratio
