"""Quantization maths: round-trip bounds, per-channel scales, saturation, zero handling."""

from __future__ import annotations

import numpy as np
import pytest

from edgebert.graph.quantize import (
    affine_params,
    dequantize_affine,
    dequantize_symmetric,
    dynamic_affine_params,
    mse_range,
    percentile_range,
    quantize_affine,
    quantize_symmetric,
)


@pytest.mark.parametrize("axis", [0, 1])
def test_symmetric_round_trip_error_is_at_most_half_a_step(axis: int) -> None:
    rng = np.random.default_rng(0)
    w = rng.normal(0, 1, (64, 48)).astype(np.float32) * rng.uniform(0.01, 10, (64, 1)).astype(np.float32)

    codes, scales = quantize_symmetric(w, axis=axis)
    back = dequantize_symmetric(codes, scales, axis=axis)

    shape = [1, 1]
    shape[axis] = -1
    assert codes.dtype == np.int8 and scales.shape == (w.shape[axis],)
    assert np.all(np.abs(back - w) <= scales.reshape(shape) / 2 + 1e-7)


def test_per_channel_scale_is_absmax_over_127_and_uses_full_range() -> None:
    w = np.array([[1.0, -2.0, 0.5], [0.01, 0.02, -0.03]], dtype=np.float32)

    codes, scales = quantize_symmetric(w, axis=0)

    np.testing.assert_allclose(scales, [2.0 / 127, 0.03 / 127], rtol=1e-6)
    assert codes[0, 1] == -127 and codes[1, 2] == -127  # each row's largest magnitude hits the edge
    assert codes.min() >= -127  # -128 never used: symmetric


def test_all_zero_channel_gets_unit_scale_and_zero_codes() -> None:
    w = np.zeros((2, 4), dtype=np.float32)
    w[1] = [0.5, -0.25, 0, 1]

    codes, scales = quantize_symmetric(w, axis=0)

    assert scales[0] == 1.0 and not codes[0].any()
    assert np.isfinite(dequantize_symmetric(codes, scales)).all()


def test_affine_range_always_contains_zero_exactly() -> None:
    for lo, hi in [(0.3, 5.0), (-4.0, -1.0), (-0.17, 12.0), (-3.0, 3.0)]:
        scale, zp = affine_params(lo, hi)

        assert dequantize_affine(quantize_affine(np.float32(0.0), scale, zp), scale, zp) == 0.0


def test_affine_saturates_outside_the_range() -> None:
    scale, zp = affine_params(-1.0, 1.0)

    q = quantize_affine(np.array([-100.0, -1.0, 0.0, 1.0, 100.0], np.float32), scale, zp)

    assert q[0] == 0 and q[-1] == 255
    assert q.dtype == np.uint8


def test_degenerate_range_gives_a_usable_scale() -> None:
    scale, zp = affine_params(0.0, 0.0)

    assert scale > 0 and zp == 0


def test_dynamic_params_match_onnxruntime_dynamicquantizelinear() -> None:
    import onnxruntime as ort
    from onnx import TensorProto, helper

    x = np.random.default_rng(3).normal(0.5, 2.0, (5, 7)).astype(np.float32)
    node = helper.make_node("DynamicQuantizeLinear", ["x"], ["y", "s", "z"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [5, 7])],
                              [helper.make_tensor_value_info(n, t, None) for n, t in
                               (("y", TensorProto.UINT8), ("s", TensorProto.FLOAT), ("z", TensorProto.UINT8))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    y, s, z = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})

    scale, zp = dynamic_affine_params(x)

    assert np.isclose(scale, s) and zp == z
    assert np.abs(quantize_affine(x, scale, zp).astype(int) - y.astype(int)).max() <= 1


def test_mse_range_is_no_worse_than_minmax_with_an_outlier() -> None:
    x = np.concatenate([np.random.default_rng(0).normal(0, 1, 10000), [40.0]]).astype(np.float32)

    def err(lo: float, hi: float) -> float:
        s, z = affine_params(lo, hi)
        return float(np.mean((dequantize_affine(quantize_affine(x, s, z), s, z) - x) ** 2))

    lo, hi = mse_range(x, float(x.min()), float(x.max()))

    assert hi < 40.0
    assert err(lo, hi) < err(float(x.min()), float(x.max()))


def test_percentile_range_clips_tails_and_rejects_bad_percentiles() -> None:
    x = np.arange(10001, dtype=np.float32)

    lo, hi = percentile_range(x, 99.0)

    assert (lo, hi) == pytest.approx((100.0, 9900.0))
    with pytest.raises(ValueError, match="expected a value in"):
        percentile_range(x, 30.0)
