"""The converter: checkpoint directory -> artifact directory (fp32 or static int8 ONNX).

Flow: load checkpoint -> torch encoder -> fp32 graph form -> calibrate on text -> int8 graph
form -> ONNX emitter -> measure fidelity/latency -> manifest. Everything is written into a
temporary sibling directory that is renamed into place only when complete.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import onnx
from tokenizers import Tokenizer

from edgebert import __version__, measure
from edgebert.artifact import Artifact, Manifest, file_entries, sha256_path
from edgebert.compress.calibrate import calibrate
from edgebert.compress.int8 import Int8Scheme, quantize_graph
from edgebert.compress.lower import lower_bert, lower_mlp
from edgebert.cpu import integer_kernel
from edgebert.emit.onnx import OPSET, to_onnx
from edgebert.errors import ConversionError, InputError
from edgebert.graph.avx2 import INT16_MAX, INT16_MIN, pair_sum_bounds
from edgebert.graph.form import Graph
from edgebert.model.checkpoint import load_checkpoint
from edgebert.model.encoder import BertEncoder
from edgebert.model.tinyml import is_mlp_dir, load_mlp
from edgebert.model.tokenizer import encode_batch

Progress = Callable[[str, int, int], None]  # (step, done, total)
CONVERT_PRECISIONS = ("fp32", "int8")
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


def _bert_source(model_dir: Path, calibration: str | Path | list[str] | None, allow_pickle: bool, need: bool) -> Source:
    if isinstance(calibration, (str, Path)) and Path(calibration).suffix == ".npy":
        raise InputError(f"{calibration}: expected UTF-8 text (one sentence per line) for a BERT model, found a .npy file")
    lines = read_text_lines(calibration) if isinstance(calibration, (str, Path)) else list(calibration or [])
    if need and not lines:
        raise InputError("calibration: expected at least one sentence, found none")
    ckpt = load_checkpoint(model_dir, allow_pickle=allow_pickle)
    fp32 = lower_bert(BertEncoder.from_checkpoint(ckpt))
    lines = bound_lines(ckpt.tokenizer, lines, ckpt.max_seq_length)
    cal, ev, held = split_held_out(lines) if lines else ([], [], False)
    return Source(fp32, model_name(ckpt.directory), ckpt.sha256, ckpt.config.to_dict(), list(_batches(ckpt.tokenizer, cal)),
                  list(_batches(ckpt.tokenizer, ev)), held, ckpt.tokenizer, ckpt.max_seq_length)


def _mlp_source(model_dir: Path, calibration: str | Path | list[str] | None, need: bool) -> Source:
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


def _batches(tokenizer, texts: list[str], batch_size: int = 16) -> Iterator[dict[str, np.ndarray]]:  # noqa: ANN001
    order = sorted(texts, key=len)  # similar lengths together: less padding
    for i in range(0, len(order), batch_size):
        ids, mask = encode_batch(tokenizer, order[i:i + batch_size])
        yield {"input_ids": ids, "attention_mask": mask}


def model_name(model_dir: Path) -> str:
    """A readable model name: the checkpoint's directory, or its parent for generic names."""
    model_dir = model_dir.resolve()
    generic = {"model", "checkpoint", "weights", "snapshot"}
    return model_dir.parent.name if model_dir.name.lower() in generic else model_dir.name


def _check_out_dir(out_dir: Path, force: bool) -> None:
    if out_dir.exists() and not force:
        raise InputError(f"{out_dir}: expected a new output directory, found an existing one (use --force to replace it)")
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir}: expected a directory path, found a file")


def _install(tmp: Path, out_dir: Path) -> None:
    """Move a finished temporary directory into place, replacing out_dir atomically-ish."""
    backup = None
    if out_dir.exists():
        backup = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
        os.replace(out_dir, backup)
    os.replace(tmp, out_dir)
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)


def _onnx_summary(model: onnx.ModelProto) -> dict:
    ops = sorted({(f"{n.domain}." if n.domain else "") + n.op_type for n in model.graph.node})
    return {"opset": OPSET, "domains": sorted({o.domain or "ai.onnx" for o in model.opset_import}),
            "ops": ops, "inputs": [i.name for i in model.graph.input],
            "outputs": [o.name for o in model.graph.output], "execution_provider": "CPUExecutionProvider"}


