"""Aggregation maths: named float32 arrays in, named float32 arrays out; no I/O.

- ``fedavg``: sample-weighted average of client weights (McMahan et al., 2017).
- ``reptile_update``: theta <- theta + eps * mean_i(phi_i - theta) (Nichol et al., 2018;
  TinyReptile, Ren et al., 2023). With eps = 1 and sample weights it is FedAvg.
- ``fedprox_gradient``: the device-side proximal term mu * (w - w_global) (Li et al., 2020).
- Robust options on updates (deltas): norm clipping, coordinate-wise median, trimmed mean
  (Yin et al., 2018).
- ``clipped_mean`` (the default rule): a delta whose norm is over ``REJECT_FACTOR`` (4) x the
  round's median delta norm is dropped as implausible, the others are clipped to ``CLIP_FACTOR``
  (2) x the median (adaptive clipping at a quantile, Andrew et al., 2021; norm bounding against
  model replacement, Sun et al., 2019), each claimed sample count is capped at the round's median
  count, then the sample-weighted mean. The median is the lower median, so one device among n >= 3
  cannot move it past an honest value. One device among n moves the model by at most
  2 x median norm / n, whatever it sends or claims; on the heterogeneous sine job its clean MSE is
  1.32 against 1.08 for plain FedAvg (benchmarks/robust_aggregation.py, 2 seeds).
- ``clipped_trimmed_mean``: the same, then a sample-weighted trimmed mean per coordinate (at least
  one value cut from each end once there are three updates); it also drops coordinate outliers,
  at a price on heterogeneous devices (docs/federated.md has the measurements).
- ``check_update``: the reason an update must be rejected (wrong names/shapes, NaN/Inf), or None;
  ``check_samples``: the same for a claimed sample count.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edgebert.errors import InputError
from edgebert.graph.quantize import quantize_symmetric

Weights = dict[str, np.ndarray]
ROBUST = ("clipped_mean", "clipped_trimmed_mean", "none", "median", "trimmed_mean")
DEFAULT_RULE = "clipped_mean"
MAX_SAMPLES = 2**31 - 1  # a claimed count above this is refused (no device learns from 2 billion samples a round)
REJECT_FACTOR = 4.0  # clipped rules: a delta whose norm exceeds this many times the round's median is dropped
CLIP_FACTOR = 2.0  # clipped rules: the other deltas are clipped to this many times the median norm
SAMPLE_FACTOR = 1.0  # clipped rules: claimed sample counts capped at this many times the round's median count


def check_samples(samples: object) -> str | None:
    """Why a claimed sample count cannot be used, or None."""
    if not isinstance(samples, int) or isinstance(samples, bool) or not 1 <= samples <= MAX_SAMPLES:
        shown = repr(samples) if len(repr(samples)) <= 40 else f"a {len(str(samples))}-digit number"
        return f"expected a sample count in [1, {MAX_SAMPLES}], found {shown}"
    return None


def check_update(update: Weights, reference: Weights) -> str | None:
    """Why ``update`` cannot be aggregated with ``reference``'s layout, or None if it can."""
    if set(update) != set(reference):
        missing, extra = sorted(set(reference) - set(update)), sorted(set(update) - set(reference))
        return f"expected tensors {sorted(reference)}, found missing {missing} and extra {extra}"
    for name, ref in reference.items():
        arr = update[name]
        if arr.shape != ref.shape:
            return f"expected {name} of shape {ref.shape}, found {arr.shape}"
        if not np.issubdtype(arr.dtype, np.floating):
            return f"expected {name} as floats, found {arr.dtype}"
        if not np.isfinite(arr).all():
            return f"expected finite values in {name}, found NaN/Inf"
    return None


