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
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import onnx

from edgebert import __version__
from edgebert.artifact import Artifact, Manifest, file_entries
from edgebert.compress import reference
from edgebert.compress.calibrate import calibrate
from edgebert.compress.graph import Graph
from edgebert.compress.int8 import Int8Scheme, quantize_graph
from edgebert.compress.lower import lower_bert
from edgebert.emit.onnx import OPSET, to_onnx
from edgebert.errors import ConversionError, InputError
from edgebert.model.checkpoint import load_checkpoint
from edgebert.model.encoder import BertEncoder
from edgebert.model.tokenizer import encode_batch

Progress = Callable[[str, int, int], None]  # (step, done, total)
CONVERT_PRECISIONS = ("fp32", "int8")
HELD_OUT_FRACTION = 0.2
MIN_LINES_FOR_HOLD_OUT = 10


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


def split_held_out(lines: list[str]) -> tuple[list[str], list[str], bool]:
    """Calibration lines, evaluation lines, and whether evaluation is held out from calibration."""
    if len(lines) < MIN_LINES_FOR_HOLD_OUT:
        return lines, lines, False
    n_eval = max(1, int(len(lines) * HELD_OUT_FRACTION))
    return lines[:-n_eval], lines[-n_eval:], True


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
    if precision == "fp32":
        return {"scheme": "none", "groups": {"all": "fp32"}}
    linears = {n.name: {"weights": "int8 symmetric per-output-channel",
                        "activations": ("uint8 dynamic per-tensor" if n.attrs.get("act") == "dynamic" else
                                        f"uint8 static per-tensor ({n.attrs.get('range_method')})"),
                        "smoothquant_alpha": n.attrs.get("smoothquant_alpha")}
               for n in g.linears() if n.attrs.get("act")}
    return {
        "scheme": "static post-training quantization (calibrated), SmoothQuant per linear",
        "settings": scheme.to_dict() if scheme else {},
        "groups": {
            "embeddings": "int8 symmetric per-row (word; position + token type 0)",
            "linear": "int8 weights per-output-channel, uint8 activations (see per_linear)",
            "layernorm": "fp32", "softmax": "fp32", "gelu": "fp32", "attention_matmul": "fp32",
        },
        "per_linear": linears,
    }


def _measure(fp32: Graph, model_bytes: bytes, fp32_bytes: bytes, tokenizer, texts: list[str],  # noqa: ANN001
             held_out: bool, progress: Progress) -> dict:
    from edgebert import measure

    progress("measure", 0, 3)
    ref = np.concatenate([reference.run(fp32, f)[fp32.outputs[-1]] for f in _batches(tokenizer, texts)])
    order = sorted(texts, key=len)
    sess = measure.session(model_bytes)
    got = measure.embeddings(sess, tokenizer, order, batch_size=16)
    if "sentence_embedding" not in fp32.outputs:  # compare mean-pooled token states
        ref = measure.embeddings(measure.session(fp32_bytes), tokenizer, order, batch_size=16)
    cos = measure.cosine(got, ref)
    progress("measure", 1, 3)
    vocab = int(fp32.meta["config"]["vocab_size"])
    max_seq = min(128, int(fp32.meta["config"]["max_position_embeddings"]))
    lat = measure.median(measure.latency_ms(sess, 1, max_seq, runs=20, vocab=vocab))
    progress("measure", 2, 3)
    lat_fp32 = measure.median(measure.latency_ms(measure.session(fp32_bytes), 1, max_seq, runs=20, vocab=vocab))
    progress("measure", 3, 3)
    return {
        "fidelity": {"metric": "cosine of sentence embeddings to the fp32 model", "mean": float(cos.mean()),
                     "worst": float(cos.min()), "texts": len(texts), "held_out": held_out},
        "latency": {"batch": 1, "seq": max_seq, "threads": 1, "median_ms": lat, "fp32_median_ms": lat_fp32},
    }


def memory_estimate(cfg: dict, max_seq: int, model_bytes: int, tokenizer_bytes: int) -> dict:
    """Flash and peak RAM an ONNX Runtime device needs at batch 1 and the longest sequence.

    Peak RAM is an estimate: initializers held in memory (~ model.onnx) plus the live fp32
    activations of one layer (hidden state x3, QKV, two attention score tensors, two FFN tensors).
    """
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
    """Convert a checkpoint directory into an artifact directory and return the Artifact.

    ``calibration`` is a UTF-8 text file (one sentence per line) or a list of sentences; it is
    required for int8. 20% of its lines (when there are at least 10) are held out of
    calibration and used to measure fidelity.
    """
    out_dir = Path(out_dir)
    if precision not in CONVERT_PRECISIONS:
        raise InputError(f"--precision: expected one of {', '.join(CONVERT_PRECISIONS)}, found {precision!r}")
    _check_out_dir(out_dir, force)
    if calibration is None and precision == "int8":
        raise InputError("--calibration: expected a text file for int8 conversion, found none")
    lines = read_text_lines(calibration) if isinstance(calibration, (str, Path)) else list(calibration or [])
    if precision == "int8" and not lines:
        raise InputError("calibration: expected at least one sentence, found none")
    progress("load", 0, 1)
    ckpt = load_checkpoint(model_dir, allow_pickle=allow_pickle)
    fp32 = lower_bert(BertEncoder.from_checkpoint(ckpt))
    progress("load", 1, 1)
    cal_lines, eval_lines, held_out = split_held_out(lines) if lines else ([], [], False)

    scheme = scheme or Int8Scheme()
    graph = fp32
    if precision == "int8":
        batches = list(_batches(ckpt.tokenizer, cal_lines))
        done = 0

        def counted() -> Iterator[dict[str, np.ndarray]]:
            nonlocal done
            for b in batches:
                yield b
                done += 1
                progress("calibrate", done, len(batches))

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
    if measure and eval_lines:
        fp32_bytes = model_bytes if graph is fp32 else to_onnx(fp32).SerializeToString()
        metrics = _measure(fp32, model_bytes, fp32_bytes, ckpt.tokenizer, eval_lines, held_out, progress)

    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
        tmp.chmod(0o755)
    except OSError as exc:
        raise InputError(f"{out_dir}: expected a writable location, found: {exc.strerror or exc}") from None
    try:
        (tmp / "model.onnx").write_bytes(model_bytes)
        ckpt.tokenizer.save(str(tmp / "tokenizer.json"))
        graph.save(tmp / "graph.safetensors")
        name = name or model_name(ckpt.directory)
        manifest = Manifest(
            artifact_id=f"{name}-{precision}-{ckpt.sha256[:8]}",
            toolkit_version=__version__,
            source={"directory": str(ckpt.directory.resolve()), "name": name, "weights_sha256": ckpt.sha256},
            architecture={"type": "bert", "config": ckpt.config.to_dict(), "max_seq_length": ckpt.max_seq_length,
                          "pooling": graph.meta.get("pooling"), "parameters": int(sum(
                              t.size for k, t in fp32.tensors.items()))},
            precision=precision,
            quantization=_quantization_summary(graph, precision, scheme if precision == "int8" else None),
            files=file_entries(tmp, ["model.onnx", "tokenizer.json", "graph.safetensors"]),
            onnx=_onnx_summary(model),
            metrics=metrics,
            runtime="onnxruntime",
            memory=memory_estimate(ckpt.config.to_dict(), ckpt.max_seq_length, len(model_bytes),
                                   (tmp / "tokenizer.json").stat().st_size),
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
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
