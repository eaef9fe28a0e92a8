"""The maths of a small ReLU MLP and its optimizers, on lists of numpy arrays (pure; no I/O).

Weights are stored (in, out) so that a batch is ``h @ W + b``. ``adam_step`` works on all
parameters as one flat vector (few numpy calls); a non-finite gradient is refused with
InputError before anything changes, in both optimizers.
"""

from __future__ import annotations

import math

import numpy as np

from edgebert.errors import InputError

NOT_FINITE = "update: expected finite gradients, found NaN/Inf (input too large?); nothing was learned"


def forward(W: list[np.ndarray], b: list[np.ndarray], X: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """The output and every layer's input activations (for backpropagation)."""
    acts = [X]
    h = X
    for i, (w, bias) in enumerate(zip(W, b, strict=True)):
        h = h @ w + bias  # (batch, out)
        if i < len(W) - 1:
            h = np.maximum(h, 0.0)
        acts.append(h)
    return h, acts


def losses_and_grads(W: list[np.ndarray], out: np.ndarray, acts: list[np.ndarray], T: np.ndarray, loss: str
                     ) -> tuple[np.ndarray, list[np.ndarray]]:
    """Per-sample losses and the gradient of their mean w.r.t. every parameter (W0, b0, W1, b1, …),
    backpropagated through the ReLUs; ``out``/``acts`` from ``forward``."""
    n = out.shape[0]
    if loss == "xent":
        z = out - out.max(axis=1, keepdims=True)
        np.maximum(z, np.float32(-80.0), out=z)  # exp(-80) is still a normal float32: no denormal slow path
        e = np.exp(z)
        total = e.sum(axis=1, keepdims=True)
        rows = np.arange(n)
        losses = np.log(total[:, 0]) - z[rows, T]  # cross-entropy = logsumexp(z) - z_target
        p = e / total
        delta = p
        delta[rows, T] -= 1.0
        if n > 1:
            delta /= n  # dL/d(out) of the mean loss
    else:
        diff = out - T
        losses = (diff * diff).mean(axis=1)
        delta = diff * (2.0 / diff.size)
    grads: list[np.ndarray] = [np.empty(0)] * (2 * len(W))
    for i in range(len(W) - 1, -1, -1):
        grads[2 * i] = acts[i].T @ delta  # (in, out)
        grads[2 * i + 1] = delta.sum(axis=0) if n > 1 else delta[0]
        if i:
            delta = (delta @ W[i].T) * (acts[i] > 0)  # through the ReLU
    return losses, grads


def sgd_step(params: list[np.ndarray], grads: list[np.ndarray], lr: float, momentum: float,
             moments: list[np.ndarray]) -> None:
    """p -= lr * g (with heavy-ball momentum when ``momentum``), in place."""
    if not all(np.isfinite(g).all() for g in grads):
        raise InputError(NOT_FINITE)
    for j, (p, g) in enumerate(zip(params, grads, strict=True)):
        if momentum:
            m = moments[j]
            m *= momentum
            m += g
            g = m
        p -= lr * g


def adam_step(params: list[np.ndarray], grads: list[np.ndarray], lr: float, t: int, m: np.ndarray,
              v: np.ndarray) -> None:
    """Adam (Kingma & Ba, 2015) step number ``t`` (from 1) on flat moments ``m``, ``v``, in place."""
    b1, b2, eps = 0.9, 0.999, 1e-8
    c1, c2 = 1.0 - b1 ** t, 1.0 - b2 ** t
    g = np.concatenate([x.ravel() for x in grads])
    if not np.isfinite(g).all():
        raise InputError(NOT_FINITE)
    m += (1.0 - b1) * (g - m)
    g *= g
    g -= v
    g *= 1.0 - b2
    v += g
    step = np.sqrt(v)
    step += eps * math.sqrt(c2)
    np.divide(m, step, out=step)
    step *= lr * math.sqrt(c2) / c1  # = lr * m_hat / (sqrt(v_hat) + eps)
    offset = 0
    for p in params:
        p -= step[offset:offset + p.size].reshape(p.shape)
        offset += p.size


def flat_views(state: list[np.ndarray]) -> np.ndarray:
    """One flat float32 vector holding ``state``'s arrays; ``state`` is rebound to views into it."""
    flat = np.concatenate([a.ravel() for a in state]).astype(np.float32)
    offset = 0
    for j, a in enumerate(state):
        state[j] = flat[offset:offset + a.size].reshape(a.shape)
        offset += a.size
    return flat


def flush_tiny(arrays: list[np.ndarray], tiny: np.float32) -> None:
    """Zero float32 values below ``tiny``: decaying moments and statistics would otherwise become
    float32 denormals, on which x86 arithmetic is two orders of magnitude slower."""
    for arr in arrays:
        if arr.dtype == np.float32:
            np.copyto(arr, 0.0, where=np.abs(arr) < tiny)
