"""Distillation losses (pure torch functions): direction matching, as in BiBERT and MiniLM's
relation distillation - the student's vectors are pulled toward the teacher's directions, whatever
their scale. ``1 - cos`` per token (padding masked out) and per sentence."""

from __future__ import annotations

import torch


def token_direction(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over real tokens of 1 - cos(student, teacher); (batch, seq, width) each, mask (batch, seq)."""
    cos = torch.nn.functional.cosine_similarity(student, teacher, dim=-1, eps=1e-8)  # (batch, seq)
    m = mask.to(cos.dtype)
    return ((1.0 - cos) * m).sum() / m.sum().clamp(min=1.0)


def sentence_direction(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean over sentences of 1 - cos(student, teacher); (batch, width) each."""
    return (1.0 - torch.nn.functional.cosine_similarity(student, teacher, dim=-1, eps=1e-8)).mean()


__all__ = ["sentence_direction", "token_direction"]
