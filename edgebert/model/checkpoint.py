"""Load a Hugging Face BERT-architecture checkpoint directory without network access.

A checkpoint directory holds ``config.json``, ``model.safetensors`` (or, only with an explicit
opt-in, a pickle ``pytorch_model.bin``), ``tokenizer.json`` or ``vocab.txt``, and optionally the
sentence-transformers files ``modules.json`` and ``1_Pooling/config.json``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from edgebert.artifact import sha256_path
from edgebert.errors import ArtifactError, CheckpointError
from edgebert.graph.form import POOLING_MODES, pooling_modes
from edgebert.model.config import BertConfig
from edgebert.model.tokenizer import load_tokenizer


@dataclass(frozen=True)
class Pooling:
    """Sentence-transformers pooling: how token states become one sentence embedding. Several modes
    concatenate their vectors (CLS, max, mean: sentence-transformers' order), so the embedding is
    ``len(modes) x hidden`` wide before any Dense module."""

    mode: str = "mean"
    normalize: bool = False

    def __post_init__(self) -> None:
        try:
            pooling_modes(self.mode)
        except ArtifactError as exc:
            raise CheckpointError(str(exc)) from None

    @property
    def modes(self) -> tuple[str, ...]:
        return pooling_modes(self.mode)


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint: config, fp32 weights under BertModel names, tokenizer, pooling."""

    directory: Path
    config: BertConfig
    weights: dict[str, np.ndarray] = field(repr=False)
    tokenizer: Tokenizer = field(repr=False)
    pooling: Pooling | None
    max_seq_length: int
    sha256: str
    # a sentence-transformers Dense module after the pooling: (weight (out, in), bias (out,)), linear
    projection: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)


def _read_json(path: Path) -> dict:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: expected JSON, found a parse error ({exc})") from None
    if not isinstance(raw, (dict, list)):
        raise CheckpointError(f"{path}: expected a JSON object, found {type(raw).__name__}")
    return raw


def _read_pooling(model_dir: Path) -> Pooling | None:
    modules_path = model_dir / "modules.json"
    if not modules_path.is_file():
        return None
    modules = _read_json(modules_path)
    if not isinstance(modules, list):
        raise CheckpointError(f"{modules_path}: expected a JSON list of modules, found an object")
    types = [str(m.get("type", "")) for m in modules if isinstance(m, dict)]
    pooling_dirs = [m.get("path", "") for m in modules if str(m.get("type", "")).endswith("Pooling")]
    if not pooling_dirs:
        return None
    config_path = model_dir / pooling_dirs[0] / "config.json"
    mode = "mean"
    if config_path.is_file():
        mode = _pooling_mode(_read_json(config_path), config_path)
    return Pooling(mode=mode, normalize=any(t.endswith("Normalize") for t in types))


_LEGACY_KEYS = {"cls": "pooling_mode_cls_token", "max": "pooling_mode_max_tokens", "mean": "pooling_mode_mean_tokens"}
_OTHER_KEYS = ("pooling_mode_mean_sqrt_len_tokens", "pooling_mode_weightedmean_tokens", "pooling_mode_lasttoken")


def _pooling_mode(raw: dict | list, path: Path) -> str:
    """The pooling mode of a sentence-transformers Pooling config: its ``pooling_mode`` (a name or a
    list, sentence-transformers >= 5) or the older ``pooling_mode_*_tokens`` flags."""
    if not isinstance(raw, dict):
        raise CheckpointError(f"{path}: expected a JSON object, found a list")
    given = raw.get("pooling_mode")
    if given is not None:  # concatenated in the order given
        modes = [given] if isinstance(given, str) else given
        if not isinstance(modes, list) or not all(isinstance(m, str) for m in modes):
            raise CheckpointError(f"{path}: expected pooling_mode to be a mode name or a list of them, found {given!r}")
    elif any(raw.get(k) for k in _OTHER_KEYS):
        modes = [k.removeprefix("pooling_mode_") for k in _OTHER_KEYS if raw.get(k)]
    else:  # the flags concatenate in sentence-transformers' fixed order: CLS, max, mean
        modes = [m for m in POOLING_MODES if raw.get(_LEGACY_KEYS[m])]
        if not modes and _LEGACY_KEYS["mean"] not in raw:
            modes = ["mean"]  # no flag at all: sentence-transformers' default
    if not modes or any(m not in POOLING_MODES for m in modes) or len(set(modes)) != len(modes):
        raise CheckpointError(f"{path}: expected cls, max and/or mean pooling, found {modes or 'none'}")
    return "+".join(modes)


