"""Fidelity and latency measurements with ONNX Runtime (used at conversion and in benchmarks)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from edgebert.model.tokenizer import encode_batch


def session(model: str | Path | bytes, threads: int = 1) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def embeddings(sess: ort.InferenceSession, tokenizer: Tokenizer, texts: list[str],
               batch_size: int = 1) -> np.ndarray:
    """Sentence embeddings (batch, hidden); mean-pooled last_hidden_state if the model has no pooling."""
    names = [o.name for o in sess.get_outputs()]
    out = []
    for i in range(0, len(texts), batch_size):
        ids, mask = encode_batch(tokenizer, texts[i:i + batch_size])
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "sentence_embedding" in names:
            out.append(sess.run(["sentence_embedding"], feeds)[0])
        else:
            h = sess.run(["last_hidden_state"], feeds)[0]
            m = mask[..., None].astype(np.float32)
            out.append((h * m).sum(1) / np.maximum(m.sum(1), 1e-9))
    return np.concatenate(out)


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of (n, d) arrays."""
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return (a * b).sum(1) / np.maximum(den, 1e-12)


def latency_ms(sess: ort.InferenceSession, batch: int = 1, seq: int = 128, runs: int = 30,
               warmup: int = 5, vocab: int = 1000) -> list[float]:
    """Wall times (ms) of ``runs`` calls on random token ids (batch, seq)."""
    rng = np.random.default_rng(0)
    low = 100 if vocab > 200 else 1  # past the special tokens of a real vocabulary; always a valid id
    feeds = {"input_ids": rng.integers(low, max(low + 1, vocab), (batch, seq), dtype=np.int64),
             "attention_mask": np.ones((batch, seq), dtype=np.int64)}
    for _ in range(warmup):
        sess.run(None, feeds)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        sess.run(None, feeds)
        times.append((time.perf_counter() - start) * 1e3)
    return times


def timed(call: Callable[[], object], runs: int = 100, warmup: int = 10) -> list[float]:
    """Wall times (ms) of ``runs`` calls."""
    for _ in range(warmup):
        call()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1e3)
    return times


def median(values: list[float]) -> float:
    return float(statistics.median(values))
