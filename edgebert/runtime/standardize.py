"""Online input standardization (pure): exponential running mean and variance, warm-started so
the first samples set them (as river's ``StandardScaler`` in front of a model), and a variance
floor relative to the mean variance so that constant inputs are not blown up."""

from __future__ import annotations

import numpy as np


def ema_update(mean: np.ndarray, var: np.ndarray, t: int, X: np.ndarray, beta: float) -> int:
    """Fold the rows of ``X`` into ``mean`` and ``var`` in place; returns the new sample count."""
    for x in X:
        t += 1
        rate = max(1.0 - beta, 1.0 / t)
        mean += rate * (x - mean)
        d = x - mean
        d *= d
        d -= var
        d *= rate
        var += d
    return t


def variance_floor(var: np.ndarray, relative: float) -> np.float32:
    return np.float32(relative * float(var.mean()) + 1e-12)
