from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from registry.registry import Registry, open_registry

SELOC = Path(__file__).parent / "data"


def make_td(ident: str, ram: int, flash: int, runtimes=("onnxruntime",), precisions=("int8", "fp32"), **extra) -> dict:
    return {"@context": ["https://www.w3.org/2022/wot/td/v1.1"], "id": f"urn:dev:{ident}", "title": ident,
            "securityDefinitions": {"nosec_sc": {"scheme": "nosec"}}, "security": "nosec_sc",
            "eb:ramBytes": ram, "eb:flashBytes": flash,
            "eb:supportsRuntime": [{"@id": f"eb:{r}"} for r in runtimes],
            "eb:supportsPrecision": [{"@id": f"eb:{p}"} for p in precisions],
            "properties": {"temperature": {"type": "number", "forms": [{"href": f"http://{ident}.local/t"}]}}, **extra}


def write_artifact(root: Path, name: str, family: str = "minilm", ram: int = 1000, flash: int = 1000,
                   fidelity: float = 0.99, size: int = 500, precision: str = "int8", ops=("MatMul", "Add"),
                   created: str = "2026-01-01T00:00:00+00:00", weights_sha: str = "a" * 64) -> Path:
    """A synthetic artifact directory: the registry reads manifests and verifies sha256, not the model."""
    d = root / name
    d.mkdir(parents=True)
    onnx = b"x" * size
    (d / "model.onnx").write_bytes(onnx)
    manifest = {
        "artifact_id": name, "toolkit_version": "0.1.0", "format_version": 1,
        "source": {"directory": "/m", "name": family, "weights_sha256": weights_sha},
        "architecture": {"type": "bert", "config": {}}, "precision": precision, "quantization": {},
        "files": {"model.onnx": {"bytes": size, "sha256": hashlib.sha256(onnx).hexdigest()}},
        "onnx": {"ops": list(ops)}, "metrics": {"fidelity": {"mean": fidelity, "worst": fidelity - 0.01}},
        "runtime": "onnxruntime", "memory": {"flash_bytes": flash, "peak_ram_bytes": ram}, "created": created}
    (d / "manifest.json").write_text(json.dumps(manifest))
    return d


@pytest.fixture()
def reg() -> Registry:
    return open_registry("memory")


@pytest.fixture()
def artifact_factory(tmp_path: Path) -> Callable[..., Path]:
    return lambda name, **kw: write_artifact(tmp_path / "artifacts", name, **kw)