def _quantization_summary(g: Graph, precision: str, scheme: Int8Scheme | None) -> dict:
    if precision == "fp32" or scheme is None:
        return {"scheme": "none", "groups": {"all": "fp32"}}
    ranges = scheme.ranges
    int8 = [n for n in g.linears() if n.attrs.get("act")]
    bounds = [pair_sum_bounds(g.tensors[n.attrs["weight"]]) for n in int8]
    linears = {n.name: {"weights": f"int8 symmetric per-output-channel, codes within "
                                   f"[-{ranges.weight_max}, {ranges.weight_max}]",
                        "activations": ("uint8 dynamic per-tensor" if n.attrs.get("act") == "dynamic" else
                                        f"uint8 static per-tensor ({n.attrs.get('range_method')})"),
                        "smoothquant_alpha": n.attrs.get("smoothquant_alpha"),
                        "pair_sum_range": list(b)}
               for n, b in zip(int8, bounds, strict=True)}
    return {
        "scheme": "static post-training quantization (calibrated), SmoothQuant per linear",
        "settings": scheme.to_dict(),
        "groups": {
            "embeddings": "int8 symmetric per-row (word; position + token type 0)",
            "linear": "int8 weights per-output-channel, uint8 activations (see per_linear)",
            "layernorm": "fp32", "softmax": "fp32", "gelu": "fp32", "attention_matmul": "fp32",
        },
        # what no CPU's int8 kernel may saturate: checked on the final weights, for any uint8 input
        "integer_ranges": {**ranges.to_dict(),
                           "pair_sum_range": [min((b[0] for b in bounds), default=0),
                                              max((b[1] for b in bounds), default=0)],
                           "saturation_free": all(INT16_MIN <= lo and hi <= INT16_MAX for lo, hi in bounds)},
        "per_linear": linears,
    }


