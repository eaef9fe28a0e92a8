"""What the converter needs from a model directory, whatever its family: one adapter per family.

``load_source`` reads a BERT checkpoint (with calibration text) or a TinyML MLP directory (with a
``.npy`` array of inputs) into a ``Source``: the fp32 graph form, the calibration and evaluation
batches (20% of the lines or rows held out when there are at least 10), the tokenizer. Calibration
text is cut to the model's length and bounded in tokens.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from edgebert.artifact import sha256_path
from edgebert.compress.lower import lower_bert, lower_mlp
from edgebert.errors import InputError
from edgebert.graph.form import Graph
from edgebert.model.checkpoint import load_checkpoint
from edgebert.model.encoder import BertEncoder
from edgebert.model.tinyml import is_mlp_dir, load_mlp
from edgebert.model.tokenizer import encode_batch

HELD_OUT_FRACTION = 0.2
MIN_LINES_FOR_HOLD_OUT = 10
MAX_CALIBRATION_TOKENS = 500_000  # calibration + evaluation text, after truncation to the model's length



def read_text_lines(path: str | Path) -> list[str]:
    """Non-empty lines of a UTF-8 text file; InputError if missing, undecodable or empty."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: expected a calibration text file, found no such file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: expected UTF-8 text, found undecodable bytes at offset {exc.start}") from None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        raise InputError(f"{path}: expected at least one non-empty line of calibration text, found none")
    return lines


def bound_lines(tokenizer, lines: list[str], max_length: int, max_tokens: int = MAX_CALIBRATION_TOKENS  # noqa: ANN001
                ) -> list[str]:
    """Each line cut to what ``max_length`` tokens can use (WordPiece turns a word of over 100
    characters into one [UNK], so ``max_length`` x 101 characters always suffice), and lines kept
    only while their tokens add up to at most ``max_tokens``: a 45 MB one-line file costs a
    fraction of a second, not minutes and gigabytes."""
    cut = [line[:max_length * 101] for line in lines]
    kept, total = [], 0
    for i in range(0, len(cut), 256):
        for line, enc in zip(cut[i:i + 256], tokenizer.encode_batch(cut[i:i + 256]), strict=True):
            total += len(enc.ids)
            if total > max_tokens:
                return kept
            kept.append(line)
    return kept


def split_held_out(lines: list[str]) -> tuple[list[str], list[str], bool]:
    """Calibration lines, evaluation lines, and whether evaluation is held out from calibration."""
    if len(lines) < MIN_LINES_FOR_HOLD_OUT:
        return lines, lines, False
    n_eval = max(1, int(len(lines) * HELD_OUT_FRACTION))
    return lines[:-n_eval], lines[-n_eval:], True


def read_array(path: str | Path, input_dim: int) -> np.ndarray:
    """A (rows, input_dim) float array from a .npy file (pickle refused)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: expected a calibration .npy file, found no such file")
    try:
        data = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(f"{path}: expected a numpy .npy array without pickle, found: {exc}") from None
    if data.ndim != 2 or data.shape[1] != input_dim or data.shape[0] == 0:
        raise InputError(f"{path}: expected an array of shape (rows, {input_dim}), found {data.shape}")
    if not np.issubdtype(data.dtype, np.number) or not np.isfinite(data).all():
        raise InputError(f"{path}: expected finite numbers, found dtype {data.dtype} or NaN/Inf values")
    return data.astype(np.float32)


@dataclass
class Source:
    """What the pipeline needs from a model directory, whatever its family."""

    fp32: Graph
    name: str
    weights_sha256: str
    config: dict
    calibration: list[dict[str, np.ndarray]]
    evaluation: list[dict[str, np.ndarray]]
    held_out: bool
    tokenizer: Tokenizer | None = None
    max_seq_length: int = 0
    evaluation_texts: tuple[str, ...] = ()  # a BERT model's evaluation lines, in no particular order


def bert_source(model_dir: Path, calibration: str | Path | list[str] | None, allow_pickle: bool, need: bool) -> Source:
    if isinstance(calibration, (str, Path)) and Path(calibration).suffix == ".npy":
        raise InputError(f"{calibration}: expected UTF-8 text (one sentence per line) for a BERT model, found a .npy file")
    lines = read_text_lines(calibration) if isinstance(calibration, (str, Path)) else list(calibration or [])
    if need and not lines:
        raise InputError("calibration: expected at least one sentence, found none")
    ckpt = load_checkpoint(model_dir, allow_pickle=allow_pickle)
    fp32 = lower_bert(BertEncoder.from_checkpoint(ckpt))
    lines = bound_lines(ckpt.tokenizer, lines, ckpt.max_seq_length)
    cal, ev, held = split_held_out(lines) if lines else ([], [], False)
    return Source(fp32, model_name(ckpt.directory), ckpt.sha256, ckpt.config.to_dict(), list(batches(ckpt.tokenizer, cal)),
                  list(batches(ckpt.tokenizer, ev)), held, ckpt.tokenizer, ckpt.max_seq_length, tuple(ev))


def mlp_source(model_dir: Path, calibration: str | Path | list[str] | None, need: bool) -> Source:
    cfg, weights = load_mlp(model_dir)
    rows = np.zeros((0, cfg.input_dim), np.float32)
    if calibration is not None:
        if not isinstance(calibration, (str, Path)) or Path(calibration).suffix != ".npy":
            raise InputError(f"--calibration: expected a .npy array of inputs for an MLP model, found {calibration!r}")
        rows = read_array(calibration, cfg.input_dim)
    if need and not len(rows):
        raise InputError("--calibration: expected a .npy array of model inputs for int8 conversion, found none")
    n_eval = max(1, int(len(rows) * HELD_OUT_FRACTION)) if len(rows) >= MIN_LINES_FOR_HOLD_OUT else 0
    cal, ev = (rows[:-n_eval], rows[-n_eval:]) if n_eval else (rows, rows)
    batches = [{"x": cal[i:i + 256]} for i in range(0, len(cal), 256)]
    return Source(lower_mlp(cfg, weights), model_name(model_dir), sha256_path(model_dir / "model.safetensors"),
                  cfg.to_dict(), batches, [{"x": ev}] if len(ev) else [], bool(n_eval))


def batches(tokenizer, texts: list[str], batch_size: int = 16) -> Iterator[dict[str, np.ndarray]]:  # noqa: ANN001
    order = sorted(texts, key=len)  # similar lengths together: less padding
    for i in range(0, len(order), batch_size):
        ids, mask = encode_batch(tokenizer, order[i:i + batch_size])
        yield {"input_ids": ids, "attention_mask": mask}


def model_name(model_dir: Path) -> str:
    """A readable model name: the checkpoint's directory, or its parent for generic names."""
    model_dir = model_dir.resolve()
    generic = {"model", "checkpoint", "weights", "snapshot"}
    return model_dir.parent.name if model_dir.name.lower() in generic else model_dir.name


def load_source(model_dir: Path, calibration: str | Path | list[str] | None, allow_pickle: bool, need: bool) -> Source:
    """The model directory's family decides the adapter."""
    if is_mlp_dir(model_dir):
        return mlp_source(model_dir, calibration, need)
    return bert_source(model_dir, calibration, allow_pickle, need)
