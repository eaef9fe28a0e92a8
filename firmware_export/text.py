"""``export_text``: an int8 text-encoder artifact -> standalone C99 firmware, built, checked and
measured, written atomically (the transformer half of ``export.py``).

The graph is lowered to the integer program of ``encoder.py`` (``lower_encoder.py``), written as
C (``c99_text.py``), compiled for the host (checked bit for bit against the fixed-point reference
on probe sentences of every length up to ``max_length``) and for a Cortex-M4 (run under QEMU on
some of them, again bit for bit; flash, RAM and instructions measured). Word rows are int8, or
4-bit when asked (``embedding_bits=4``) or when int8 rows miss the flash budget. The firmware's
fidelity to the artifact it came from (cosine of sentence embeddings on the bundled English
sentences) goes into firmware.json.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from edgebert.artifact import Artifact
from edgebert.errors import ArtifactError, BudgetError, ConversionError
from edgebert.files import atomic_dir
from edgebert.graph import reference
from edgebert.graph.form import Graph
from edgebert.progress import Progress
from edgebert.runtime.firmware import FIRMWARE_JSON, LIBRARY
from edgebert.runtime.text_firmware import TextFirmware
from firmware_export import c99_text, encoder, toolchain
from firmware_export.budget import Budget
from firmware_export.lower_encoder import lower_encoder

PROBES = 24
M4_PROBES = 4
FIDELITY_LINES = 64
CALIBRATION_LINES = 128  # bundled sentences after the fidelity ones: the .tflite's calibration
OPS = ["embedding", "layernorm", "linear", "attention", "softmax", "gelu", "add", "pool"]
ARITHMETIC = ("integer-only: int8 weights and activations, int32 residual stream, integer LayerNorm (isqrt), "
              "softmax from Q15 exp tables to int8 (1/256, -128), GELU table, TFLite Micro requantization")


def probe_sentences(model: encoder.IntEncoder, n: int = PROBES, seed: int = 0) -> list[np.ndarray]:
    """``n`` random id sequences whose lengths spread over 1..max_len (the first is full length);
    with int8 rows for special tokens, each begins and ends with them, as tokenized text does."""
    rng = np.random.default_rng(seed)
    lengths = [model.max_len] + list(np.linspace(1, model.max_len, n - 1).round().astype(int))
    out = [rng.integers(0, model.vocab, int(k)) for k in lengths]
    for ids in out if len(model.wide_ids) else []:
        ids[0], ids[-1] = model.wide_ids[0], model.wide_ids[-1]
    return out


def special_ids(tokenizer_path: Path) -> tuple[int, ...]:
    """The ids the tokenizer adds to every input ([CLS], [SEP]: what it makes of an empty string);
    with 4-bit word rows their rows stay int8 (every sentence's first and last token)."""
    from tokenizers import Tokenizer

    if not tokenizer_path.is_file():
        return ()
    return tuple(sorted(set(Tokenizer.from_file(str(tokenizer_path)).encode("").ids)))


def bundled_sentences(tokenizer_path: Path, max_len: int, start: int, count: int) -> list[np.ndarray]:
    """Token ids of bundled English sentences ``start .. start + count``, cut to ``max_len`` as the
    tokenizer's truncation cuts (the last id, [SEP], kept)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_path))
    tok.no_padding()
    tok.enable_truncation(max_length=max_len)
    text = resources.files("edgebert").joinpath("data", "abstracts.txt").read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if line.strip()][start:start + count]
    return [np.array(tok.encode(line).ids, np.int64) for line in lines]


def _fidelity(graph: Graph, embed: Callable[[list[np.ndarray]], np.ndarray],
              sentences: list[np.ndarray]) -> dict[str, float]:
    """Cosine of the firmware's sentence embeddings to the artifact's (graph reference) on the same
    token ids."""
    got = embed(sentences)
    cos = []
    for ids, e in zip(sentences, got, strict=True):
        feeds = {"input_ids": ids[None], "attention_mask": np.ones((1, len(ids)), np.int64)}
        out = reference.run(graph, feeds)
        ref = out["sentence_embedding"][0] if "sentence_embedding" in out else out["last_hidden_state"][0].mean(0)
        cos.append(float(ref @ e / max(np.linalg.norm(ref) * np.linalg.norm(e), 1e-12)))
    return {"sentences": len(cos), "mean": float(np.mean(cos)), "min": float(np.min(cos))}


def _description(model: encoder.IntEncoder, origin: str) -> dict[str, Any]:
    return {
        "format": 1, "target": "c", "runtime": "c99", "source_artifact": origin, "task": "embedding",
        "shape": {"vocab": model.vocab, "hidden": model.hidden, "max_len": model.max_len, "out": model.out_dim,
                  "layers": len(model.blocks), "heads": model.heads, "intermediate": model.intermediate},
        "quantization": {"out_scale": model.out_scale.tolist(), "pool": model.pool, "normalize": model.normalize,
                         "word_bits": model.word_bits, "int8_rows": model.wide_ids.tolist(), "arithmetic": ARITHMETIC},
    }


def _build(tmp: Path, graph: Graph, model: encoder.IntEncoder, source: Artifact, measure: bool,
           progress: Progress) -> dict[str, Any]:
    origin = source.manifest.artifact_id
    sources = c99_text.sources(model, origin)
    for name, text in sources.items():
        (tmp / name).write_text(text, encoding="utf-8")
    progress("build", 0, 1)
    toolchain.host_library(tmp, ["edgebert_model.c", "eb_text_api.c"], tmp / LIBRARY)
    (tmp / FIRMWARE_JSON).write_text(json.dumps(_description(model, origin)), encoding="utf-8")
    fw = TextFirmware(tmp)
    probes = probe_sentences(model)
    ref = [encoder.run(model, s) for s in probes]
    differ = sum(not np.array_equal(fw.encode(s), r) for s, r in zip(probes, ref, strict=True))
    if differ:
        raise ConversionError(f"C host build: expected bit-exact agreement with the fixed-point reference, found "
                              f"{differ} of {len(probes)} sentences differing (an exporter bug)")
    progress("build", 1, 1)
    agreement: dict[str, Any] = {"sentences": len(probes), "c_host_vs_reference": "bit-exact"}
    if "tokenizer.json" in source.manifest.files:
        check = bundled_sentences(source.path / "tokenizer.json", model.max_len, 0, FIDELITY_LINES)
        agreement["cosine_to_artifact"] = _fidelity(graph, fw.embed_ids, check)
    figures: dict[str, Any] = {"measured": None, "weight_bytes": weight_bytes(model)}
    if measure:
        from firmware_export import m4

        progress("measure on Cortex-M4 (QEMU)", 0, 1)
        run = m4.measure_text(sources, probes[:M4_PROBES])
        if any(run.codes) or not all(np.array_equal(o, r) for o, r in zip(run.outputs, ref, strict=False)):
            raise ConversionError("Cortex-M4 build: expected bit-exact agreement with the host build, found differences")
        agreement["m4_vs_host"] = f"bit-exact on {M4_PROBES} sentences"
        fig = run.figures
        figures.update({**fig.to_dict(), "measured": "cortex-m4 (arm-none-eabi-gcc -O2, QEMU mps2-an386 -icount shift=0)"})
        progress("measure on Cortex-M4 (QEMU)", 1, 1)
    files = [*sources, LIBRARY]
    return {"files": files, "ops": OPS, "figures": figures, "agreement": agreement}


def weight_bytes(model: encoder.IntEncoder) -> int:
    """Bytes of the constants: word and position rows with multipliers, weights, biases, tables."""
    total = model.word.nbytes + 2 * model.vocab + model.position.nbytes + 2 * model.max_len + 8 * model.hidden
    total += model.wide.nbytes + 6 * len(model.wide_ids)
    for b in model.blocks:
        for lay in (b.q, b.k, b.v, b.out, b.ffn1, b.ffn2):
            total += lay.weight.size + 9 * lay.shape[0]
        total += 8 * model.hidden + 16 * model.hidden + 256
    if model.projection is not None:
        total += model.projection.weight.size + 4 * model.out_dim
    return int(total + 4 * model.out_dim)


def export_text(source: Artifact, graph: Graph, target: str, out_dir: Path, *, budget: Budget | None, measure: bool,
                max_length: int, embedding_bits: int | None, progress: Progress) -> Any:  # noqa: ANN401 - ExportResult
    """Export a text encoder to C99 (see the module docstring); tries int8 word rows first, then
    4-bit ones when ``embedding_bits`` is None and int8 rows miss the flash budget."""
    from firmware_export.export import ExportResult, copy_source, finish

    if target != "c":
        return _export_tflite(source, graph, target, out_dir, budget=budget, max_length=max_length,
                              embedding_bits=embedding_bits, progress=progress)
    choices = [embedding_bits] if embedding_bits else [8, 4]
    origin = source.manifest.artifact_id
    for k, bits in enumerate(choices):
        progress("lower", 0, 1)
        model = lower_encoder(graph, max_length, bits, special_ids(source.path / "tokenizer.json"))
        c99_text.check(model)
        progress("lower", 1, 1)
        try:
            with atomic_dir(out_dir, "the firmware artifact") as tmp:
                copy_source(source, tmp)
                built = _build(tmp, graph, model, source, measure, progress)
                description = {**_description(model, origin), "ops": built["ops"], "files": built["files"],
                               "figures": built["figures"], "agreement": built["agreement"]}
                manifest = finish(tmp, source, target, description, budget,
                                  f"{origin} --target c ({bits}-bit word rows)")
        except BudgetError:
            if k + 1 < len(choices):
                continue
            raise
        return ExportResult(Artifact(out_dir, manifest), description)
    raise AssertionError("unreachable")  # pragma: no cover


def _export_tflite(source: Artifact, graph: Graph, target: str, out_dir: Path, *, budget: Budget | None,
                   max_length: int, embedding_bits: int | None, progress: Progress) -> Any:  # noqa: ANN401
    """The .tflite (and TFLM bundle) of a text encoder: calibrated in LiteRT on bundled sentences,
    run in TFLM and LiteRT on others, its fidelity to the artifact and its arena measured."""
    from edgebert.runtime.text_firmware import text_feeds
    from firmware_export import tflm
    from firmware_export.export import RUNTIMES, ExportResult, copy_source, finish
    from firmware_export.tflite_text import to_tflite_text

    if embedding_bits == 4:
        raise ArtifactError(f"--embedding-bits 4: expected 8 for --target {target} (TFLite's GATHER copies int8 "
                            "codes), found 4 (use --target c for 4-bit word rows)")
    if "tokenizer.json" not in source.manifest.files:
        raise ArtifactError(f"{source.path}: expected tokenizer.json (the .tflite is calibrated on tokenized "
                            "sentences), found none")
    tok = source.path / "tokenizer.json"
    origin = source.manifest.artifact_id
    progress("calibrate in LiteRT", 0, 1)
    m = to_tflite_text(graph, max_length, bundled_sentences(tok, max_length, FIDELITY_LINES, CALIBRATION_LINES))
    progress("calibrate in LiteRT", 1, 1)
    check = bundled_sentences(tok, max_length, 0, FIDELITY_LINES)
    first = text_feeds(check[:1], max_length, m.pool)[0]
    progress("measure the TFLM arena", 0, 1)
    measured = tflm.arena_bytes(m.data, inputs=[first["input_ids"], first["attention_bias"], first["pool_weights"]])
    arena = tflm.recommended_arena(measured)
    progress("measure the TFLM arena", 1, 1)
    emb_tflm = _fidelity(graph, lambda ids: _tflite_embed(m, ids, "tflite-micro", arena), check)
    emb_litert = _fidelity(graph, lambda ids: _tflite_embed(m, ids, "litert", arena), check)
    word = graph.tensors[graph.nodes[0].attrs["word"]]
    cfg = graph.meta.get("config", {})
    shape = {"vocab": int(word.shape[0]), "hidden": int(word.shape[1]), "max_len": max_length, "out": m.out_dim,
             "layers": int(cfg.get("num_hidden_layers", 0)), "heads": int(cfg.get("num_attention_heads", 0)),
             "intermediate": int(cfg.get("intermediate_size", 0))}
    description: dict[str, Any] = {
        "format": 1, "target": target, "runtime": RUNTIMES[target], "source_artifact": origin, "task": "embedding",
        "shape": shape,
        "quantization": {"out_scale": m.out_scale, "out_zero_point": m.out_zero_point, "pool": m.pool,
                         "normalize": m.normalize, "word_bits": 8,
                         "arithmetic": "TFLite int8 (per-channel FULLY_CONNECTED, int8 BATCH_MATMUL, SOFTMAX 1/256), "
                                       "LayerNorm in int16, GELU as a GATHER table"},
        "ops": m.ops,
        "figures": {"model_bytes": len(m.data), "arena_bytes_measured": measured, "arena_bytes": arena,
                    "interpreter_flash_lower_bound": tflm.TFLM_CORE_FLASH,
                    "flash_bytes": len(m.data) + tflm.TFLM_CORE_FLASH, "ram_bytes": arena,
                    "measured": "tflite-micro (x86-64)", "tokens": max_length},
        "agreement": {"sentences": len(check), "cosine_to_artifact": emb_tflm, "litert_cosine_to_artifact": emb_litert},
    }
    with atomic_dir(out_dir, "the firmware artifact") as tmp:
        copy_source(source, tmp)
        (tmp / "model.tflite").write_bytes(m.data)
        files = ["model.tflite"]
        if target == "tflm":
            for name, text in tflm.bundle_files(m.data, m.ops, arena, origin).items():
                (tmp / name).write_text(text, encoding="utf-8")
                files.append(name)
        description["files"] = files
        manifest = finish(tmp, source, target, description, budget, f"{origin} --target {target}")
    return ExportResult(Artifact(out_dir, manifest), description)


def _tflite_embed(m: Any, sentences: list[np.ndarray], runtime: str, arena: int) -> np.ndarray:  # noqa: ANN401
    from edgebert.runtime.text_firmware import TfliteTextRunner

    runner = TfliteTextRunner(m.data, runtime, arena, m.max_len, m.out_scale, m.out_zero_point, m.normalize,
                              pool=m.pool)
    return runner.embed_ids(sentences)


__all__ = ["export_text", "probe_sentences", "weight_bytes"]