def _read_projection(model_dir: Path, hidden: int) -> tuple[np.ndarray, np.ndarray] | None:
    """A sentence-transformers ``Dense`` module after the pooling (identity activation only)."""
    modules_path = model_dir / "modules.json"
    if not modules_path.is_file():
        return None
    modules = _read_json(modules_path)
    dense = [m for m in modules if isinstance(m, dict) and str(m.get("type", "")).endswith("Dense")]
    if not dense:
        return None
    where = model_dir / str(dense[0].get("path", ""))
    if len(dense) > 1 or not where.resolve().is_relative_to(model_dir.resolve()):
        raise CheckpointError(f"{modules_path}: expected at most one Dense module inside the checkpoint, found "
                              f"{len(dense)} (or a path outside it)")
    cfg = _read_json(where / "config.json") if (where / "config.json").is_file() else {}
    act = str(cfg.get("activation_function", "torch.nn.modules.linear.Identity"))
    if not act.endswith("Identity"):
        raise CheckpointError(f"{where / 'config.json'}: expected a linear Dense module (Identity activation), "
                              f"found {act!r}")
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        raw = load_file(str(where / "model.safetensors"))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{where / 'model.safetensors'}: expected the Dense module's weights, found: "
                              f"{exc}") from None
    w = np.asarray(raw.get("linear.weight"), np.float32)
    b = np.asarray(raw.get("linear.bias", np.zeros(w.shape[:1])), np.float32)
    if w.ndim != 2 or w.shape[1] != hidden or b.shape != (w.shape[0],) or not (np.isfinite(w).all()
                                                                                and np.isfinite(b).all()):
        raise CheckpointError(f"{where}: expected a finite linear.weight (out, {hidden}) and linear.bias, found "
                              f"shapes {w.shape} and {b.shape}")
    return w, b


def _read_weights(model_dir: Path, allow_pickle: bool) -> tuple[dict[str, np.ndarray], Path]:
    st_path, bin_path = model_dir / "model.safetensors", model_dir / "pytorch_model.bin"
    if st_path.is_file():
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        try:
            return load_file(str(st_path)), st_path
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(
                f"{st_path}: expected a safetensors file, found a corrupt one ({exc})"
            ) from None
    if bin_path.is_file():
        if not allow_pickle:
            raise CheckpointError(
                f"{bin_path}: expected model.safetensors, found only a pickle checkpoint; "
                "pickle can run code, pass --allow-pickle (allow_pickle=True) if you trust it"
            )
        import torch

        try:
            state = torch.load(bin_path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises many types for a bad pickle
            raise CheckpointError(f"{bin_path}: expected a torch state dict, found: {exc}") from None
        return {k: v.float().numpy() if v.is_floating_point() else v.numpy() for k, v in state.items()}, bin_path
    raise CheckpointError(f"{model_dir}: expected model.safetensors, found no weights file")


def _normalize_names(weights: dict[str, np.ndarray], source: Path) -> dict[str, np.ndarray]:
    """Strip a leading ``bert.`` / ``model.`` prefix so that names match BertModel's."""
    out: dict[str, np.ndarray] = {}
    for name, value in weights.items():
        for prefix in ("bert.", "model."):
            if name.startswith(prefix):
                name = name[len(prefix):]
                break
        out[name] = value
    if "embeddings.word_embeddings.weight" not in out:
        raise CheckpointError(
            f"{source}: expected BERT weights (embeddings.word_embeddings.weight), found none"
        )
    return out


def load_checkpoint(model_dir: str | Path, allow_pickle: bool = False) -> Checkpoint:
    """Load a checkpoint directory; raises CheckpointError with a one-line reason on bad input."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise CheckpointError(f"{model_dir}: expected a checkpoint directory, found no such directory")
    config = BertConfig.from_file(model_dir / "config.json")
    raw_weights, weights_path = _read_weights(model_dir, allow_pickle)
    weights = _normalize_names(raw_weights, weights_path)
    max_seq = config.max_position_embeddings
    st_config = model_dir / "sentence_bert_config.json"
    if st_config.is_file():
        max_seq = min(max_seq, int(_read_json(st_config).get("max_seq_length", max_seq)))
    tokenizer = load_tokenizer(model_dir, max_length=max_seq)
    pooling = _read_pooling(model_dir)
    width = config.hidden_size * (len(pooling.modes) if pooling is not None else 1)
    return Checkpoint(
        directory=model_dir,
        config=config,
        weights=weights,
        tokenizer=tokenizer,
        pooling=pooling,
        max_seq_length=max_seq,
        sha256=sha256_path(weights_path),
        projection=_read_projection(model_dir, width),
    )
