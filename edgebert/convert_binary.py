"""The converter's 1-bit path: model directory -> binarized artifact (``--precision binary`` / ``binary-full``).

(binarization-aware distillation, teacher = the fp32 checkpoint, when a --steps/--minutes budget is
given: ``edgebert.distill`` with ``binarize``) -> calibrate -> binarize the graph
(``compress.binary``) -> the host library (``runtime/c``, built with the system C compiler) ->
measure against the fp32 model -> write atomically. The artifact holds no ONNX model: its linears
exist only as packed bits (``graph.safetensors``), which the device runs through the library
(``runtime.binary``).
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path

import numpy as np

from edgebert.artifact import BINARY_RUNTIME, Artifact, Manifest, file_entries
from edgebert.compress.binary import MODES, binarize_graph
from edgebert.compress.calibrate import calibrate
from edgebert.errors import EdgeBertError, InputError
from edgebert.files import atomic_dir
from edgebert.graph.form import Graph
from edgebert.model.tinyml import is_mlp_dir
from edgebert.progress import Progress, silent
from edgebert.source import Source, load_source, read_text_lines
from edgebert.version import __version__

DISTILL = {"binary": "w1a8", "binary-full": "w1a1"}


def state_dir(out_dir: Path) -> Path:
    """Where an interrupted binarization-aware distillation for ``out_dir`` keeps its state."""
    return out_dir.parent / f".{out_dir.name}.binarize"


def _distilled(model_dir: Path, calibration: str | Path | list[str], out_dir: Path, precision: str,
               steps: int | None, minutes: float | None, vocab_size: int | None, progress: Progress) -> Path:
    """A binarization-aware student of ``model_dir`` (same shape, the teacher's pooling) trained on
    the calibration text; resumable in ``state_dir(out_dir)``."""
    from edgebert.distill import distill
    from edgebert.model.checkpoint import load_checkpoint

    ckpt = load_checkpoint(model_dir)
    work = state_dir(out_dir)
    work.mkdir(parents=True, exist_ok=True)
    data = work / "text.txt"
    lines = read_text_lines(calibration) if isinstance(calibration, (str, Path)) else [s.strip() for s in calibration]
    data.write_text("\n".join(s for s in lines if s) + "\n", encoding="utf-8")
    cfg = ckpt.config
    distill(model_dir, data, work / "student", f"L{cfg.num_hidden_layers}H{cfg.hidden_size}", steps=steps,
            minutes=minutes, binarize=DISTILL[precision], vocab_size=vocab_size,
            pooling=ckpt.pooling.mode if ckpt.pooling is not None else "mean", progress=progress)
    return work / "student"


def _distilled_mlp(model_dir: Path, calibration: str | Path | list[str], out_dir: Path, precision: str,
                   steps: int | None, minutes: float | None, progress: Progress) -> Path:
    """A binarization-aware copy of a TinyML net, trained to the fp32 net's outputs on the
    calibration inputs (``distill.mlp``); its calibration array goes with it."""
    from edgebert.distill.mlp import distill_mlp
    from edgebert.model.tinyml import load_mlp
    from edgebert.source import read_array

    cfg, _ = load_mlp(model_dir)
    x = read_array(calibration, cfg.input_dim) if isinstance(calibration, (str, Path)) else \
        np.asarray(calibration, np.float32)
    work = state_dir(out_dir)
    distill_mlp(model_dir, x, work / "student", DISTILL[precision], steps=steps, minutes=minutes, progress=progress)
    return work / "student"


def _distill_report(model_dir: Path) -> dict:
    """A distilled model directory's report (a BERT student's ``distill.json``, a TinyML net's
    ``config.json`` "distill"), or {}."""
    import json

    for name, key in (("distill.json", None), ("config.json", "distill")):
        path = Path(model_dir) / name
        if not path.is_file():
            continue
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        raw = raw.get(key) if key and isinstance(raw, dict) else raw
        if isinstance(raw, dict):
            return raw
    return {}


def _aware_mode(report: dict) -> str | None:
    mode = report.get("binarize")
    return str(mode) if mode in DISTILL.values() else None


def binarization_aware(model_dir: Path) -> str | None:
    """The mode ("w1a8"/"w1a1") a model directory was distilled through 1-bit weights with, if it was."""
    return _aware_mode(_distill_report(model_dir))


def _teacher(report: dict, src: Source) -> Source | None:
    """The fp32 model a binarization-aware model was distilled from (its ``report``), when it is still
    where the report says, with the student's evaluation inputs as the teacher reads them (the same
    texts through the teacher's own tokenizer, cut at the student's length, when the student's
    vocabulary was pruned): the fidelity's reference then. (The student's own float weights are
    only latent: it never ran with them.)"""
    teacher = report.get("teacher")
    if not teacher or not Path(teacher).is_dir():
        return None
    try:
        t = load_source(Path(teacher), None, False, need=False)
    except EdgeBertError:
        return None
    if (t.tokenizer is None) != (src.tokenizer is None):
        return None
    if t.tokenizer is None or t.tokenizer.get_vocab() == src.tokenizer.get_vocab():
        return replace(t, evaluation=src.evaluation)
    if not src.evaluation_texts:
        return None
    from edgebert.source import batches

    t.tokenizer.enable_truncation(max_length=src.max_seq_length)
    return replace(t, evaluation=list(batches(t.tokenizer, list(src.evaluation_texts))))


def _library(tmp: Path) -> list[str]:
    from edgebert.runtime.binary import LIBRARY, SOURCES
    from firmware_export import toolchain

    for name in SOURCES:
        (tmp / name).write_text(resources.files("edgebert.runtime").joinpath(f"c/{name}").read_text(encoding="utf-8"),
                                encoding="utf-8")
    toolchain.host_library(tmp, ["eb_binary_api.c"], tmp / LIBRARY)
    return [*SOURCES, LIBRARY]


def _sizes(fp32: Graph, graph: Graph) -> dict:
    """Bytes by tensor group: 1-bit linears (bits, scales and centres) against their float32 bytes."""
    linear_fp32 = sum(fp32.tensors[n.attrs["weight"]].nbytes for n in fp32.linears())
    bits = scales = 0
    for n in graph.linears():
        if n.attrs.get("weight_bits") == 1:
            bits += graph.tensors[n.attrs["weight"]].nbytes
            scales += graph.tensors[n.attrs["weight_scale"]].nbytes + graph.tensors[n.attrs["weight_centre"]].nbytes
    linear_names = {n.attrs[k] for n in graph.linears() for k in ("weight", "weight_scale", "weight_centre")
                    if n.attrs.get(k)}
    emb = graph.nodes[0] if graph.nodes and graph.nodes[0].op == "embedding" else None
    emb_names = {emb.attrs[k] for k in ("word", "position", "word_scale", "position_scale") if emb and emb.attrs.get(k)}
    total = sum(t.nbytes for t in graph.tensors.values())
    return {"linear_weights_fp32": int(linear_fp32), "linear_bits": int(bits), "linear_scales_centres": int(scales),
            "linear_ratio_to_fp32": (bits + scales) / max(linear_fp32, 1),
            "embeddings": int(sum(graph.tensors[k].nbytes for k in emb_names)),
            "other": int(total - sum(graph.tensors[k].nbytes for k in linear_names | emb_names)),
            "graph_total": int(total)}


def _fidelity(src: Source, graph: Graph, tmp: Path, teacher: Source | None) -> dict:
    """The artifact's outputs (through its host library) against the fp32 graph's - the teacher's,
    for a binarization-aware student - on the held-out rows."""
    from edgebert.graph import reference
    from edgebert.measure import compare_outputs, evaluation_outputs
    from edgebert.runtime.binary import BinaryBackend

    backend = BinaryBackend(tmp)
    got = evaluation_outputs(src, lambda f: backend.run(f))
    ref = evaluation_outputs(teacher, lambda f: reference.run(teacher.fp32, f)) if teacher else \
        evaluation_outputs(src, lambda f: reference.run(src.fp32, f))
    oracle = evaluation_outputs(src, lambda f: reference.run(graph, f))
    cos, cos_oracle = compare_outputs(got, ref), compare_outputs(oracle, ref)
    what = "sentence embeddings" if src.tokenizer is not None else "outputs"
    extra = {}
    if teacher is not None and src.tokenizer is None and got.shape[1] > 1:  # a classifier: the decisions too
        extra["argmax_agreement"] = float((got.argmax(1) == ref.argmax(1)).mean())
    return {"metric": f"cosine of {what} to the fp32 " + (f"teacher ({teacher.name})" if teacher else "model"),
            **extra, "mean": float(cos.mean()), "worst": float(cos.min()),
            "reference_mean": float(cos_oracle.mean()), "kernel_vs_reference_max_abs": float(np.abs(got - oracle).max()),
            "texts" if src.tokenizer is not None else "samples": int(len(got)), "held_out": src.held_out}


def convert_binary(model_dir: Path, out_dir: Path, precision: str, calibration: str | Path | list[str], *,
                   steps: int | None = None, minutes: float | None = None, allow_pickle: bool = False,
                   measure: bool = True, name: str | None = None, embedding_bits: int = 8,
                   vocab_size: int | None = None, progress: Progress = silent) -> Artifact:
    if precision not in MODES:
        raise InputError(f"--precision: expected one of {', '.join(MODES)}, found {precision!r}")
    teacher_dir = model_dir
    distilled = steps is not None or minutes is not None
    if vocab_size is not None and is_mlp_dir(Path(model_dir)):
        raise InputError(f"--vocab-size: expected a BERT checkpoint (a word table to prune), found a TinyML net "
                         f"({model_dir})")
    if distilled and is_mlp_dir(Path(model_dir)):
        model_dir = _distilled_mlp(Path(model_dir), calibration, out_dir, precision, steps, minutes, progress)
    elif distilled:
        model_dir = _distilled(model_dir, calibration, out_dir, precision, steps, minutes, vocab_size, progress)
    progress("load", 0, 1)
    src = load_source(model_dir, calibration, allow_pickle, need=True)
    progress("load", 1, 1)
    stats = calibrate(src.fp32, src.calibration)
    progress("binarize", 0, 1)
    report = _distill_report(Path(model_dir))
    trained = _aware_mode(report)
    graph = binarize_graph(src.fp32, stats, precision, embedding_bits=embedding_bits,
                           bias_correction=trained is None)
    if graph.meta.get("architecture") == "mlp":  # what a firmware export needs to quantize the outputs
        from edgebert.converter import output_ranges

        graph.meta["output_ranges"] = output_ranges(graph, src.calibration)
    progress("binarize", 1, 1)
    with atomic_dir(out_dir, "the artifact") as tmp:
        files = ["graph.safetensors"]
        graph.save(tmp / "graph.safetensors")
        if src.tokenizer is not None:
            src.tokenizer.save(str(tmp / "tokenizer.json"), pretty=False)  # compact: ~40% of the pretty file
            files.append("tokenizer.json")
        files += _library(tmp)
        teacher = _teacher(report, src) if trained is not None else None
        metrics = {"fidelity": _fidelity(src, graph, tmp, teacher)} if measure and src.evaluation else {}
        sizes = _sizes(src.fp32, graph)
        act = MODES[precision]
        bi = any(n.op == "attention" and n.attrs.get("binary") for n in graph.nodes)
        manifest = Manifest(
            artifact_id=f"{name or src.name}-{precision}-{src.weights_sha256[:8]}", toolkit_version=__version__,
            source={"directory": str(Path(teacher_dir).resolve()), "name": name or src.name,
                    "weights_sha256": src.weights_sha256, **({"distilled": str(model_dir)} if distilled else {})},
            architecture={"type": src.fp32.meta["architecture"], "config": src.config,
                          "max_seq_length": src.max_seq_length, "pooling": graph.meta.get("pooling"),
                          "parameters": int(sum(t.size for t in src.fp32.tensors.values()))},
            precision=precision,
            quantization={"scheme": "1-bit weights: mean-centred sign, per-output-row scale and centre" +
                          (", uint8 static activations (W1A8)" if act == "static" else ", 1-bit activations (W1A1)"),
                          "groups": {"linear": "1-bit packed weights",
                                     "embeddings": f"int{embedding_bits} per-row word rows, int8 position rows",
                                     "layernorm": "fp32", "gelu": "fp32", "pool_projection": "fp32",
                                     **({"softmax": "none (Bi-Attention)",
                                         "attention_matmul": "Bi-Attention: signs of Q and K, 0/1 weights, "
                                                             "1-bit values"} if bi else
                                        {"softmax": "fp32", "attention_matmul": "fp32"})},
                          "bits": {"linear": 1, "embeddings": embedding_bits, "position": 8,
                                   "activations": 8 if act == "static" else 1},
                          "sizes": sizes, "binarization_aware_training": trained is not None},
            files=file_entries(tmp, files), onnx={}, metrics=metrics, runtime=BINARY_RUNTIME,
            memory={"flash_bytes": sum((tmp / f).stat().st_size for f in files)},
            created=datetime.now(timezone.utc).isoformat(timespec="microseconds"))
        manifest = Manifest.from_json(manifest.to_json())
        (tmp / "manifest.json").write_text(manifest.to_json(), encoding="utf-8")
    if distilled:
        shutil.rmtree(state_dir(out_dir), ignore_errors=True)
    return Artifact(out_dir, manifest)


__all__ = ["binarization_aware", "convert_binary", "state_dir"]