def fedavg(weights: Sequence[Weights], samples: Sequence[int]) -> Weights:
    """Sample-weighted mean of client weights."""
    if not weights or len(weights) != len(samples):
        raise InputError(f"fedavg: expected as many sample counts as clients (>0), found {len(weights)} and {len(samples)}")
    total = float(sum(samples))
    if total <= 0:
        raise InputError("fedavg: expected a positive total sample count")
    return {k: (sum(w[k].astype(np.float64) * (n / total) for w, n in zip(weights, samples, strict=True))
                ).astype(np.float32) for k in weights[0]}


def deltas(weights: Sequence[Weights], base: Weights) -> list[Weights]:
    return [{k: w[k] - base[k] for k in base} for w in weights]


def global_norm(delta: Weights) -> float:
    """The L2 norm of all of an update's tensors together (in float64: no overflow for float32 inputs)."""
    return float(np.sqrt(sum(float((v.astype(np.float64) ** 2).sum()) for v in delta.values())))


def clip_norm(delta: Weights, max_norm: float, norm: float | None = None) -> Weights:
    """Scale a whole update so that its global L2 norm (``norm``, when already known) is at most ``max_norm``."""
    norm = global_norm(delta) if norm is None else norm
    if norm <= max_norm or norm == 0.0:
        return delta
    return {k: (v * (max_norm / norm)).astype(np.float32) for k, v in delta.items()}


