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
import shutil
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from edgebert.artifact import MANIFEST, Artifact
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
OPS = ["embedding", "layernorm", "linear", "attention", "softmax", "gelu", "add", "pool"]
ARITHMETIC = ("integer-only: int8 weights and activations, int32 residual stream, integer LayerNorm (isqrt), "
              "softmax from Q15 exp tables to int8 (1/256, -128), GELU table, TFLite Micro requantization")


def probe_sentences(model: encoder.IntEncoder, n: int = PROBES, seed: int = 0) -> list[np.ndarray]:
    """``n`` random id sequences whose lengths spread over 1..max_len (the first is full length)."""
    rng = np.random.default_rng(seed)
    lengths = [model.max_len] + list(np.linspace(1, model.max_len, n - 1).round().astype(int))
    return [rng.integers(0, model.vocab, int(k)) for k in lengths]


def _fidelity(graph: Graph, fw: TextFirmware, tokenizer_path: Path, max_len: int) -> dict[str, float]:
    """Cosine of the firmware's sentence embeddings to the artifact's (graph reference) on the
    bundled English sentences, both on the same ``max_len``-token inputs."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_path))
    tok.no_padding()
    tok.enable_truncation(max_length=max_len)
    text = resources.files("edgebert").joinpath("data", "abstracts.txt").read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if line.strip()][:FIDELITY_LINES]
    cos = []
    for line in lines:
        ids = np.array(tok.encode(line).ids, np.int64)
        feeds = {"input_ids": ids[None], "attention_mask": np.ones((1, len(ids)), np.int64)}
        out = reference.run(graph, feeds)
        ref = out["sentence_embedding"][0] if "sentence_embedding" in out else out["last_hidden_state"][0].mean(0)
        got = fw.embed_ids([ids])[0]
        cos.append(float(ref @ got / max(np.linalg.norm(ref) * np.linalg.norm(got), 1e-12)))
    return {"sentences": len(cos), "mean": float(np.mean(cos)), "min": float(np.min(cos))}


def _description(model: encoder.IntEncoder, origin: str) -> dict[str, Any]:
    return {
        "format": 1, "target": "c", "runtime": "c99", "source_artifact": origin, "task": "embedding",
        "shape": {"vocab": model.vocab, "hidden": model.hidden, "max_len": model.max_len, "out": model.out_dim,
                  "layers": len(model.blocks), "heads": model.heads, "intermediate": model.intermediate},
        "quantization": {"out_scale": model.out_scale.tolist(), "pool": model.pool, "normalize": model.normalize,
                         "word_bits": model.word_bits, "arithmetic": ARITHMETIC},
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
        agreement["cosine_to_artifact"] = _fidelity(graph, fw, source.path / "tokenizer.json", model.max_len)
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
    from firmware_export.export import ExportResult, _manifest

    if target != "c":
        raise ArtifactError(f"--target {target}: expected --target c for a transformer encoder, found {target} "
                            "(the TFLite Micro path of transformer ops is not built yet)")
    choices = [embedding_bits] if embedding_bits else [8, 4]
    origin = source.manifest.artifact_id
    for k, bits in enumerate(choices):
        progress("lower", 0, 1)
        model = lower_encoder(graph, max_length, bits)
        c99_text.check(model)
        progress("lower", 1, 1)
        try:
            with atomic_dir(out_dir, "the firmware artifact") as tmp:
                for name in source.manifest.files:
                    if (source.path / name).is_file():
                        shutil.copy2(source.path / name, tmp / name)
                built = _build(tmp, graph, model, source, measure, progress)
                description = {**_description(model, origin), "ops": built["ops"], "files": built["files"],
                               "figures": built["figures"], "agreement": built["agreement"]}
                if budget is not None:
                    verdict = budget.verdict(int(built["figures"]["ram_bytes"]), int(built["figures"]["flash_bytes"]))
                    if not verdict["fits"]:
                        raise BudgetError(f"{origin} --target c ({bits}-bit word rows): {verdict['message']}")
                    description["budget"] = verdict
                (tmp / FIRMWARE_JSON).write_text(json.dumps(description, indent=2) + "\n", encoding="utf-8")
                manifest = _manifest(tmp, source.manifest, target, description,
                                     [*source.manifest.files, *built["files"], FIRMWARE_JSON])
                (tmp / MANIFEST).write_text(manifest.to_json(), encoding="utf-8")
        except BudgetError:
            if k + 1 < len(choices):
                continue
            raise
        return ExportResult(Artifact(out_dir, manifest), description)
    raise AssertionError("unreachable")  # pragma: no cover


__all__ = ["export_text", "probe_sentences", "weight_bytes"]
