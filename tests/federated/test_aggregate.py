"""Aggregation maths: FedAvg, Reptile (and FedAvg as its special case), robust rules, checks."""

from __future__ import annotations

import numpy as np
import pytest

from edgebert.federated.aggregate import (
    MAX_SAMPLES,
    bound_updates,
    cap_samples,
    check_samples,
    check_update,
    clip_norm,
    clip_relative,
    clipped_mean,
    combine,
    dequantize_int8,
    fedavg,
    fedprox_gradient,
    global_norm,
    lower_median,
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

    assert np.allclose(reptile_update(theta, clients, samples, step=1.0, rule="none")["a"],
                       fedavg(clients, samples)["a"])
    half = reptile_update(theta, clients, samples, step=0.5, rule="none")["a"]
    np.testing.assert_allclose(half, 0.5 * (theta["a"] + fedavg(clients, samples)["a"]), rtol=1e-6)


def test_median_and_trimmed_mean_ignore_one_wild_client() -> None:
    ups = [w(1.0, 1.0), w(1.1, 0.9), w(0.9, 1.1), w(1e6, -1e6), w(1.0, 1.0)]

    assert np.allclose(combine(ups, [1] * 5, "median")["a"], [1.0, 1.0])
    assert np.allclose(combine(ups, [1] * 5, "trimmed_mean", trim=0.2)["a"], [1.0333, 0.9667], atol=1e-3)
    assert abs(combine(ups, [1] * 5, "none")["a"][0]) > 1e5  # the plain mean is dragged away
    with pytest.raises(ValueError, match="removes every one"):
        combine(ups, [1] * 5, "trimmed_mean", trim=0.6)


def test_the_default_rule_bounds_what_one_device_can_do() -> None:
    rng = np.random.default_rng(0)
    honest = [{"a": rng.normal(0, 1, 50).astype(np.float32), "b": rng.normal(0, 1, (1, 1)).astype(np.float32)}
              for _ in range(9)]
    median_norm = lower_median([global_norm(u) for u in honest])
    clean = clipped_mean(honest, [10] * 9)

    for evil, claimed in [({k: v * 1e9 for k, v in honest[0].items()}, 10),     # huge norm: dropped
                          ({k: -v * 3 for k, v in honest[0].items()}, 10**9),   # plausible, inflated count
                          ({k: -v * 1.9 for k, v in honest[1].items()}, 10),    # just under the clip bound
                          ({k: np.full_like(v, 3e38) for k, v in honest[0].items()}, MAX_SAMPLES)]:
        out = clipped_mean(honest + [evil], [10] * 9 + [claimed])

        moved = global_norm({k: out[k] - clean[k] for k in out})
        # one of 10 with weight <= the median count and norm <= 2 x median moves the mean of the
        # others by at most (2m + |clean|) / 10; the median of 10 norms is at most one rank off
        # the median of 9, which changes the honest clipping by less than that again
        assert moved <= (2 * median_norm + global_norm(clean)) / 10 * 2, moved
    assert global_norm({k: clipped_mean(honest + [{k: v * 1e9 for k, v in honest[0].items()}], [10] * 10)[k]
                        - clipped_mean(honest, [10] * 9)[k] for k in clean}) < 0.05 * median_norm  # dropped


def test_relative_clipping_sample_caps_and_outliers() -> None:
    ups = [{"a": np.array([3.0, 4.0], np.float32)}, {"a": np.array([0.0, 1.0], np.float32)},
           {"a": np.array([6.0, 8.0], np.float32)}, {"a": np.array([300.0, 400.0], np.float32)}]

    clipped = clip_relative(ups, factor=2.0)  # lower median norm 5 -> bound 10
    kept, weights = bound_updates(ups, [10, 10, 10**9, 10])

    assert [round(global_norm(u), 4) for u in clipped] == [5.0, 1.0, 10.0, 10.0]
    np.testing.assert_array_equal(cap_samples([10, 10, 10**9]), [10, 10, 10])
    assert [round(global_norm(u), 4) for u in kept] == [5.0, 1.0, 10.0] and list(weights) == [10, 10, 10]  # 500 > 4x5


@pytest.mark.parametrize("samples", [0, -1, 10**400, MAX_SAMPLES + 1, True, 1.5, "10"])
def test_claimed_sample_counts_out_of_bounds_are_refused(samples: object) -> None:
    reason = check_samples(samples)

    assert reason is not None and reason.startswith("expected a sample count") and len(reason) < 120
    with pytest.raises(ValueError, match="sample count"):
        reptile_update(w(0.0, 0.0), [w(1.0, 1.0)], [samples])  # type: ignore[list-item]


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
