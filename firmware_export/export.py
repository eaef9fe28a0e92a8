"""``export``: an int8 TinyML artifact -> a firmware artifact (.tflite, TFLM bundle or C99), built,
checked and measured, written atomically; a binarized (W1A8) TinyML artifact -> C99 only
(``lower_binary``, ``c99_binary``: the same firmware API over packed 1-bit weights).

The output directory is itself an artifact (manifest, sha256 of every file) that the registry
records and provisioning delivers: the source artifact's files plus the firmware files and
``firmware.json`` (shapes, quantization, ops, measured figures, the budget verdict). Before
anything is written, the build is checked against the fixed-point reference (``program.run``)
on inputs spread over the input range: TFLM and the C builds must agree bit for bit.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from edgebert.artifact import HOST_ONLY, MANIFEST, Artifact, Manifest, file_entries
from edgebert.errors import ArtifactError, BudgetError, ConversionError, InputError, ToolchainError
from edgebert.files import atomic_dir
from edgebert.graph.form import Graph
from edgebert.progress import Progress, silent
from edgebert.runtime.firmware import FIRMWARE_JSON, LIBRARY, Firmware
from firmware_export import c99, c99_binary, program, program_binary, tflite, tflm, toolchain
from firmware_export.budget import Budget, budget_for
from firmware_export.lower import lower_mlp
from firmware_export.lower_binary import lower_binary_mlp
from firmware_export.program_binary import BinMlp

TARGETS = ("tflite", "tflm", "c")
RUNTIMES = {"tflite": "litert", "tflm": "tflite-micro", "c": "c99"}
CHECK_INPUTS = 256
M4_INPUTS = 64
FORMAT = 1


@dataclass(frozen=True)
class ExportResult:
    artifact: Artifact
    firmware: dict[str, Any]

    @property
    def verdict(self) -> dict[str, Any] | None:
        return self.firmware.get("budget")


def probe_inputs(model: program.IntMlp, n: int, seed: int = 0) -> np.ndarray:
    """``n`` inputs spread over the range the input quantization covers (plus 10% beyond, to reach
    saturation), reproducible from ``seed``."""
    q_lo, q_hi = np.float32(-128 - model.input_zero_point), np.float32(127 - model.input_zero_point)
    lo = q_lo * np.float32(model.input_scale) / model.input_mul
    hi = q_hi * np.float32(model.input_scale) / model.input_mul
    rng = np.random.default_rng(seed)
    return rng.uniform(lo * 1.1, hi * 1.1, (n, model.input_dim)).astype(np.float32)


def _description(model: program.IntMlp | BinMlp, source_id: str, target: str) -> dict[str, Any]:
    arithmetic = ("W1A8: packed 1-bit weights (centre + scale * sign) on int8 activations, int32 accumulators, "
                  "TFLite Micro's double-rounding requantization" if isinstance(model, BinMlp) else
                  "TFLite Micro int8 (per-channel FULLY_CONNECTED, double-rounding requantization)")
    return {
        "format": FORMAT, "target": target, "runtime": RUNTIMES[target],
        "source_artifact": source_id, "task": model.task, "loss": model.loss,
        "shape": {"inputs": model.input_dim, "features": model.feature_dim, "outputs": model.output_dim},
        "quantization": {"input_scale": model.input_scale, "input_zero_point": model.input_zero_point,
                         "input_mul": model.input_mul.tolist(), "feature_zero_point": model.feature_zero_point,
                         "feature_scale": model.feature_scale.tolist(), "output_scale": model.output_scale,
                         "output_zero_point": model.output_zero_point,
                         "arithmetic": arithmetic},
    }


def _tflite_files(tmp: Path, model: program.IntMlp, x: np.ndarray, ref: tuple, target: str, origin: str) -> dict:
    data = tflite.to_tflite(model, f"edgebert firmware export of {origin}")
    (tmp / "model.tflite").write_bytes(data)
    measured = tflm.arena_bytes(data, model.input_dim)
    arena = tflm.recommended_arena(measured)
    f, o = tflm.run(data, x, measured)
    if not (np.array_equal(f, ref[0]) and np.array_equal(o, ref[1])):
        raise ConversionError(f"TFLM: expected the .tflite to agree bit for bit with the fixed-point reference, found "
                              f"{int((o != ref[1]).sum())} differing outputs (an exporter bug)")
    files = ["model.tflite"]
    if target == "tflm":
        for name, text in tflm.bundle_files(data, tflite.ops_of(model), arena, origin).items():
            (tmp / name).write_text(text, encoding="utf-8")
            files.append(name)
    figures = {"model_bytes": len(data), "arena_bytes_measured": measured, "arena_bytes": arena,
               "interpreter_flash_lower_bound": tflm.TFLM_CORE_FLASH,
               "flash_bytes": len(data) + tflm.TFLM_CORE_FLASH, "ram_bytes": arena, "measured": "tflite-micro (x86-64)"}
    return {"files": files, "ops": tflite.ops_of(model), "figures": figures,
            "agreement": {"inputs": len(x), "tflm_vs_reference": "bit-exact"}}


def _c_files(tmp: Path, model: program.IntMlp | BinMlp, x: np.ndarray, ref: tuple, origin: str, lr: float,
             measure: bool, progress: Progress) -> dict:
    from firmware_export import m4

    sources = c99_binary.sources(model, origin) if isinstance(model, BinMlp) else c99.sources(model, origin)
    for name, text in sources.items():
        (tmp / name).write_text(text, encoding="utf-8")
    toolchain.host_library(tmp, ["edgebert_model.c", "eb_api.c"], tmp / LIBRARY)
    (tmp / FIRMWARE_JSON).write_text(json.dumps(_description(model, origin, "c")), encoding="utf-8")
    f, o = Firmware(tmp).infer(x)
    if not (np.array_equal(f, ref[0]) and np.array_equal(o, ref[1])):
        raise ConversionError("C host build: expected bit-exact agreement with the fixed-point reference, found "
                              f"{int((o != ref[1]).sum())} differing outputs (an exporter bug)")
    files = [*sources, LIBRARY]
    agreement = {"inputs": len(x), "c_host_vs_reference": "bit-exact"}
    figures: dict[str, Any] = {"measured": None}
    if measure:
        progress("measure on Cortex-M4 (QEMU)", 0, 1)
        xs = x[:M4_INPUTS]
        run = m4.measure(sources, xs, np.arange(len(xs)) % model.output_dim, lr=lr)
        if not (np.array_equal(run.features, ref[0][:len(xs)]) and np.array_equal(run.outputs, ref[1][:len(xs)])):
            raise ConversionError("Cortex-M4 build: expected bit-exact agreement with the host build, found differences")
        agreement["m4_vs_host"] = f"bit-exact on {len(xs)} inputs"
        fig = run.figures
        figures = {**fig.to_dict(), "flash_bytes": fig.learn_flash_bytes, "ram_bytes": fig.learn_ram_bytes,
                   "measured": "cortex-m4 (arm-none-eabi-gcc -O2, QEMU mps2-an386 -icount shift=0)"}
        progress("measure on Cortex-M4 (QEMU)", 1, 1)
    ops = ["linear_w1a8", "relu"] if isinstance(model, BinMlp) else ["linear", "relu"]
    return {"files": files, "ops": ops, "figures": figures, "agreement": agreement}


def export(artifact_dir: str | Path, target: str, out_dir: str | Path, *, device: str | None = None,
           ram: int | None = None, flash: int | None = None, force: bool = False, lr: float = 0.01,
           measure: bool = True, max_length: int = 32, embedding_bits: int | None = None,
           progress: Progress = silent) -> ExportResult:
    """Export an int8 TinyML artifact (or, to C, an int8 text encoder: ``text.py``) for a
    microcontroller target (see the module docstring)."""
    if target not in TARGETS:
        raise InputError(f"--target: expected one of {', '.join(TARGETS)}, found {target!r}")
    out_dir = Path(out_dir)
    if out_dir.exists() and not force:
        raise InputError(f"{out_dir}: expected a new output directory, found an existing one (use --force to replace it)")
    budget = budget_for(device, ram, flash)
    if budget is not None and target == "c" and not measure:
        raise InputError("--no-measure: expected measured figures to check a --device/--ram/--flash budget, found none")
    if target == "c" and measure and not toolchain.have_m4_tools():
        raise ToolchainError(f"--target c: expected arm-none-eabi-gcc and qemu-system-arm to measure the Cortex-M4 "
                             f"build, found them missing ({toolchain.INSTALL_HINT}; or --no-measure)")
    source = Artifact.load(artifact_dir, verify=True)
    if source.manifest.firmware:
        raise ArtifactError(f"{source.path}: expected a converted artifact, found a firmware export "
                            f"({source.manifest.runtime}); export from the artifact it came from")
    graph_path = source.path / HOST_ONLY
    if not graph_path.is_file():
        raise ArtifactError(f"{source.path}: expected {HOST_ONLY} (the graph form the exporters read), found none")
    graph = Graph.load(graph_path)
    binary = any(n.attrs.get("weight_bits") == 1 for n in graph.linears())
    if graph.meta.get("architecture") == "bert" and binary:
        raise InputError(f"{source.path}: expected an int8 text encoder, found a binarized one (1-bit text encoders "
                         "have no firmware form yet; binarized TinyML nets export with --target c)")
    if graph.meta.get("architecture") == "bert":
        from firmware_export.text import export_text  # it builds on this module's manifest

        return export_text(source, graph, target, out_dir, budget=budget, measure=measure, max_length=max_length,
                           embedding_bits=embedding_bits, progress=progress)
    if binary and target != "c":
        raise InputError(f"--target {target}: expected --target c for a binarized net (TFLite has no 1-bit "
                         "FULLY_CONNECTED op; the C export runs the packed bits), found a binarized artifact")
    progress("lower", 0, 1)
    model = lower_binary_mlp(graph) if binary else lower_mlp(graph)
    progress("lower", 1, 1)
    x = probe_inputs(model, CHECK_INPUTS)  # type: ignore[arg-type]  # the same input fields
    ref = program_binary.run(model, x) if isinstance(model, BinMlp) else program.run(model, x)
    origin = source.manifest.artifact_id
    with atomic_dir(out_dir, "the firmware artifact") as tmp:
        copy_source(source, tmp)
        progress("build", 0, 1)
        built = (_c_files(tmp, model, x, ref, origin, lr, measure, progress) if target == "c"
                 else _tflite_files(tmp, model, x, ref, target, origin))
        progress("build", 1, 1)
        description = {**_description(model, origin, target), "ops": built["ops"],
                       "files": built["files"], "figures": built["figures"], "agreement": built["agreement"]}
        manifest = finish(tmp, source, target, description, budget, f"{origin} --target {target}")
    return ExportResult(Artifact(out_dir, manifest), description)


def copy_source(source: Artifact, tmp: Path) -> None:
    """The source artifact's files into the firmware artifact being built."""
    for name in source.manifest.files:
        if (source.path / name).is_file():
            shutil.copy2(source.path / name, tmp / name)


