"""The student: its shape, and its weights taken from the teacher or drawn at random (host, torch).

Shapes are the miniature BERTs of Turc et al. ("Well-Read Students Learn Better"): ``bert-tiny``
(L2/H128), ``bert-mini`` (L4/H256), ``bert-small`` (L4/H512), ``bert-medium`` (L8/H512), or
``L<layers>H<hidden>``; the feed-forward width is 4x hidden. Initialised from the teacher, the
student keeps the teacher's head width (so heads are sliced whole: H128 from MiniLM's 32-wide
heads has 4 heads), takes teacher layers evenly spaced from the top (TinyBERT's uniform mapping:
student layer i <- teacher layer (i+1)*Lt/Ls - 1) and the first ``hidden`` dimensions of every
matrix (width slicing), and the word-table rows the (pruned) vocabulary keeps. The sentence
projection (student width -> teacher width, a sentence-transformers Dense module in the output)
starts as the first ``hidden`` columns of the identity on the mean block. The student pools
``cls+mean`` by default (the CLS state and the mean, concatenated: sentence-transformers' multi-mode
pooling), which lifts the rank cap a 128-wide mean puts on a 384-wide teacher embedding.
"""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
import torch
from torch import nn

from edgebert.compress.ste import binarize_activation, binarize_weight
from edgebert.errors import ArtifactError, InputError
from edgebert.graph.form import pooling_modes
from edgebert.model.checkpoint import Pooling
from edgebert.model.config import BertConfig
from edgebert.model.encoder import BertEncoder
from edgebert.model.zoo import SHAPES, random_weights

SPEC = re.compile(r"^L(\d{1,2})H(\d{2,4})$")
INITS = ("teacher", "random")
# the CLS state beside the mean: a 256-wide pooled vector, so the Dense projection to the teacher's
# 384 dimensions is not capped at rank 128 (the best rank-128 map of MiniLM's embeddings reaches
# cosine 0.90; docs/distillation.md)
DEFAULT_POOLING = "cls+mean"


def student_shape(spec: str) -> tuple[int, int]:
    if spec in SHAPES:
        return SHAPES[spec]
    m = SPEC.match(spec)
    if m is None:
        raise InputError(f"--student: expected one of {', '.join(SHAPES)} or L<layers>H<hidden> (e.g. L2H128), "
                         f"found {spec!r}")
    layers, hidden = int(m.group(1)), int(m.group(2))
    if not (1 <= layers <= 24 and 16 <= hidden <= 1024):
        raise InputError(f"--student: expected 1..24 layers and 16..1024 hidden, found L{layers}H{hidden}")
    return layers, hidden


