"""The project's own compact BERT encoder in PyTorch (host side only).

Post-LayerNorm transformer of Devlin et al. (2019), the architecture of the miniature BERTs of
Turc et al., "Well-Read Students Learn Better" (2019), MiniLM and TinyBERT. Parameter names
follow Hugging Face's ``BertModel`` so that checkpoints load without renaming.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from edgebert.compress.ste import bi_attention
from edgebert.errors import CheckpointError
from edgebert.model.checkpoint import Checkpoint, Pooling
from edgebert.model.config import BertConfig

MASK_VALUE = -1e4  # added to attention scores of padded keys; exp(-1e4) underflows to 0


def activation(name: str, x: torch.Tensor) -> torch.Tensor:
    if name == "gelu":
        return nn.functional.gelu(x)
    if name in ("gelu_new", "gelu_pytorch_tanh"):
        return nn.functional.gelu(x, approximate="tanh")
    return torch.relu(x)


class Embeddings(nn.Module):
    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.position_embeddings = nn.Embedding(cfg.max_position_embeddings, cfg.hidden_size)
        self.token_type_embeddings = nn.Embedding(cfg.type_vocab_size, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None) -> torch.Tensor:
        seq = input_ids.shape[1]
        positions = torch.arange(seq, device=input_ids.device)
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        x = (self.word_embeddings(input_ids) + self.position_embeddings(positions)[None]
             + self.token_type_embeddings(token_type_ids))  # (batch, seq, hidden)
        return self.LayerNorm(x)


class SelfAttention(nn.Module):
    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.heads, self.head_dim = cfg.num_attention_heads, cfg.head_dim
        self.binary = cfg.binary_attention
        self.query = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.key = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.value = nn.Linear(cfg.hidden_size, cfg.hidden_size)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, s, _ = x.shape
        return x.view(b, s, self.heads, self.head_dim).transpose(1, 2)  # (batch, heads, seq, head_dim)

    def forward(self, x: torch.Tensor, additive_mask: torch.Tensor) -> torch.Tensor:
        q, k, v = self._split(self.query(x)), self._split(self.key(x)), self._split(self.value(x))
        if self.binary:  # Bi-Attention: 0/1 weights from the signs of q and k, the mean of binarized values
            context = bi_attention(q, k, v, (additive_mask > MASK_VALUE / 2).to(q.dtype))
        else:
            scores = q @ k.transpose(-1, -2) / math.sqrt(self.head_dim) + additive_mask  # (b, h, s, s)
            context = torch.softmax(scores, dim=-1) @ v  # (batch, heads, seq, head_dim)
        b, _, s, _ = context.shape
        return context.transpose(1, 2).reshape(b, s, self.heads * self.head_dim)


class DenseNorm(nn.Module):
    """``LayerNorm(dense(x) + residual)``: BertSelfOutput and BertOutput."""

    def __init__(self, in_features: int, cfg: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(in_features, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dense(x) + residual)


class Attention(nn.Module):
    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.self = SelfAttention(cfg)
        self.output = DenseNorm(cfg.hidden_size, cfg)

    def forward(self, x: torch.Tensor, additive_mask: torch.Tensor) -> torch.Tensor:
        return self.output(self.self(x, additive_mask), x)


class Intermediate(nn.Module):
    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.intermediate_size)
        self.act = cfg.hidden_act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return activation(self.act, self.dense(x))


class Layer(nn.Module):
    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.attention = Attention(cfg)
        self.intermediate = Intermediate(cfg)
        self.output = DenseNorm(cfg.intermediate_size, cfg)

    def forward(self, x: torch.Tensor, additive_mask: torch.Tensor) -> torch.Tensor:
        h = self.attention(x, additive_mask)
        return self.output(self.intermediate(h), h)


class LayerStack(nn.Module):
    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList(Layer(cfg) for _ in range(cfg.num_hidden_layers))


def pool(hidden: torch.Tensor, mask: torch.Tensor, pooling: Pooling,
         projection: nn.Linear | None = None) -> torch.Tensor:
    """Sentence embedding from token states (batch, seq, hidden) and mask (batch, seq): pooled (the
    modes' vectors concatenated), projected (a sentence-transformers Dense module, when there is
    one), normalized."""
    m = mask.to(hidden.dtype)[..., None]  # (batch, seq, 1)
    parts = []
    for mode in pooling.modes:  # several modes concatenate, in their order
        if mode == "cls":
            parts.append(hidden[:, 0])
        elif mode == "max":
            parts.append((hidden + (1.0 - m) * MASK_VALUE).amax(dim=1))
        else:
            parts.append((hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9))
    out = parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)
    if projection is not None:
        out = projection(out)
    if pooling.normalize:
        out = out / out.norm(dim=-1, keepdim=True).clamp(min=1e-12)
    return out  # (batch, hidden)


class BertEncoder(nn.Module):
    """Compact BERT: ``forward(input_ids, attention_mask) -> last_hidden_state``."""

    def __init__(self, cfg: BertConfig, pooling: Pooling | None = None) -> None:
        super().__init__()
        self.config = cfg
        self.pooling = pooling
        self.embeddings = Embeddings(cfg)
        self.encoder = LayerStack(cfg)
        self.projection: nn.Linear | None = None  # set by from_checkpoint / a distillation student

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        additive = (1.0 - attention_mask[:, None, None, :].float()) * MASK_VALUE  # (b, 1, 1, s)
        x = self.embeddings(input_ids, token_type_ids)
        for layer in self.encoder.layer:
            x = layer(x, additive)
        return x  # (batch, seq, hidden)

    def hidden_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> list[torch.Tensor]:
        """The embedding output and every layer's output: num_hidden_layers + 1 tensors (batch, seq, hidden)."""
        additive = (1.0 - attention_mask[:, None, None, :].float()) * MASK_VALUE
        states = [self.embeddings(input_ids, None)]
        for layer in self.encoder.layer:
            states.append(layer(states[-1], additive))
        return states

    def sentence_embedding(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return pool(self(input_ids, attention_mask), attention_mask, self.pooling or Pooling(), self.projection)

    @classmethod
    def from_checkpoint(cls, ckpt: Checkpoint) -> BertEncoder:
        model = cls(ckpt.config, ckpt.pooling)
        expected = model.state_dict()
        state: dict[str, torch.Tensor] = {}
        for name, param in expected.items():
            if name not in ckpt.weights:
                raise CheckpointError(f"{ckpt.directory}: expected tensor {name}, found none")
            value = np.asarray(ckpt.weights[name], dtype=np.float32)
            if tuple(value.shape) != tuple(param.shape):
                raise CheckpointError(
                    f"{ckpt.directory}: expected {name} of shape {tuple(param.shape)}, "
                    f"found {tuple(value.shape)}"
                )
            if not np.isfinite(value).all():
                raise CheckpointError(f"{ckpt.directory}: expected finite values in {name}, found NaN/Inf")
            state[name] = torch.from_numpy(value.copy())
        # tensors of the encoder that the config does not use mean config and weights disagree
        # (e.g. num_hidden_layers 1 over 2-layer weights); the pooler, task heads and the
        # position_ids buffer are other parts of a checkpoint and are left out on purpose
        unused = sorted(n for n in ckpt.weights if n not in expected and n.startswith(("encoder.", "embeddings."))
                        and n != "embeddings.position_ids")
        if unused:
            raise CheckpointError(f"{ckpt.directory}: expected only the tensors config.json describes, found "
                                  f"{len(unused)} more (e.g. {unused[0]}): does num_hidden_layers or the size match?")
        model.load_state_dict(state)
        if ckpt.projection is not None:
            w, b = ckpt.projection
            model.projection = nn.Linear(w.shape[1], w.shape[0])
            with torch.no_grad():
                model.projection.weight.copy_(torch.from_numpy(w))
                model.projection.bias.copy_(torch.from_numpy(b))
        return model.eval()
