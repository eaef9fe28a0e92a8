"""Aggregation maths: FedAvg, Reptile (and FedAvg as its special case), robust rules, checks."""

from __future__ import annotations

import numpy as np
import pytest

from edgebert.federated.aggregate import (
    check_update,
    clip_norm,
    combine,
    dequantize_int8,
    fedavg,
    fedprox_gradient,
    quantize_int8,
    reptile_update,
)


def w(*values: float) -> dict[str, np.ndarray]:
    return {"a": np.array(values, np.float32), "b": np.array([[values[0]]], np.float32)}


def test_fedavg_is_sample_weighted() -> None:
    out = fedavg([w(0.0, 0.0), w(4.0, 8.0)], [3, 1])

    np.testing.assert_allclose(out["a"], [1.0, 2.0])
    assert out["a"].dtype == np.float32


def test_reptile_step_one_equals_fedavg_and_smaller_steps_interpolate() -> None:
    theta = w(1.0, 1.0)
    clients, samples = [w(3.0, 5.0), w(-1.0, 2.0), w(0.0, 0.0)], [10, 5, 5]

    assert np.allclose(reptile_update(theta, clients, samples, step=1.0)["a"], fedavg(clients, samples)["a"])
    half = reptile_update(theta, clients, samples, step=0.5)["a"]
    np.testing.assert_allclose(half, 0.5 * (theta["a"] + fedavg(clients, samples)["a"]), rtol=1e-6)


def test_median_and_trimmed_mean_ignore_one_wild_client() -> None:
    ups = [w(1.0, 1.0), w(1.1, 0.9), w(0.9, 1.1), w(1e6, -1e6), w(1.0, 1.0)]

    assert np.allclose(combine(ups, [1] * 5, "median")["a"], [1.0, 1.0])
    assert np.allclose(combine(ups, [1] * 5, "trimmed_mean", trim=0.2)["a"], [1.0333, 0.9667], atol=1e-3)
    assert abs(combine(ups, [1] * 5, "none")["a"][0]) > 1e5  # the plain mean is dragged away
    with pytest.raises(ValueError, match="removes every one"):
        combine(ups, [1] * 5, "trimmed_mean", trim=0.6)


def test_clipping_bounds_the_global_norm() -> None:
    delta = {"a": np.array([3.0, 4.0], np.float32), "b": np.zeros((1, 1), np.float32)}

    clipped = clip_norm(delta, 1.0)

    assert np.isclose(np.linalg.norm(clipped["a"]), 1.0) and clip_norm(delta, 10.0) is delta


@pytest.mark.parametrize("bad, reason", [
    ({"a": np.array([1.0, np.nan], np.float32), "b": np.zeros((1, 1), np.float32)}, "NaN/Inf"),
    ({"a": np.zeros(3, np.float32), "b": np.zeros((1, 1), np.float32)}, r"expected a of shape \(2,\)"),
    ({"a": np.zeros(2, np.float32)}, "missing \\['b'\\]"),
    ({"a": np.zeros(2, np.int32), "b": np.zeros((1, 1), np.float32)}, "as floats"),
])
def test_bad_updates_are_rejected_with_a_reason(bad, reason) -> None:
    assert check_update(w(1.0, 2.0), w(0.0, 0.0)) is None
    assert __import__("re").search(reason, check_update(bad, w(0.0, 0.0)))


def test_fedprox_gradient_pulls_towards_the_global_model() -> None:
    g = fedprox_gradient(w(2.0, 2.0), w(1.0, 0.0), mu=0.5)

    np.testing.assert_allclose(g["a"], [0.5, 1.0])


def test_int8_error_feedback_carries_what_rounding_lost() -> None:
    rng = np.random.default_rng(0)
    deltas = [{"a": rng.normal(0, 1, 50).astype(np.float32)} for _ in range(200)]
    residual, sent = None, np.zeros(50, np.float64)

    for d in deltas:
        codes, residual = quantize_int8(d, residual)
        sent += dequantize_int8(codes)["a"]

    true = np.sum([d["a"] for d in deltas], axis=0)
    assert np.abs(sent + residual["a"] - true).max() < 1e-3  # nothing is lost, only delayed
    assert np.abs(residual["a"]).max() < 0.05
