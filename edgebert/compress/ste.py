"""The straight-through estimator (host, torch): 1-bit forward passes that still train.

``sign_ste`` is +1/-1 forward (``x >= 0`` is +1, as ``graph.binarize.pack_signs`` stores it) and
passes the gradient through where |x| <= 1 (Hubara et al. 2016; the clipped identity of
BinaryConnect/BinaryBERT). ``binarize_weight`` is the forward of a binarized weight row by row:
its mean plus the mean absolute deviation times the sign of what is left - the same numbers
``graph.binarize.binarize`` stores, so a model trained through it is the model exported. The scale
and centre are differentiable functions of the weight (the gradient reaches them as in BinaryBERT's
"elastic" scale); only the sign is straight-through.
"""

from __future__ import annotations

import math

import torch

from edgebert.graph.binarize import scale_per_row


class _SignSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        return torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        (x,) = ctx.saved_tensors  # type: ignore[attr-defined]
        return grad * (x.abs() <= 1).to(grad.dtype)


def sign_ste(x: torch.Tensor) -> torch.Tensor:
    """±1 forward, clipped identity backward."""
    return _SignSTE.apply(x)


def binarize_weight(w: torch.Tensor) -> torch.Tensor:
    """``centre + scale * sign_ste(w - centre)`` per output row of an (out, in) weight (per matrix
    for short rows: ``graph.binarize.scale_per_row``, the export's rule). The sign sees the deviation
    divided by its scale, so the clip of the straight-through gradient is in units of the row's own
    spread (a fixed clip at 1 would pass every gradient of a 0.02-wide row)."""
    dims: tuple[int, ...] = (1,) if scale_per_row(w.shape[1]) else (0, 1)
    centre = w.mean(dim=dims, keepdim=True)
    rest = w - centre
    scale = rest.abs().mean(dim=dims, keepdim=True)
    return centre + scale * sign_ste(rest / scale.clamp(min=1e-12))


def binarize_activation(x: torch.Tensor) -> torch.Tensor:
    """1-bit activations (W1A1): each token's mean absolute value times the sign of each entry
    (``graph.binarize.binarize_activations``); the gradient is straight-through where |x| <= scale."""
    scale = x.abs().mean(dim=-1, keepdim=True)
    return scale * sign_ste(x / scale.clamp(min=1e-12))


def bi_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Bi-Attention (BiBERT) over (batch, heads, seq, head_dim) q, k, v and ``keep`` (batch, 1, 1, seq)
    1.0 on real keys, 0.0 on padding: the forward of ``graph.binarize.bi_attention``. The signs of q
    and k see each token's values over their mean absolute value (the clip of the straight-through
    gradient in the token's own units); the 0/1 weight is ``(sign_ste(score / sqrt(head_dim)) + 1) / 2``,
    so the gradient reaches the scores within sqrt(head_dim) of the threshold."""
    def signs(x: torch.Tensor) -> torch.Tensor:
        return sign_ste(x / x.abs().mean(dim=-1, keepdim=True).clamp(min=1e-12))

    scores = signs(q) @ signs(k).transpose(-1, -2)
    weights = (sign_ste(scores / math.sqrt(q.shape[-1])) + 1.0) * 0.5 * keep
    return weights @ binarize_activation(v) / weights.sum(dim=-1, keepdim=True).clamp(min=1.0)


__all__ = ["bi_attention", "binarize_activation", "binarize_weight", "sign_ste"]
