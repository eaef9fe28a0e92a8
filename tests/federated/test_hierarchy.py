"""Hierarchical aggregation: edges' partials combined at the root give the flat aggregator's model
(FedAvg, Reptile) up to float32 rounding of each edge's mean; robust rules bound each edge."""

from __future__ import annotations

import numpy as np
import pytest

from edgebert.errors import InputError
from edgebert.federated.aggregate import reptile_update
from edgebert.federated.hierarchy import Partial, edge_partial, root_update


def fleet(n: int, seed: int = 0) -> tuple[dict, list[dict], list[int]]:
    rng = np.random.default_rng(seed)
    theta = {"w": rng.normal(size=(16, 8)).astype(np.float32), "b": rng.normal(size=8).astype(np.float32)}
    adapted = [{k: (v + rng.normal(scale=0.1, size=v.shape)).astype(np.float32) for k, v in theta.items()}
               for _ in range(n)]
    samples = [int(s) for s in rng.integers(1, 200, size=n)]
    return theta, adapted, samples


def tolerance(theta: dict, flat: dict, step: float, n_edges: int) -> dict:
    """Each edge's mean is rounded to float32 once (half an ulp of its largest value); the root's
    weighted sum of them keeps that bound; the move and the result are rounded once more each."""
    out = {}
    for k in theta:
        move = np.abs((flat[k] - theta[k]) / step).max()
        out[k] = step * (2 * np.spacing(np.float32(move))) + np.spacing(np.abs(flat[k]).astype(np.float32))
    return out


@pytest.mark.parametrize(("step", "edges"), [(1.0, 3), (0.5, 3), (1.0, 7), (0.3, 1)])
def test_fedavg_and_reptile_equal_the_flat_aggregator(step: float, edges: int) -> None:
    theta, adapted, samples = fleet(60, seed=edges)
    flat = reptile_update(theta, adapted, samples, step=step, rule="none")
    slices = np.array_split(np.arange(60), edges)
    partials = [edge_partial(theta, [adapted[i] for i in s], [samples[i] for i in s], rule="none") for s in slices]
    hier = root_update(theta, partials, step=step)
    tol = tolerance(theta, flat, step, edges)
    for k in theta:
        assert np.all(np.abs(hier[k] - flat[k]) <= tol[k]), (k, np.abs(hier[k] - flat[k]).max())
    assert sum(p.weight for p in partials) == sum(samples) and sum(p.devices for p in partials) == 60


def test_uneven_edges_are_weighted_by_their_samples() -> None:
    theta, adapted, samples = fleet(10, seed=3)
    big = edge_partial(theta, adapted[:9], samples[:9], rule="none")
    small = edge_partial(theta, adapted[9:], samples[9:], rule="none")
    flat = reptile_update(theta, adapted, samples, rule="none")
    hier = root_update(theta, [small, big])  # order does not matter
    assert all(np.abs(hier[k] - flat[k]).max() <= tolerance(theta, flat, 1.0, 2)[k].max() for k in theta)


def test_a_poisoned_device_moves_only_its_edge_and_only_so_far() -> None:
    theta, adapted, samples = fleet(30, seed=5)
    honest = [edge_partial(theta, adapted[i:i + 10], samples[i:i + 10], rule="clipped_mean") for i in (0, 10, 20)]
    poisoned = [dict(a) for a in adapted]
    poisoned[0] = {k: (v + 1e6).astype(np.float32) for k, v in theta.items()}  # huge, with a huge claimed count
    samples_p = list(samples)
    samples_p[0] = 2**31 - 1
    edge0 = edge_partial(theta, poisoned[:10], samples_p[:10], rule="clipped_mean")
    assert edge0.devices == 9  # dropped as implausible
    shift = max(np.abs(edge0.mean[k] - honest[0].mean[k]).max() for k in theta)
    assert shift < 0.1  # the size of one honest delta, not 1e6
    assert edge0.weight <= 10 * np.median(samples[:10]) + 1e-9


def test_nothing_in_leaves_the_model_and_bad_partials_are_refused() -> None:
    theta, adapted, samples = fleet(4)
    assert root_update(theta, []) is theta
    good = edge_partial(theta, adapted, samples, rule="none")
    nan = Partial({k: np.full_like(v, np.nan) for k, v in good.mean.items()}, good.weight, good.devices)
    with pytest.raises(InputError, match="finite"):
        root_update(theta, [good, nan])
    with pytest.raises(InputError, match="positive weight"):
        root_update(theta, [Partial(good.mean, 0.0, 1)])
    with pytest.raises(InputError, match="shape"):
        root_update(theta, [Partial({"w": good.mean["w"][:2], "b": good.mean["b"]}, 1.0, 1)])
    with pytest.raises(InputError, match="sample count"):
        edge_partial(theta, adapted, [0] * 4)
