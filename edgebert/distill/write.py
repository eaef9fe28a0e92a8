"""Write a distilled student as a Hugging Face / sentence-transformers checkpoint directory.

config.json, model.safetensors (BertModel names), tokenizer.json + vocab.txt, modules.json
(Transformer, Pooling, Dense: the projection to the teacher's width, Normalize when the teacher
normalizes), sentence_bert_config.json (max_seq_length) and distill.json (how it was made). Every
file is written to a temporary name and renamed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from edgebert.distill.student import plain_state
from edgebert.files import atomic_write
from edgebert.graph.form import POOLING_MODES
from edgebert.model.encoder import BertEncoder


def _save(path: Path, tensors: dict[str, np.ndarray]) -> None:
    from safetensors.numpy import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    save_file({k: np.ascontiguousarray(v, np.float32) for k, v in tensors.items()}, str(tmp))
    tmp.replace(path)


def write_student(out: Path, model: BertEncoder, tokenizer: Any, max_length: int, report: dict) -> Path:  # noqa: ANN401
    cfg = model.config
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v for k, v in plain_state(model).items() if not k.startswith("projection.")}
    atomic_write(out / "config.json", json.dumps({**cfg.to_dict(), "model_type": "bert", "architectures": ["BertModel"],
                                                  "position_embedding_type": "absolute",
                                                  "name": report.get("student", "student")}, indent=2))
    _save(out / "model.safetensors", state)
    tok = tokenizer.to_str()
    atomic_write(out / "tokenizer.json", tok)
    vocab = json.loads(tok)["model"]["vocab"]
    atomic_write(out / "vocab.txt", "\n".join(sorted(vocab, key=vocab.__getitem__)) + "\n")
    atomic_write(out / "tokenizer_config.json", json.dumps({"do_lower_case": True}))
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
    pooling = model.pooling
    for sub in ("1_Pooling", "2_Dense"):
        (out / sub).mkdir(exist_ok=True)
    modes = pooling.modes if pooling is not None else ("mean",)
    # sentence-transformers' older flags (which concatenate CLS, max, mean in that fixed order) and,
    # for an order those cannot say, its newer pooling_mode list
    config: dict[str, Any] = {"word_embedding_dimension": cfg.hidden_size,
                              **{f"pooling_mode_{k}": m in modes for m, k in (("cls", "cls_token"), ("max", "max_tokens"),
                                                                             ("mean", "mean_tokens"))}}
    if list(modes) != sorted(modes, key=POOLING_MODES.index):
        config = {"embedding_dimension": cfg.hidden_size, "pooling_mode": list(modes)}
    atomic_write(out / "1_Pooling" / "config.json", json.dumps(config))
    if model.projection is not None:
        w = model.projection.weight.detach().numpy()
        modules.append({"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"})
        atomic_write(out / "2_Dense" / "config.json", json.dumps({
            "in_features": int(w.shape[1]), "out_features": int(w.shape[0]), "bias": True,
            "activation_function": "torch.nn.modules.linear.Identity"}))
        _save(out / "2_Dense" / "model.safetensors", {"linear.weight": w,
                                                       "linear.bias": model.projection.bias.detach().numpy()})
    if pooling is not None and pooling.normalize:
        modules.append({"idx": len(modules), "name": str(len(modules)), "path": f"{len(modules)}_Normalize",
                        "type": "sentence_transformers.models.Normalize"})
    atomic_write(out / "modules.json", json.dumps(modules, indent=2))
    atomic_write(out / "sentence_bert_config.json", json.dumps({"max_seq_length": max_length, "do_lower_case": False}))
    atomic_write(out / "distill.json", json.dumps(report, indent=2, default=str))
    return out


__all__ = ["write_student"]
