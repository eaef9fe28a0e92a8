"""Vocabulary pruning for small students (pure, on tokenizer JSON and token counts).

A BERT-Tiny's 30,522-row word table is 3.7 MB in fp32, ten times its encoder: on a
microcontroller the table is the bottleneck (MCUBERT, arXiv 2410.17957). ``prune`` keeps the
special tokens, every single character and its ``##`` continuation (so that every input still
tokenizes: a word the kept pieces cannot spell falls back to characters, not to [UNK]), then the
most frequent pieces of the given text, up to ``keep`` rows. The tokenizer is remapped
consistently: its WordPiece vocabulary, special-token ids, post-processor and padding.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from typing import Any

from edgebert.errors import InputError

SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


@dataclass(frozen=True)
class Pruned:
    tokenizer_json: str        # the remapped tokenizer (tokenizers JSON)
    old_ids: tuple[int, ...]   # new id i was old id old_ids[i]: the word-table rows to keep, in order
    required: int              # specials and characters kept whatever their frequency


def vocab_of(tokenizer_json: str) -> dict[str, int]:
    raw = json.loads(tokenizer_json)
    model = raw.get("model", {})
    if model.get("type") != "WordPiece" or not isinstance(model.get("vocab"), dict):
        raise InputError(f"tokenizer: expected a WordPiece tokenizer, found {model.get('type')!r}")
    return dict(model["vocab"])


def required_tokens(vocab: dict[str, int]) -> list[str]:
    """Specials, single characters and '##' + single character: what keeps every input spellable."""
    chars = [t for t in vocab if len(t) == 1 or (t.startswith("##") and len(t) == 3)]
    return [t for t in SPECIALS if t in vocab] + sorted(chars, key=vocab.__getitem__)


def prune(tokenizer_json: str, counts: Counter[int], keep: int) -> Pruned:
    """Keep the required tokens and the most frequent others (ties: lower old id first), ``keep`` in all."""
    vocab = vocab_of(tokenizer_json)
    required = required_tokens(vocab)
    if keep < len(required):
        raise InputError(f"--vocab-size: expected at least {len(required)} (special tokens and single characters), "
                         f"found {keep}")
    if keep >= len(vocab):
        return Pruned(tokenizer_json, tuple(sorted(vocab.values())), len(required))
    by_id = {i: t for t, i in vocab.items()}
    chosen = {vocab[t] for t in required}
    for old, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        if len(chosen) >= keep:
            break
        if old in by_id:
            chosen.add(old)
    old_ids = tuple(sorted(chosen))
    new_of = {old: new for new, old in enumerate(old_ids)}
    return Pruned(_remap(tokenizer_json, {by_id[o]: new_of[o] for o in old_ids}), old_ids, len(required))


def _remap(tokenizer_json: str, new_vocab: dict[str, int]) -> str:
    raw: dict[str, Any] = json.loads(tokenizer_json)
    raw["model"]["vocab"] = new_vocab
    raw["added_tokens"] = [{**t, "id": new_vocab[t["content"]]} for t in raw.get("added_tokens") or []
                           if t.get("content") in new_vocab]
    post = raw.get("post_processor") or {}
    if post.get("type") == "TemplateProcessing":
        for name, spec in post.get("special_tokens", {}).items():
            spec["ids"] = [new_vocab[t] for t in spec.get("tokens", [name])]
    elif post.get("type") == "BertProcessing":
        post["sep"] = [post["sep"][0], new_vocab[post["sep"][0]]]
        post["cls"] = [post["cls"][0], new_vocab[post["cls"][0]]]
    if raw.get("padding"):
        raw["padding"]["pad_id"] = new_vocab.get(raw["padding"].get("pad_token", "[PAD]"), 0)
    return json.dumps(raw, ensure_ascii=False)


def coverage(ids: list[list[int]], kept: set[int], specials: set[int]) -> float:
    """Share of the word pieces of tokenized text (original ids, specials left out) that survive
    pruning as they are (not split further into characters)."""
    pieces = [i for row in ids for i in row if i not in specials]
    return sum(1 for i in pieces if i in kept) / max(len(pieces), 1)


__all__ = ["SPECIALS", "Pruned", "coverage", "prune", "required_tokens", "vocab_of"]
