"""Artifact directories and their manifest (torch-free: the device runtime imports this).

An artifact directory holds ``model.onnx``, ``tokenizer.json``, ``graph.safetensors`` (the
quantized graph form that the .tflite/C exporters read) and ``manifest.json``, which records
every other file's size and sha256 so that a device can refuse a tampered or truncated copy.
A device receives only ``Manifest.device_files()``: ``graph.safetensors`` stays on the host for
BERT artifacts (TinyML nets keep it: full-net training on the device starts from it).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgebert.errors import ArtifactError

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
PRECISIONS = ("fp32", "int8", "binary", "binary-full")
HOST_ONLY = "graph.safetensors"
FIRMWARE_RUNTIMES = ("tflite-micro", "c99")
BINARY_RUNTIME = "edgebert-binary"  # graph.safetensors with packed 1-bit linears + the host library; no model.onnx


def sha256_path(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class FileEntry:
    bytes: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    """What an artifact is, how it was made, and what was measured when it was made."""

    artifact_id: str
    toolkit_version: str
    source: dict[str, Any]
    architecture: dict[str, Any]
    precision: str
    quantization: dict[str, Any]
    files: dict[str, FileEntry]
    onnx: dict[str, Any]
    metrics: dict[str, Any] = field(default_factory=dict)
    runtime: str = "onnxruntime"
    memory: dict[str, Any] = field(default_factory=dict)
    created: str = ""
    format_version: int = FORMAT_VERSION
    firmware: dict[str, Any] = field(default_factory=dict)  # a firmware export's target, ops and measured figures

    def __post_init__(self) -> None:
        if self.format_version != FORMAT_VERSION:
            raise ArtifactError(f"manifest: expected format_version {FORMAT_VERSION}, found {self.format_version!r}")
        if self.precision not in PRECISIONS:
            raise ArtifactError(f"manifest: expected precision one of {PRECISIONS}, found {self.precision!r}")
        # a binarized artifact (and its firmware export) holds no ONNX model: its linears are packed bits
        needed = HOST_ONLY if self.runtime == BINARY_RUNTIME or self.precision.startswith("binary") else "model.onnx"
        if needed not in self.files:
            raise ArtifactError(f"manifest: expected a files entry for {needed}, found none")

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=False) + "\n"

    def device_files(self) -> list[str]:
        """The files a device needs (and provisioning sends); the others are optional on a device.
        A firmware export's device runs the firmware, not model.onnx."""
        host_only = set() if self.architecture.get("type") == "mlp" or self.runtime == BINARY_RUNTIME else {HOST_ONLY}
        if self.runtime in FIRMWARE_RUNTIMES:
            host_only.add("model.onnx")
        return [n for n in self.files if n not in host_only]

    @classmethod
    def from_json(cls, text: str, source: str = MANIFEST) -> Manifest:
        try:
            raw = json.loads(text)
            files = {k: FileEntry(int(v["bytes"]), str(v["sha256"])) for k, v in raw.pop("files").items()}
            return cls(files=files, **raw)
        except ArtifactError:
            raise
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
            raise ArtifactError(f"{source}: expected an artifact manifest, found an invalid one ({exc!r})") from None


@dataclass(frozen=True)
class Artifact:
    path: Path
    manifest: Manifest

    @property
    def onnx_path(self) -> Path:
        return self.path / "model.onnx"

    def file(self, name: str) -> Path:
        return self.path / name

    def verify(self) -> None:
        """Check every file against the manifest's size and sha256; raise ArtifactError if not.
        The device's files must be present; a host-only file is checked when it is there."""
        required = set(self.manifest.device_files())
        for name, entry in self.manifest.files.items():
            path = self.path / name
            if not path.is_file() and name not in required:
                continue
            if not path.is_file():
                raise ArtifactError(f"{path}: expected a file listed in the manifest, found none")
            size = path.stat().st_size
            if size != entry.bytes:
                raise ArtifactError(f"{path}: expected {entry.bytes} bytes, found {size} (truncated or altered)")
            digest = sha256_path(path)
            if digest != entry.sha256:
                raise ArtifactError(f"{path}: expected sha256 {entry.sha256[:16]}…, found {digest[:16]}… (tampered)")

    @classmethod
    def load(cls, path: str | Path, verify: bool = True) -> Artifact:
        path = Path(path)
        manifest_path = path / MANIFEST
        if not manifest_path.is_file():
            raise ArtifactError(f"{path}: expected an artifact directory with {MANIFEST}, found none")
        try:
            text = manifest_path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise ArtifactError(f"{manifest_path}: expected UTF-8 JSON, found undecodable bytes") from None
        artifact = cls(path, Manifest.from_json(text, str(manifest_path)))
        if verify:
            artifact.verify()
        return artifact


def file_entries(directory: Path, names: list[str]) -> dict[str, FileEntry]:
    return {n: FileEntry((directory / n).stat().st_size, sha256_path(directory / n)) for n in names}