def student_config(spec: str, teacher: BertConfig, vocab_size: int, init: str, max_position: int) -> BertConfig:
    layers, hidden = student_shape(spec)
    if init == "teacher":
        if hidden > teacher.hidden_size or layers > teacher.num_hidden_layers:
            raise InputError(f"--student {spec}: expected no wider or deeper than the teacher "
                             f"(L{teacher.num_hidden_layers}H{teacher.hidden_size}) to start from it, found "
                             f"L{layers}H{hidden} (use --init random)")
        if hidden % teacher.head_dim:
            raise InputError(f"--student {spec}: expected a width divisible by the teacher's head width "
                             f"{teacher.head_dim}, found {hidden}")
        heads = hidden // teacher.head_dim
    else:
        heads = max(2, hidden // 64)
    return BertConfig(vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                      num_attention_heads=heads, intermediate_size=4 * hidden,
                      max_position_embeddings=min(max_position, teacher.max_position_embeddings),
                      hidden_act=teacher.hidden_act, layer_norm_eps=teacher.layer_norm_eps)


def layer_map(student_layers: int, teacher_layers: int) -> list[int]:
    """Teacher layer index (0-based) each student layer starts from, and is matched against."""
    return [(i + 1) * teacher_layers // student_layers - 1 for i in range(student_layers)]


def _slice(t: np.ndarray, rows: int | None, cols: int | None) -> np.ndarray:
    out = t[:rows] if rows is not None else t
    if cols is not None and out.ndim == 2:
        out = out[:, :cols]
    return np.ascontiguousarray(out, np.float32)


def teacher_slice(teacher: BertEncoder, cfg: BertConfig, old_ids: tuple[int, ...]) -> dict[str, np.ndarray]:
    """Student weights under BertModel names, cut from the teacher's."""
    sd = {k: v.detach().numpy() for k, v in teacher.state_dict().items()}
    h, f = cfg.hidden_size, cfg.intermediate_size
    rows = np.asarray(old_ids, np.int64)
    w = {"embeddings.word_embeddings.weight": _slice(sd["embeddings.word_embeddings.weight"][rows], None, h),
         "embeddings.position_embeddings.weight": _slice(sd["embeddings.position_embeddings.weight"],
                                                         cfg.max_position_embeddings, h),
         "embeddings.token_type_embeddings.weight": _slice(sd["embeddings.token_type_embeddings.weight"], None, h),
         "embeddings.LayerNorm.weight": _slice(sd["embeddings.LayerNorm.weight"], h, None),
         "embeddings.LayerNorm.bias": _slice(sd["embeddings.LayerNorm.bias"], h, None)}
    shapes = {"attention.self.query": (h, h), "attention.self.key": (h, h), "attention.self.value": (h, h),
              "attention.output.dense": (h, h), "intermediate.dense": (f, h), "output.dense": (h, f)}
    for i, t in enumerate(layer_map(cfg.num_hidden_layers, teacher.config.num_hidden_layers)):
        sp, tp = f"encoder.layer.{i}", f"encoder.layer.{t}"
        for name, (out_f, in_f) in shapes.items():
            w[f"{sp}.{name}.weight"] = _slice(sd[f"{tp}.{name}.weight"], out_f, in_f)
            w[f"{sp}.{name}.bias"] = _slice(sd[f"{tp}.{name}.bias"], out_f, None)
        for ln in ("attention.output.LayerNorm", "output.LayerNorm"):
            w[f"{sp}.{ln}.weight"] = _slice(sd[f"{tp}.{ln}.weight"], h, None)
            w[f"{sp}.{ln}.bias"] = _slice(sd[f"{tp}.{ln}.bias"], h, None)
    return w


def build_student(teacher: BertEncoder, cfg: BertConfig, old_ids: tuple[int, ...], init: str,
                  seed: int, pooling: str = DEFAULT_POOLING) -> BertEncoder:
    """A student encoder with its pooling (``pooling`` modes, the teacher's normalization) and its
    sentence projection from the pooled width to the teacher's: the identity on the mean block (or
    the first), zero on the others, so the student starts as the sliced teacher's mean embedding."""
    if init not in INITS:
        raise InputError(f"--init: expected one of {', '.join(INITS)}, found {init!r}")
    try:
        modes = pooling_modes(pooling)
    except ArtifactError as exc:
        raise InputError(f"--pooling: {exc}") from None
    weights = teacher_slice(teacher, cfg, old_ids) if init == "teacher" else random_weights(cfg, seed)
    normalize = teacher.pooling.normalize if teacher.pooling is not None else False
    student = BertEncoder(cfg, Pooling(pooling, normalize))
    student.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in weights.items()})
    width, h = teacher.config.hidden_size, cfg.hidden_size
    student.projection = nn.Linear(h * len(modes), width)
    first = modes.index("mean") if "mean" in modes else 0
    with torch.no_grad():
        student.projection.weight.zero_()
        student.projection.weight[:, first * h:(first + 1) * h] = torch.eye(width, h)
        student.projection.bias.zero_()
    return student


class _Binarized(nn.Module):
    """A parametrization: the module's weight is seen through ``compress.ste.binarize_weight``."""

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return binarize_weight(w)


def _binary_input(module: nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    return (binarize_activation(args[0]),)


BINARIZE = ("w1a8", "w1a1")


def binarize_student(student: BertEncoder, mode: str) -> BertEncoder:
    """Make every encoder linear (Q, K, V, attention output, FFN up and down) binarization-aware:
    its forward sees 1-bit weights (``binarize_weight``; mode "w1a8") and, for "w1a1", 1-bit inputs
    too, and its attention becomes Bi-Attention (``compress.ste.bi_attention``; recorded in its
    config as ``binary_attention``); gradients reach the latent float weights straight through.
    Embeddings, LayerNorms and the sentence projection stay as they are (the export keeps them int8
    / float)."""
    binarize_linears(student.encoder, mode)
    if mode == "w1a1":
        student.config = replace(student.config, binary_attention=True)
        for layer in student.encoder.layer:
            layer.attention.self.binary = True
    return student


def binarize_linears(net: nn.Module, mode: str) -> nn.Module:
    """Every nn.Linear inside ``net`` sees 1-bit weights (and, for "w1a1", 1-bit inputs)."""
    from torch.nn.utils import parametrize

    if mode not in BINARIZE:
        raise InputError(f"--binarize: expected one of {', '.join(BINARIZE)}, found {mode!r}")
    for module in net.modules():
        if isinstance(module, nn.Linear):
            parametrize.register_parametrization(module, "weight", _Binarized())
            if mode == "w1a1":
                module.register_forward_pre_hook(_binary_input)
    return net


def plain_state(model: nn.Module) -> dict[str, np.ndarray]:
    """The model's tensors under their plain names, a parametrized weight as its latent float value
    (what the export binarizes again, to the same signs, scales and centres)."""
    out = {}
    for key, value in model.state_dict().items():
        out[key.replace(".parametrizations.weight.original", ".weight")] = value.detach().numpy()
    return out


__all__ = ["BINARIZE", "DEFAULT_POOLING", "INITS", "binarize_linears", "binarize_student", "build_student",
           "layer_map", "plain_state", "student_config", "student_shape", "teacher_slice"]
