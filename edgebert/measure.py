"""Fidelity, latency and memory measurements with ONNX Runtime (used at conversion and in benchmarks)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from edgebert.cpu import integer_kernel
from edgebert.graph.reference import mean_pool
from edgebert.progress import Progress
from edgebert.runtime.backends import ort_session
from edgebert.runtime.engine import sentence_embeddings

if TYPE_CHECKING:
    from edgebert.graph.form import Graph
    from edgebert.source import Source



def session(model: str | Path | bytes, threads: int = 1) -> ort.InferenceSession:
    return ort_session(model, threads)


def embeddings(sess: ort.InferenceSession, tokenizer: Tokenizer, texts: list[str],
               batch_size: int = 1) -> np.ndarray:
    """Sentence embeddings (batch, hidden); mean-pooled last_hidden_state if the model has no pooling."""
    names = [o.name for o in sess.get_outputs()]
    return sentence_embeddings(lambda feeds, outs: dict(zip(outs, sess.run(outs, feeds), strict=True)), names,
                               tokenizer, texts, batch_size)


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


def compare_outputs(got: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Per-sample fidelity of outputs ``got`` to the fp32 outputs ``ref``."""
    if got.shape[1] > 1:
        return cosine(got, ref)
    return 1.0 - np.abs(got - ref)[:, 0] / (np.abs(ref).max() + 1e-9)


def evaluation_outputs(src: Source, run: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]
                       ) -> np.ndarray:
    """The compared output over the evaluation batches: the sentence embedding (mean-pooled token
    states for a model without pooling) or a TinyML net's output."""
    out_name = src.fp32.outputs[-1]
    rows = []
    for feeds in src.evaluation:
        out = run(feeds)
        if src.tokenizer is not None and out_name != "sentence_embedding":
            rows.append(mean_pool(out["last_hidden_state"], feeds["attention_mask"]))
        else:
            rows.append(out[out_name])
    return np.concatenate(rows)


def fidelity_and_latency(src: Source, graph: Graph, model_bytes: bytes, fp32_bytes: bytes,
                         progress: Progress) -> dict:
    from edgebert.graph import reference

    progress("measure", 0, 3)
    sess, ref_sess = session(model_bytes), session(fp32_bytes)
    names = [o.name for o in sess.get_outputs()]
    got = evaluation_outputs(src, lambda f: dict(zip(names, sess.run(None, f), strict=True)))
    ref = evaluation_outputs(src, lambda f: dict(zip(names, ref_sess.run(None, f), strict=True)))
    exact = evaluation_outputs(src, lambda f: reference.run(graph, f))  # integer maths without saturation
    cos, cos_exact = compare_outputs(got, ref), compare_outputs(exact, ref)
    metric = ("cosine of sentence embeddings to the fp32 model" if src.tokenizer is not None else
              "cosine of outputs to the fp32 model" if got.shape[1] > 1 else "1 - |error| / max|fp32 output|")
    fidelity = {"metric": metric, "mean": float(cos.mean()), "worst": float(cos.min()),
                "reference_mean": float(cos_exact.mean()), "reference_worst": float(cos_exact.min()),
                "texts" if src.tokenizer is not None else "samples": int(len(got)), "held_out": src.held_out,
                "integer_kernel": integer_kernel().to_dict()}
    if src.config.get("loss") == "xent":
        fidelity["argmax_agreement"] = float((got.argmax(1) == ref.argmax(1)).mean())
    if src.config.get("loss") == "mse":
        fidelity["max_abs_error"] = float(np.abs(got - ref).max())
    progress("measure", 1, 3)
    if src.tokenizer is not None:
        vocab = int(src.config["vocab_size"])
        seq = min(128, int(src.config["max_position_embeddings"]))
        lat, lat32 = (median(latency_ms(s, 1, seq, runs=20, vocab=vocab)) for s in (sess, ref_sess))
        latency = {"batch": 1, "seq": seq, "threads": 1, "median_ms": lat, "fp32_median_ms": lat32}
    else:
        x = {"x": src.evaluation[0]["x"][:1]}
        lat, lat32 = (median(timed(lambda s=s: s.run(None, x), runs=200)) for s in (sess, ref_sess))
        latency = {"batch": 1, "threads": 1, "median_ms": lat, "fp32_median_ms": lat32}
    progress("measure", 3, 3)
    return {"fidelity": fidelity, "latency": latency}


def memory_estimate(fp32: Graph, max_seq: int, model_bytes: int, tokenizer_bytes: int) -> dict:
    """Flash and peak RAM an ONNX Runtime device needs at batch 1 (and the longest sequence).

    Peak RAM is an estimate: initializers held in memory (~ model.onnx) plus live fp32 activations:
    for BERT one layer's (hidden state x3, QKV, two attention score tensors, two FFN tensors),
    for an MLP the two widest consecutive layers.
    """
    cfg = fp32.meta["config"]
    if fp32.meta["architecture"] == "mlp":
        sizes = [cfg["input_dim"], *cfg["hidden"], cfg["n_outputs"]]
        activations = 4 * max(a + b for a, b in zip(sizes, sizes[1:], strict=False))
        return {"flash_bytes": model_bytes, "peak_ram_bytes": model_bytes + activations,
                "method": "estimate: weights + the two widest layers' activations at batch 1"}
    s, h, f, heads = max_seq, cfg["hidden_size"], cfg["intermediate_size"], cfg["num_attention_heads"]
    activations = 4 * (3 * s * h + 3 * s * h + 2 * heads * s * s + 2 * s * f)
    return {"flash_bytes": model_bytes + tokenizer_bytes, "peak_ram_bytes": model_bytes + activations,
            "seq": max_seq, "method": "estimate: weights + one layer's live activations at batch 1"}
