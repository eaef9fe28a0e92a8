"""What a stream may feed a learner (pure checks): features and regression targets as float32
arrays of the right shape, finite and within float32 range, or one InputError line saying what
was expected and what was found."""

from __future__ import annotations

from typing import Any

import numpy as np

from edgebert.errors import InputError


def as_features(X: Any, input_dim: int) -> np.ndarray:  # noqa: ANN401
    """(n, input_dim) float32; one sample may come as a flat list."""
    try:
        X = np.asarray(X, np.float32)  # beyond float32 becomes inf, refused below
    except (TypeError, ValueError):
        raise InputError(f"x: expected {input_dim} numbers per sample, found {str(X)[:60]}") from None
    if X.ndim == 1:
        X = X[None]
    if X.ndim != 2 or X.shape[1] != input_dim:
        raise InputError(f"x: expected {input_dim} features per sample, found shape {X.shape}")
    if not np.isfinite(X).all():
        raise InputError("x: expected finite numbers within float32 range, found NaN, Inf or a value beyond 3.4e38")
    return X


def as_targets(Y: Any, n: int, n_outputs: int) -> np.ndarray:  # noqa: ANN401
    """(n, n_outputs) float32 regression targets."""
    try:
        t = np.asarray(Y, np.float32).reshape(n, -1)
    except (TypeError, ValueError):
        raise InputError(f"y: expected {n_outputs} number(s) per sample, found {str(Y)[:60]}") from None
    if t.shape[1] != n_outputs:
        raise InputError(f"y: expected {n_outputs} value(s) per sample, found {t.shape[1]}")
    if not np.isfinite(t).all():
        raise InputError("y: expected finite targets within float32 range, found NaN, Inf or a value beyond 3.4e38")
    return t
