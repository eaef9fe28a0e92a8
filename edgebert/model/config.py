"""Architecture config of a BERT-family checkpoint (Hugging Face ``config.json``)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edgebert.errors import CheckpointError

SUPPORTED_MODEL_TYPES = ("bert",)
SUPPORTED_ACTIVATIONS = ("gelu", "gelu_new", "gelu_pytorch_tanh", "relu")


@dataclass(frozen=True)
class BertConfig:
    """Shapes and options of a compact BERT encoder (post-LayerNorm, absolute positions)."""

    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    hidden_act: str = "gelu"
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0
    # Bi-Attention (BiBERT, Qin et al. 2022) in place of softmax attention: a fully binarized (W1A1)
    # student's; not a Hugging Face key (``transformers`` would run such a checkpoint with softmax)
    binary_attention: bool = False

    def __post_init__(self) -> None:
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                     "intermediate_size", "max_position_embeddings", "type_vocab_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise CheckpointError(f"config.json: expected a positive integer {name}, found {value!r}")
        if self.hidden_size % self.num_attention_heads:
            raise CheckpointError(
                f"config.json: expected hidden_size divisible by num_attention_heads, found "
                f"{self.hidden_size} and {self.num_attention_heads}"
            )
        if self.hidden_act not in SUPPORTED_ACTIVATIONS:
            raise CheckpointError(
                f"config.json: expected hidden_act one of {', '.join(SUPPORTED_ACTIVATIONS)}, "
                f"found {self.hidden_act!r}"
            )
        if not isinstance(self.binary_attention, bool):
            raise CheckpointError(f"config.json: expected binary_attention true or false, found "
                                  f"{self.binary_attention!r}")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if not self.binary_attention:  # an ordinary BERT's config.json stays as Hugging Face writes it
            del out["binary_attention"]
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "config.json") -> BertConfig:
        model_type = raw.get("model_type")
        archs = raw.get("architectures") or []
        if model_type not in SUPPORTED_MODEL_TYPES:
            raise CheckpointError(
                f"{source}: expected a BERT-architecture checkpoint (model_type 'bert'), found "
                f"model_type {model_type!r}" + (f" ({', '.join(archs)})" if archs else "")
            )
        position_type = raw.get("position_embedding_type", "absolute")
        if position_type != "absolute":
            raise CheckpointError(
                f"{source}: expected position_embedding_type 'absolute', found {position_type!r}"
            )
        missing = [k for k in ("vocab_size", "hidden_size", "num_hidden_layers",
                               "num_attention_heads", "intermediate_size") if k not in raw]
        if missing:
            raise CheckpointError(f"{source}: expected keys {', '.join(missing)}, found none")
        fields = {k: raw[k] for k in cls.__dataclass_fields__ if k in raw}
        if "layer_norm_eps" in fields:
            fields["layer_norm_eps"] = float(fields["layer_norm_eps"])
        if fields.get("pad_token_id") is None:
            fields["pad_token_id"] = 0
        return cls(**fields)

    @classmethod
    def from_file(cls, path: Path) -> BertConfig:
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise CheckpointError(f"{path.parent}: expected config.json, found no such file") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CheckpointError(f"{path}: expected JSON, found a parse error ({exc})") from None
        if not isinstance(raw, dict):
            raise CheckpointError(f"{path}: expected a JSON object, found {type(raw).__name__}")
        return cls.from_dict(raw, source=str(path))
