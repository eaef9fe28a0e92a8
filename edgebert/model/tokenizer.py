"""WordPiece tokenization with the `tokenizers` library (tokenizer.json or vocab.txt)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

from edgebert.errors import CheckpointError


def _from_vocab(vocab_path: Path, lowercase: bool) -> Tokenizer:
    vocab: dict[str, int] = {}
    for index, line in enumerate(vocab_path.read_text(encoding="utf-8").splitlines()):
        token = line.rstrip("\n")
        if token and token not in vocab:
            vocab[token] = index
    for special in ("[UNK]", "[CLS]", "[SEP]", "[PAD]"):
        if special not in vocab:
            raise CheckpointError(f"{vocab_path}: expected special token {special}, found none")
    tok = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=lowercase)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.BertProcessing(("[SEP]", vocab["[SEP]"]), ("[CLS]", vocab["[CLS]"]))
    tok.decoder = decoders.WordPiece()
    return tok


def load_tokenizer(model_dir: Path, max_length: int) -> Tokenizer:
    """Load ``tokenizer.json`` (preferred) or build one from ``vocab.txt``; truncate at max_length."""
    json_path, vocab_path = model_dir / "tokenizer.json", model_dir / "vocab.txt"
    if json_path.is_file():
        try:
            tok = Tokenizer.from_file(str(json_path))
        except Exception as exc:  # tokenizers raises a plain Exception on bad JSON
            raise CheckpointError(f"{json_path}: expected a tokenizers JSON file, found: {exc}") from None
    elif vocab_path.is_file():
        lowercase = True
        config_path = model_dir / "tokenizer_config.json"
        if config_path.is_file():
            try:
                lowercase = bool(json.loads(config_path.read_text("utf-8")).get("do_lower_case", True))
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise CheckpointError(f"{config_path}: expected JSON, found a parse error") from None
        try:
            tok = _from_vocab(vocab_path, lowercase)
        except UnicodeDecodeError:
            raise CheckpointError(f"{vocab_path}: expected UTF-8 text, found undecodable bytes") from None
    else:
        raise CheckpointError(f"{model_dir}: expected tokenizer.json or vocab.txt, found neither")
    tok.no_padding()
    tok.enable_truncation(max_length=max_length)
    return tok


def encode_batch(tok: Tokenizer, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Tokenize and right-pad a batch; returns (input_ids, attention_mask), int64 (batch, seq)."""
    encodings = tok.encode_batch(texts)
    seq = max(len(e.ids) for e in encodings)
    ids = np.zeros((len(texts), seq), dtype=np.int64)
    mask = np.zeros((len(texts), seq), dtype=np.int64)
    for row, enc in enumerate(encodings):
        ids[row, : len(enc.ids)] = enc.ids
        mask[row, : len(enc.ids)] = 1
    return ids, mask
