"""Hierarchical aggregation maths: edges combine their devices' updates, the root combines the edges.

Pure (named float arrays in and out). An edge aggregator serves a slice of the fleet; for a round
it turns its devices' adapted weights into one ``Partial``: the mean of their deltas from the global
model, after the round's robust rule (per edge), and the weight that mean stands for. The root
moves the global model by the weight-averaged mean of the partials:

    theta' = theta + step * sum_e W_e m_e / sum_e W_e

With the sample-weighted mean (``rule="none"``: FedAvg, and Reptile's server step) an edge's
``m_e = sum_i n_i d_i / W_e`` with ``W_e = sum_i n_i``, so the root's move is exactly the flat
aggregator's ``sum_i n_i d_i / sum_i n_i``: the same global model, up to float32 rounding of each
edge's mean (the only value that crosses the network; everything else is summed in float64).
With ``clipped_mean`` each edge bounds its own devices (outliers dropped, clipping and sample caps
at the edge's median), ``W_e`` being the capped counts it kept: one device moves its edge's mean
by at most 2 x that edge's median norm / n_e, and an edge's weight cannot exceed its devices' count
times its median count. The coordinate-wise rules (median, trimmed mean) do not decompose: an edge
applies them to its devices and the root averages the edges' results by their sample counts.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edgebert.errors import InputError
from edgebert.federated.aggregate import (
    DEFAULT_RULE,
    MAX_SAMPLES,
    ROBUST,
    Weights,
    bound_updates,
    check_samples,
    check_update,
    clip_norm,
    combine,
    deltas,
)


@dataclass(frozen=True)
class Partial:
    """One edge's share of a round: ``mean`` (float32, named like the model) stands for ``weight``
    samples from ``devices`` devices."""

    mean: Weights
    weight: float
    devices: int


def edge_name(index: int) -> str:
    return f"edge{index}"


def edge_of(device: str, edges: int) -> str:
    """The edge that serves ``device`` among ``edges`` (a stable hash of its id: the same on every
    machine and in every process, so devices, edges and tools agree without asking anyone)."""
    if edges < 1:
        raise InputError(f"edges: expected at least 1, found {edges}")
    return edge_name(zlib.crc32(device.encode("utf-8")) % edges)


def edge_partial(theta: Weights, adapted: Sequence[Weights], samples: Sequence[int], rule: str = DEFAULT_RULE,
                 max_norm: float | None = None, trim: float = 0.1) -> Partial:
    """The edge's partial result for its accepted updates (``adapted`` weights and sample counts)."""
    if not adapted or len(adapted) != len(samples):
        raise InputError(f"edge: expected as many sample counts as updates (> 0), found {len(adapted)} and {len(samples)}")
    for reason in (check_samples(n) for n in samples):
        if reason is not None:
            raise InputError(f"samples: {reason}")
    if rule not in ROBUST:
        raise InputError(f"rule: expected one of {ROBUST}, found {rule!r}")
    ups = deltas(adapted, theta)
    if max_norm is not None:
        ups = [clip_norm(u, max_norm) for u in ups]
    if rule == "none":
        kept, weights = ups, np.asarray(samples, dtype=np.float64)
    elif rule == "clipped_mean":
        kept, weights = bound_updates(ups, samples)
    else:  # coordinate-wise rules: the edge's own result, standing for its devices' samples
        return Partial(combine(ups, samples, rule, trim), float(sum(samples)), len(ups))
    total = float(weights.sum())
    if total <= 0:
        raise InputError("edge: expected a positive total weight")
    mean = {k: (sum(u[k].astype(np.float64) * (w / total) for u, w in zip(kept, weights, strict=True))
                ).astype(np.float32) for k in theta}
    return Partial(mean, total, len(kept))


def check_partial(partial: Partial, reference: Weights) -> str | None:
    """Why the root must refuse an edge's partial (layout, NaN/Inf, weight), or None."""
    reason = check_update(partial.mean, reference)
    if reason is not None:
        return reason
    if not (np.isfinite(partial.weight) and 0 < partial.weight <= partial.devices * MAX_SAMPLES) or partial.devices < 1:
        return (f"expected a positive weight of at most {MAX_SAMPLES} per device from at least one device, "
                f"found {partial.weight!r} from {partial.devices}")
    return None


def root_update(theta: Weights, partials: Sequence[Partial], step: float = 1.0) -> Weights:
    """The next global model from the edges' partials (``theta`` itself when none came)."""
    if not partials:
        return theta
    for p in partials:
        reason = check_partial(p, theta)
        if reason is not None:
            raise InputError(f"partial: {reason}")
    total = sum(p.weight for p in partials)
    move = {k: sum(p.mean[k].astype(np.float64) * (p.weight / total) for p in partials) for k in theta}
    return {k: (theta[k] + step * move[k].astype(np.float32)).astype(np.float32) for k in theta}


__all__ = ["Partial", "check_partial", "edge_name", "edge_of", "edge_partial", "root_update"]