def finish(tmp: Path, source: Artifact, target: str, description: dict[str, Any], budget: Budget | None,
           label: str) -> Manifest:
    """The budget verdict (BudgetError when the measured figures miss it), firmware.json and the
    manifest of a firmware artifact whose files (``description["files"]``) are in ``tmp``."""
    if budget is not None:
        fig = description["figures"]
        verdict = budget.verdict(int(fig["ram_bytes"]), int(fig["flash_bytes"]))
        if not verdict["fits"]:
            raise BudgetError(f"{label}: {verdict['message']}")
        description["budget"] = verdict
    (tmp / FIRMWARE_JSON).write_text(json.dumps(description, indent=2) + "\n", encoding="utf-8")
    manifest = _manifest(tmp, source.manifest, target, description,
                         [*source.manifest.files, *description["files"], FIRMWARE_JSON])
    (tmp / MANIFEST).write_text(manifest.to_json(), encoding="utf-8")
    return manifest


def _manifest(tmp: Path, src: Manifest, target: str, description: dict, names: list[str]) -> Manifest:
    fig = description["figures"]
    # measured on a build of the target: the C export's Cortex-M4 image; TFLM's flash is a lower bound
    measured = str(fig.get("measured") or "").startswith("cortex-m4")
    memory = dict(src.memory)
    if "flash_bytes" in fig:
        how = (fig["measured"] if measured else
               f"arena measured in {fig['measured']}; flash = .tflite + {fig['interpreter_flash_lower_bound']:,} B "
               "TFLM core runtime (a lower bound)")
        memory.update({"flash_bytes": int(fig["flash_bytes"]), "peak_ram_bytes": int(fig["ram_bytes"]),
                       "measured": measured, "how": how})
        memory.pop("method", None)
    else:
        memory.update({"measured": False, "how": "not measured (--no-measure): the source artifact's estimate"})
    if "max_len" in description.get("shape", {}):  # a text encoder's figures are for its sequence length
        memory["seq"] = int(description["shape"]["max_len"])
    firmware = {k: description[k] for k in ("target", "runtime", "ops", "figures", "agreement")}
    manifest = replace(src, artifact_id=f"{src.artifact_id}-{target}", runtime=RUNTIMES[target],
                       files=file_entries(tmp, list(dict.fromkeys(names))), memory=memory, firmware=firmware,
                       created=datetime.now(timezone.utc).isoformat(timespec="microseconds"))
    return Manifest.from_json(manifest.to_json())


__all__ = ["RUNTIMES", "TARGETS", "ExportResult", "export", "probe_inputs"]
