"""The converter: model directory -> artifact directory (fp32 or static int8 ONNX), as a pipeline.

source (``edgebert.source``: one adapter per model family) -> calibrate -> quantize
(``edgebert.compress``) -> emit (``edgebert.emit``) -> measure (``edgebert.measure``) -> write
atomically (``edgebert.files.atomic_dir``: a temporary sibling renamed into place when complete).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import onnx

from edgebert.artifact import Artifact, Manifest, file_entries
from edgebert.compress.calibrate import calibrate, value_ranges
from edgebert.compress.int8 import Int8Scheme, quantize_graph
from edgebert.emit.onnx import OPSET, to_onnx
from edgebert.errors import ConversionError, InputError
from edgebert.files import atomic_dir
from edgebert.graph.avx2 import INT16_MAX, INT16_MIN, pair_sum_bounds
from edgebert.graph.form import RANGE_PREFIX, Graph
from edgebert.measure import fidelity_and_latency, memory_estimate
from edgebert.progress import Progress, silent
from edgebert.source import Source, load_source
from edgebert.version import __version__

CONVERT_PRECISIONS = ("fp32", "int8", "binary", "binary-full")


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


def convert(model_dir: str | Path, out_dir: str | Path, precision: str = "int8",
            calibration: str | Path | list[str] | None = None, *, force: bool = False,
            allow_pickle: bool = False, scheme: Int8Scheme | None = None, measure: bool = True,
            name: str | None = None, steps: int | None = None, minutes: float | None = None,
            embedding_bits: int = 8, vocab_size: int | None = None, progress: Progress = silent) -> Artifact:
    """Convert a model directory into an artifact directory and return the Artifact.

    BERT checkpoints take ``calibration`` as a UTF-8 text file (one sentence per line) or a list
    of sentences; TinyML MLP directories (``edgebert tinyml train``) take a ``.npy`` array of
    inputs. It is required for int8 and binary. 20% of it (when there are at least 10 lines or rows)
    is held out of calibration and used to measure fidelity. ``binary`` / ``binary-full`` (1-bit
    weights; W1A8 / W1A1) go through ``convert_binary``: with a ``steps``/``minutes`` budget a BERT
    is first distilled binarization-aware from itself on the calibration text.
    """
    out_dir, model_dir = Path(out_dir), Path(model_dir)
    if precision not in CONVERT_PRECISIONS:
        raise InputError(f"--precision: expected one of {', '.join(CONVERT_PRECISIONS)}, found {precision!r}")
    if out_dir.exists() and not force:
        raise InputError(f"{out_dir}: expected a new output directory, found an existing one (use --force to replace it)")
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir}: expected a directory path, found a file")
    if calibration is None and precision != "fp32":
        raise InputError(f"--calibration: expected a text file (BERT) or .npy array (MLP) for {precision} conversion, "
                         "found none")
    if (steps is not None and steps < 1) or (minutes is not None and not minutes > 0):
        raise InputError(f"--steps/--minutes: expected a positive --steps/--minutes, found {steps}/{minutes}")
    if embedding_bits not in (4, 8) or (embedding_bits == 4 and not precision.startswith("binary")):
        raise InputError(f"--embedding-bits: expected 8, or 4 with --precision binary, found {embedding_bits} with "
                         f"{precision}")
    if (steps is not None or minutes is not None) and not precision.startswith("binary"):
        raise InputError(f"--steps/--minutes: expected only with --precision binary or binary-full, found {precision}")
    if vocab_size is not None and steps is None and minutes is None:
        raise InputError(f"--vocab-size: expected with a binary --steps/--minutes distillation (it prunes the "
                         f"student's table), found {vocab_size} without one")
    if precision.startswith("binary"):
        from edgebert.convert_binary import convert_binary

        assert calibration is not None
        return convert_binary(model_dir, out_dir, precision, calibration, steps=steps, minutes=minutes,
                              allow_pickle=allow_pickle, measure=measure, name=name, embedding_bits=embedding_bits,
                              vocab_size=vocab_size, progress=progress)
    progress("load", 0, 1)
    src = load_source(model_dir, calibration, allow_pickle, need=precision == "int8")
    progress("load", 1, 1)
    scheme = scheme or Int8Scheme()
    graph = _quantized(src, scheme, progress) if precision == "int8" else src.fp32
    model = _emit(graph)
    model_bytes = model.SerializeToString()
    metrics = {}
    if measure and src.evaluation:
        fp32_bytes = model_bytes if graph is src.fp32 else to_onnx(src.fp32).SerializeToString()
        metrics = fidelity_and_latency(src, graph, model_bytes, fp32_bytes, progress)
    with atomic_dir(out_dir, "the artifact") as tmp:
        manifest = _write(tmp, src, graph, model, model_bytes, precision, scheme, metrics, name or src.name, model_dir)
    return Artifact(out_dir, manifest)


def _quantized(src: Source, scheme: Int8Scheme, progress: Progress) -> Graph:
    """Calibrate on the source's calibration batches, then quantize."""
    done = 0

    def counted() -> Iterator[dict[str, np.ndarray]]:
        nonlocal done
        for b in src.calibration:
            yield b
            done += 1
            progress("calibrate", done, len(src.calibration))

    stats = calibrate(src.fp32, counted())
    progress("quantize", 0, 1)
    graph = quantize_graph(src.fp32, stats, scheme)
    if graph.meta.get("architecture") == "mlp":  # what a firmware export needs to quantize the outputs
        graph.meta["output_ranges"] = output_ranges(graph, src.calibration)
    elif graph.meta.get("architecture") == "bert":  # ... and, for a transformer, every token-wise value
        graph.tensors.update({RANGE_PREFIX + name: r for name, r in value_ranges(graph, src.calibration).items()})
    progress("quantize", 1, 1)
    return graph


def output_ranges(graph: Graph, batches: list[dict[str, np.ndarray]]) -> dict[str, list[float]]:
    """[min, max] of every graph output over the calibration batches, as the int8 graph computes them."""
    from edgebert.graph import reference

    lo: dict[str, float] = {}
    hi: dict[str, float] = {}
    for feeds in batches:
        for name, value in reference.run(graph, feeds).items():
            if name in graph.outputs:
                lo[name] = min(lo.get(name, np.inf), float(value.min()))
                hi[name] = max(hi.get(name, -np.inf), float(value.max()))
    return {name: [lo[name], hi[name]] for name in graph.outputs if name in lo}


def _emit(graph: Graph) -> onnx.ModelProto:
    model = to_onnx(graph, producer_version=__version__)
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:  # pragma: no cover - emitter bug
        raise ConversionError(f"emitted ONNX: expected a valid model, found: {exc}") from None
    return model


def _write(tmp: Path, src: Source, graph: Graph, model: onnx.ModelProto, model_bytes: bytes, precision: str,
           scheme: Int8Scheme, metrics: dict, name: str, model_dir: Path) -> Manifest:
    """The artifact's files and its manifest, into the temporary directory."""
    (tmp / "model.onnx").write_bytes(model_bytes)
    files = ["model.onnx", "graph.safetensors"]
    if src.tokenizer is not None:
        src.tokenizer.save(str(tmp / "tokenizer.json"))
        files.insert(1, "tokenizer.json")
    graph.save(tmp / "graph.safetensors")
    extra_flash = (tmp / "tokenizer.json").stat().st_size if src.tokenizer is not None else 0
    fp32 = src.fp32
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
    return manifest