def _compare(got: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Per-sample fidelity of outputs ``got`` to the fp32 outputs ``ref``."""
    if got.shape[1] > 1:
        return measure.cosine(got, ref)
    return 1.0 - np.abs(got - ref)[:, 0] / (np.abs(ref).max() + 1e-9)


def _outputs(src: Source, run: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]) -> np.ndarray:
    """The compared output over the evaluation batches: the sentence embedding (mean-pooled token
    states for a model without pooling) or a TinyML net's output."""
    out_name = src.fp32.outputs[-1]
    rows = []
    for feeds in src.evaluation:
        out = run(feeds)
        if src.tokenizer is not None and out_name != "sentence_embedding":
            m = feeds["attention_mask"][..., None].astype(np.float32)
            rows.append((out["last_hidden_state"] * m).sum(1) / m.sum(1))
        else:
            rows.append(out[out_name])
    return np.concatenate(rows)


def _measure(src: Source, graph: Graph, model_bytes: bytes, fp32_bytes: bytes, progress: Progress) -> dict:
    from edgebert.graph import reference

    progress("measure", 0, 3)
    sess, ref_sess = measure.session(model_bytes), measure.session(fp32_bytes)
    names = [o.name for o in sess.get_outputs()]
    got = _outputs(src, lambda f: dict(zip(names, sess.run(None, f), strict=True)))
    ref = _outputs(src, lambda f: dict(zip(names, ref_sess.run(None, f), strict=True)))
    exact = _outputs(src, lambda f: reference.run(graph, f))  # integer maths without saturation
    cos, cos_exact = _compare(got, ref), _compare(exact, ref)
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
        lat, lat32 = (measure.median(measure.latency_ms(s, 1, seq, runs=20, vocab=vocab)) for s in (sess, ref_sess))
        latency = {"batch": 1, "seq": seq, "threads": 1, "median_ms": lat, "fp32_median_ms": lat32}
    else:
        x = {"x": src.evaluation[0]["x"][:1]}
        lat, lat32 = (measure.median(measure.timed(lambda s=s: s.run(None, x), runs=200)) for s in (sess, ref_sess))
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


def _silent(step: str, done: int, total: int) -> None:
    pass


def convert(model_dir: str | Path, out_dir: str | Path, precision: str = "int8",
            calibration: str | Path | list[str] | None = None, *, force: bool = False,
            allow_pickle: bool = False, scheme: Int8Scheme | None = None, measure: bool = True,
            name: str | None = None, progress: Progress = _silent) -> Artifact:
    """Convert a model directory into an artifact directory and return the Artifact.

    BERT checkpoints take ``calibration`` as a UTF-8 text file (one sentence per line) or a list
    of sentences; TinyML MLP directories (``edgebert tinyml train``) take a ``.npy`` array of
    inputs. It is required for int8. 20% of it (when there are at least 10 lines or rows) is held
    out of calibration and used to measure fidelity.
    """
    out_dir, model_dir = Path(out_dir), Path(model_dir)
    if precision not in CONVERT_PRECISIONS:
        raise InputError(f"--precision: expected one of {', '.join(CONVERT_PRECISIONS)}, found {precision!r}")
    _check_out_dir(out_dir, force)
    if calibration is None and precision == "int8":
        raise InputError("--calibration: expected a text file (BERT) or .npy array (MLP) for int8 conversion, found none")
    progress("load", 0, 1)
    if is_mlp_dir(model_dir):
        src = _mlp_source(model_dir, calibration, need=precision == "int8")
    else:
        src = _bert_source(model_dir, calibration, allow_pickle, need=precision == "int8")
    fp32 = src.fp32
    progress("load", 1, 1)

    scheme = scheme or Int8Scheme()
    graph = fp32
    if precision == "int8":
        done = 0

        def counted() -> Iterator[dict[str, np.ndarray]]:
            nonlocal done
            for b in src.calibration:
                yield b
                done += 1
                progress("calibrate", done, len(src.calibration))

        stats = calibrate(fp32, counted())
        progress("quantize", 0, 1)
        graph = quantize_graph(fp32, stats, scheme)
        progress("quantize", 1, 1)
    model = to_onnx(graph, producer_version=__version__)
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:  # pragma: no cover - emitter bug
        raise ConversionError(f"emitted ONNX: expected a valid model, found: {exc}") from None
    model_bytes = model.SerializeToString()
    metrics = {}
    if measure and src.evaluation:
        fp32_bytes = model_bytes if graph is fp32 else to_onnx(fp32).SerializeToString()
        metrics = _measure(src, graph, model_bytes, fp32_bytes, progress)

    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
        tmp.chmod(0o755)
    except OSError as exc:
        raise InputError(f"{out_dir}: expected a writable location, found: {exc.strerror or exc}") from None
    try:
        (tmp / "model.onnx").write_bytes(model_bytes)
        files = ["model.onnx", "graph.safetensors"]
        if src.tokenizer is not None:
            src.tokenizer.save(str(tmp / "tokenizer.json"))
            files.insert(1, "tokenizer.json")
        graph.save(tmp / "graph.safetensors")
        name = name or src.name
        extra_flash = (tmp / "tokenizer.json").stat().st_size if src.tokenizer is not None else 0
        manifest = Manifest(
            artifact_id=f"{name}-{precision}-{src.weights_sha256[:8]}",
            toolkit_version=__version__,
            source={"directory": str(model_dir.resolve()), "name": name, "weights_sha256": src.weights_sha256},
            architecture={"type": fp32.meta["architecture"], "config": src.config, "max_seq_length": src.max_seq_length,
                          "pooling": graph.meta.get("pooling"),
                          "parameters": int(sum(t.size for t in fp32.tensors.values()))},
            precision=precision,
            quantization=_quantization_summary(graph, precision, scheme if precision == "int8" else None),
            files=file_entries(tmp, files),
            onnx=_onnx_summary(model),
            metrics=metrics,
            runtime="onnxruntime",
            memory=memory_estimate(fp32, src.max_seq_length, len(model_bytes), extra_flash),
            created=datetime.now(timezone.utc).isoformat(timespec="microseconds"),
        )
        manifest = Manifest.from_json(manifest.to_json())  # what a reader of the file will see
        (tmp / "manifest.json").write_text(manifest.to_json(), encoding="utf-8")
        _install(tmp, out_dir)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise InputError(f"{out_dir}: expected to write the artifact, found: {exc.strerror or exc}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Artifact(out_dir, manifest)
