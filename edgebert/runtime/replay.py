"""A replay buffer for online learning (pure): reservoir sampling keeps a uniform sample of the
stream (Vitter, 1985), and each new sample is learned together with a few replayed ones."""

from __future__ import annotations

from typing import Any

import numpy as np


def with_replayed(X: np.ndarray, T: np.ndarray, buf_x: np.ndarray, buf_y: list[Any], seen: int, batch: int,
                  rng: np.random.Generator, regression: bool) -> tuple[np.ndarray, np.ndarray]:
    """The new sample(s) first, then up to ``batch`` samples drawn from the buffer."""
    k = min(seen, len(buf_x), batch)
    idx = rng.integers(0, min(seen, len(buf_x)), k)
    replayed = np.stack([buf_y[i] for i in idx]) if regression else np.array([buf_y[i] for i in idx])
    return np.concatenate([X, buf_x[idx]]), np.concatenate([T, replayed])


def reservoir_add(buf_x: np.ndarray, buf_y: list[Any], seen: int, x: np.ndarray, y: Any,
                  rng: np.random.Generator) -> None:
    """Sample number ``seen`` (from 0) of the stream goes into the buffer with probability size/(seen+1)."""
    slot = seen if seen < len(buf_x) else int(rng.integers(0, seen + 1))
    if slot < len(buf_x):
        buf_x[slot] = x
        buf_y[slot] = y
