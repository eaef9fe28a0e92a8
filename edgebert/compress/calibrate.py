"""Calibration: run the fp32 graph on sample inputs and record what each linear sees.

Only real tokens count (padding rows are masked out of every statistic); per linear input we
keep per-channel min/max over all tokens and a bounded random sample of token rows, from
which ranges (min-max, percentile, MSE) and SmoothQuant factors are computed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from edgebert.graph import reference
from edgebert.graph.form import Graph, Node


@dataclass
class InputStats:
    """What one linear saw: per-channel extrema (exact) and a sample of token rows."""

    channel_min: np.ndarray
    channel_max: np.ndarray
    rows: list[np.ndarray] = field(default_factory=list)
    n_rows: int = 0

    @property
    def sample(self) -> np.ndarray:
        return np.concatenate(self.rows, axis=0)  # (rows, in_features)

    @property
    def absmax(self) -> np.ndarray:
        return np.maximum(np.abs(self.channel_min), np.abs(self.channel_max))


class Calibrator:
    """Observer for ``reference.run`` that accumulates ``InputStats`` per linear node."""

    def __init__(self, max_rows: int = 4096, seed: int = 0) -> None:
        self.stats: dict[str, InputStats] = {}
        self.max_rows = max_rows
        self._rng = np.random.default_rng(seed)

    def __call__(self, node: Node, x: np.ndarray, mask: np.ndarray) -> None:
        rows = x[mask.astype(bool)] if x.ndim == 3 else x  # (tokens, in_features)
        if rows.size == 0:
            return
        st = self.stats.get(node.name)
        if st is None:
            st = self.stats[node.name] = InputStats(rows.min(0), rows.max(0))
        else:
            np.minimum(st.channel_min, rows.min(0), out=st.channel_min)
            np.maximum(st.channel_max, rows.max(0), out=st.channel_max)
        budget = self.max_rows - st.n_rows
        if budget > 0:
            take = rows if len(rows) <= budget else rows[self._rng.choice(len(rows), budget, replace=False)]
            st.rows.append(take.copy())
            st.n_rows += len(take)


def calibrate(g: Graph, batches: Iterable[dict[str, np.ndarray]], max_rows: int = 4096) -> dict[str, InputStats]:
    """Run the graph on every batch of feeds; returns the statistics of each linear's input."""
    cal = Calibrator(max_rows=max_rows)
    for feeds in batches:
        reference.run(g, feeds, observer=cal)
    return cal.stats



RANGE_TOKENS = 65_536  # real tokens value_ranges looks at: ~2,500 sentences, seconds instead of minutes


def value_ranges(g: Graph, batches: Iterable[dict[str, np.ndarray]], max_tokens: int = RANGE_TOKENS
                 ) -> dict[str, np.ndarray]:
    """Per-channel [min, max] (2, channels) float32 of every token-wise value the graph computes,
    over the real tokens of the first ``batches`` (up to ``max_tokens``): what a firmware export
    needs to quantize the values an integer-only program keeps in int8 (attention's Q, K, V, the
    FFN, the residual stream)."""
    every = g.copy()
    every.outputs = tuple(dict.fromkeys(out for node in g.nodes for out in node.outputs))
    lo: dict[str, np.ndarray] = {}
    hi: dict[str, np.ndarray] = {}
    seen = 0
    for feeds in batches:
        if seen >= max_tokens:
            break
        mask = feeds["attention_mask"].astype(bool)
        seen += int(mask.sum())
        for name, value in reference.run(every, feeds).items():
            if value.ndim != 3 or value.shape[:2] != mask.shape or not mask.any():
                continue
            rows = value[mask]
            lo[name] = np.minimum(lo[name], rows.min(0)) if name in lo else rows.min(0)
            hi[name] = np.maximum(hi[name], rows.max(0)) if name in hi else rows.max(0)
    return {name: np.stack([lo[name], hi[name]]).astype(np.float32) for name in lo}