def lower_median(values: Sequence[float]) -> float:
    """The lower median: an actual value, which one outlier among n >= 3 cannot drag past an honest one."""
    ordered = sorted(float(v) for v in values)
    return ordered[(len(ordered) - 1) // 2]


def clip_relative(updates: Sequence[Weights], factor: float = CLIP_FACTOR) -> list[Weights]:
    """Every delta clipped to ``factor`` x the lower median of the deltas' norms."""
    bound = factor * lower_median([global_norm(u) for u in updates])
    return [clip_norm(u, bound) for u in updates]


def cap_samples(samples: Sequence[int], factor: float = SAMPLE_FACTOR) -> np.ndarray:
    """Claimed sample counts capped at ``factor`` x their lower median (as float64 weights)."""
    s = np.asarray([float(n) for n in samples], np.float64)
    return np.minimum(s, factor * lower_median(s))


def bound_updates(updates: Sequence[Weights], samples: Sequence[int], reject_factor: float = REJECT_FACTOR,
                  clip_factor: float = CLIP_FACTOR, sample_factor: float = SAMPLE_FACTOR
                  ) -> tuple[list[Weights], np.ndarray]:
    """The deltas that are not implausibly large, clipped, with their capped sample weights."""
    norms = [global_norm(u) for u in updates]
    median = lower_median(norms)
    weights = cap_samples(samples, sample_factor)
    keep = [i for i, n in enumerate(norms) if n <= reject_factor * median]
    bound = clip_factor * median
    return [clip_norm(updates[i], bound, norms[i]) for i in keep], weights[keep]


def weighted_trimmed_mean(stacked: np.ndarray, weights: np.ndarray, cut: int) -> np.ndarray:
    """Per coordinate: drop the ``cut`` lowest and highest values, weighted mean of the rest.
    ``stacked`` is (n, ...), ``weights`` (n,)."""
    n = stacked.shape[0]
    order = np.argsort(stacked, axis=0, kind="stable")[cut:n - cut]  # (n - 2 cut, ...)
    kept = np.take_along_axis(stacked.astype(np.float64), order, axis=0)
    w = weights[order]  # (n - 2 cut, ...)
    return (kept * w).sum(axis=0) / w.sum(axis=0)


def clipped_trimmed_mean(updates: Sequence[Weights], samples: Sequence[int], trim: float = 0.1) -> Weights:
    """``bound_updates``, then a sample-weighted trimmed mean per coordinate."""
    kept, weights = bound_updates(updates, samples)
    if weights.sum() <= 0:
        raise InputError("clipped_trimmed_mean: expected a positive total sample count")
    n = len(kept)
    cut = max(1 if n >= 3 else 0, int(n * trim))
    return {k: weighted_trimmed_mean(np.stack([u[k] for u in kept]), weights, cut).astype(np.float32)
            for k in updates[0]}


def clipped_mean(updates: Sequence[Weights], samples: Sequence[int]) -> Weights:
    """The default rule (see the module docstring): outliers dropped, relative clipping, capped counts, weighted mean."""
    kept, weights = bound_updates(updates, samples)
    if weights.sum() <= 0:
        raise InputError("clipped_mean: expected a positive total sample count")
    w = weights / weights.sum()
    return {k: sum(u[k].astype(np.float64) * wi for u, wi in zip(kept, w, strict=True)).astype(np.float32)
            for k in updates[0]}


def combine(updates: Sequence[Weights], samples: Sequence[int], rule: str = DEFAULT_RULE, trim: float = 0.1) -> Weights:
    """One update from many: the robust default, sample-weighted mean, coordinate-wise median, or trimmed mean."""
    if rule == "clipped_mean":
        return clipped_mean(updates, samples)
    if rule == "clipped_trimmed_mean":
        return clipped_trimmed_mean(updates, samples, trim)
    if rule == "none":
        return fedavg(updates, samples)
    stacked = {k: np.stack([u[k] for u in updates]) for k in updates[0]}
    if rule == "median":
        return {k: np.median(v, axis=0).astype(np.float32) for k, v in stacked.items()}
    if rule == "trimmed_mean":
        cut = int(len(updates) * trim)
        if 2 * cut >= len(updates):
            raise InputError(f"trimmed_mean: trim {trim} removes every one of {len(updates)} updates")
        return {k: np.sort(v, axis=0)[cut:len(updates) - cut].mean(axis=0).astype(np.float32) for k, v in stacked.items()}
    raise InputError(f"rule: expected one of {ROBUST}, found {rule!r}")


def reptile_update(theta: Weights, adapted: Sequence[Weights], samples: Sequence[int], step: float = 1.0,
                   rule: str = DEFAULT_RULE, max_norm: float | None = None, trim: float = 0.1) -> Weights:
    """theta + step * combine_i(clip(phi_i - theta)). ``step=1, rule='none'`` is FedAvg."""
    for reason in (check_samples(n) for n in samples):
        if reason is not None:
            raise InputError(f"samples: {reason}")
    ups = deltas(adapted, theta)
    if max_norm is not None:
        ups = [clip_norm(u, max_norm) for u in ups]
    move = combine(ups, samples, rule, trim)
    return {k: (theta[k] + step * move[k]).astype(np.float32) for k in theta}


def fedprox_gradient(weights: Weights, global_weights: Weights, mu: float) -> Weights:
    """Gradient of (mu/2)||w - w_global||^2, added to the local loss's gradient on the device."""
    return {k: (mu * (weights[k] - global_weights[k])).astype(np.float32) for k in weights}


def quantize_int8(delta: Weights, residual: Weights | None) -> tuple[dict[str, tuple[np.ndarray, float]], Weights]:
    """Per-tensor symmetric int8 of (delta + residual) with error feedback (Seide et al., 2014):
    returns the codes with their scale, and the new residual (what int8 could not carry)."""
    codes, new_residual = {}, {}
    for k, v in delta.items():
        x = (v + (residual[k] if residual else 0.0)).astype(np.float32)
        q, scales = quantize_symmetric(x.reshape(1, -1), axis=0)  # one channel: the whole tensor
        q, scale = q.reshape(x.shape), float(scales[0])
        codes[k] = (q, scale)
        new_residual[k] = (x - q.astype(np.float32) * np.float32(scale)).astype(np.float32)  # what the server decodes
    return codes, new_residual


def dequantize_int8(codes: dict[str, tuple[np.ndarray, float]]) -> Weights:
    return {k: q.astype(np.float32) * np.float32(scale) for k, (q, scale) in codes.items()}
