"""Inference backends by name, imported lazily: ONNX Runtime, or LiteRT for .tflite files.

LiteRT is Google's renamed TensorFlow Lite runtime (``ai-edge-litert``); the old
``tflite-runtime`` (last release 2023, fails with numpy 2) and ``tensorflow.lite`` are fallbacks.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edgebert.errors import ArtifactError, InputError


class Backend(Protocol):
    input_names: list[str]
    output_names: list[str]

    def run(self, feeds: dict[str, np.ndarray], outputs: list[str] | None = None) -> dict[str, np.ndarray]: ...


def ort_session(model: str | Path | bytes, threads: int = 1):  # noqa: ANN201 - onnxruntime.InferenceSession
    """The project's one way to open an ONNX Runtime session: CPU, ``threads`` intra-op threads, quiet."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


class OnnxBackend:
    """ONNX Runtime CPU; ``InferenceSession.run`` is safe to call from several threads."""

    def __init__(self, path: Path, threads: int = 1) -> None:
        try:
            self._session = ort_session(path, threads)
        except Exception as exc:  # ORT raises its own exception types
            raise ArtifactError(f"{path}: expected an ONNX model ONNX Runtime can load, found: {exc}") from None
        self.input_names = [i.name for i in self._session.get_inputs()]
        self.output_names = [o.name for o in self._session.get_outputs()]

    def run(self, feeds: dict[str, np.ndarray], outputs: list[str] | None = None) -> dict[str, np.ndarray]:
        names = outputs or self.output_names
        return dict(zip(names, self._session.run(names, feeds), strict=True))


def litert_interpreter_class() -> Any:
    """LiteRT's Interpreter, else tflite_runtime's, else TensorFlow's."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter  # type: ignore[no-redef]
        except ImportError:
            try:
                from tensorflow.lite import Interpreter  # type: ignore[no-redef]
            except ImportError:
                raise ArtifactError("a .tflite artifact needs LiteRT: expected ai-edge-litert, tflite-runtime or "
                                    "tensorflow installed, found none (pip install ai-edge-litert)") from None
    return Interpreter


class LiteRTBackend:
    """A .tflite model in the LiteRT interpreter; calls are serialised (the interpreter is not thread-safe)."""

    def __init__(self, path: Path, threads: int = 1) -> None:
        interpreter_cls = litert_interpreter_class()
        try:
            self._interp = interpreter_cls(model_path=str(path), num_threads=threads)
        except (ValueError, RuntimeError) as exc:
            raise ArtifactError(f"{path}: expected a .tflite model LiteRT can load, found: {exc}") from None
        self._lock = threading.Lock()
        self._inputs = {d["name"]: d for d in self._interp.get_input_details()}
        self._outputs = {d["name"]: d for d in self._interp.get_output_details()}
        self.input_names, self.output_names = list(self._inputs), list(self._outputs)

    def run(self, feeds: dict[str, np.ndarray], outputs: list[str] | None = None) -> dict[str, np.ndarray]:
        with self._lock:
            for name, value in feeds.items():
                detail = self._inputs[name]
                if tuple(detail["shape"]) != value.shape:
                    self._interp.resize_tensor_input(detail["index"], value.shape)
            self._interp.allocate_tensors()
            for name, value in feeds.items():
                self._interp.set_tensor(self._inputs[name]["index"], value.astype(self._inputs[name]["dtype"]))
            self._interp.invoke()
            return {n: self._interp.get_tensor(self._outputs[n]["index"]).copy() for n in outputs or self.output_names}


class FirmwareBackend:
    """A firmware export run on the host: the C build (``c99``, through ctypes), or its .tflite in the
    TFLite Micro interpreter (``tflite-micro``) or in LiteRT (``litert``); int8 outputs are read
    back as real values with firmware.json."""

    input_names = ["x"]
    output_names = ["features", "output"]

    def __init__(self, directory: Path, runtime: str) -> None:
        from edgebert.runtime.firmware import Firmware, FirmwareInfo

        self.info = FirmwareInfo.load(directory)
        self.firmware = Firmware(directory) if runtime == "c99" else None
        self._litert = LiteRTBackend(directory / "model.tflite") if runtime == "litert" else None
        self._tflm = None if runtime != "tflite-micro" else _tflm_interpreter(
            directory / "model.tflite", int(self.info.raw["figures"]["arena_bytes"]))
        self._lock = threading.Lock()

    def run(self, feeds: dict[str, np.ndarray], outputs: list[str] | None = None) -> dict[str, np.ndarray]:
        x = np.asarray(feeds["x"], np.float32)
        if self.firmware is not None:
            fq, oq = self.firmware.infer(x)
        elif self._litert is not None:
            rows = [self._litert.run({"x": row[None]}) for row in x.reshape(-1, self.info.input_dim)]
            fq, oq = np.array([r["features"][0] for r in rows]), np.array([r["output"][0] for r in rows])
        else:
            with self._lock:
                rows = []
                for row in x.reshape(-1, self.info.input_dim):
                    self._tflm.set_input(row[None], 0)
                    self._tflm.invoke()
                    rows.append((np.array(self._tflm.get_output(0))[0], np.array(self._tflm.get_output(1))[0]))
            fq, oq = np.array([r[0] for r in rows]), np.array([r[1] for r in rows])
        values = {"features": self.info.features(fq), "output": self.info.output(oq)}
        return {n: values[n] for n in outputs or self.output_names}


def real_tokens(feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Each sentence's real token ids (a text firmware computes no padding)."""
    ids, mask = np.asarray(feeds["input_ids"]), np.asarray(feeds["attention_mask"])
    if ids.ndim != 2 or mask.shape != ids.shape:
        raise InputError(f"input_ids, attention_mask: expected two (batch, seq) arrays, found {ids.shape} and "
                         f"{mask.shape}")
    return [row[m.astype(bool)] for row, m in zip(ids, mask, strict=True)]


class TextFirmwareBackend:
    """A text encoder's firmware export run on the host (the C build through ctypes): token ids in,
    real sentence embeddings out, one sentence per C call over its real tokens only."""

    input_names = ["input_ids", "attention_mask"]
    output_names = ["sentence_embedding"]

    def __init__(self, directory: Path) -> None:
        from edgebert.runtime.text_firmware import TextFirmware

        self.text_firmware = TextFirmware(directory)

    def run(self, feeds: dict[str, np.ndarray], outputs: list[str] | None = None) -> dict[str, np.ndarray]:
        return {"sentence_embedding": self.text_firmware.embed_ids(real_tokens(feeds))}


def _tflm_interpreter_bytes(model: bytes, arena: int) -> Any:  # noqa: ANN401 - tflite_micro's Interpreter
    try:
        from tflite_micro.python.tflite_micro import runtime
    except ImportError:
        raise ArtifactError("a tflite-micro artifact needs the TFLite Micro interpreter: expected tflite-micro "
                            "installed, found none (pip install tflite-micro)") from None
    try:
        return runtime.Interpreter.from_bytes(model, arena_size=arena)
    except Exception as exc:  # noqa: BLE001 - the interpreter raises RuntimeError and others
        raise ArtifactError(f"expected a model TFLite Micro can run in {arena} bytes, found: {exc}") from None


class TextTfliteBackend:
    """A text encoder's .tflite export run on the host, in TFLite Micro or LiteRT."""

    input_names = ["input_ids", "attention_mask"]
    output_names = ["sentence_embedding"]

    def __init__(self, directory: Path, runtime: str) -> None:
        from edgebert.runtime.firmware import read_description
        from edgebert.runtime.text_firmware import TfliteTextRunner

        def settings(raw: dict) -> tuple:
            q, shape = raw["quantization"], raw["shape"]
            return (int(raw["figures"]["arena_bytes"]), int(shape["max_len"]), float(q["out_scale"]),
                    int(q["out_zero_point"]), bool(q["normalize"]), int(shape["vocab"]), str(q.get("pool", "mean")))

        arena, max_len, scale, zp, normalize, vocab, pool = read_description(directory, settings,
                                                                            "a text .tflite description")
        try:
            model = (directory / "model.tflite").read_bytes()
        except OSError as exc:
            raise ArtifactError(f"{directory / 'model.tflite'}: expected the text encoder's .tflite, found: {exc}") from None
        self.runner = TfliteTextRunner(model, runtime, arena, max_len, scale, zp, normalize, vocab, pool)

    def run(self, feeds: dict[str, np.ndarray], outputs: list[str] | None = None) -> dict[str, np.ndarray]:
        return {"sentence_embedding": self.runner.embed_ids(real_tokens(feeds))}


def _tflm_interpreter(path: Path, arena: int) -> Any:  # noqa: ANN401 - tflite_micro's Interpreter
    try:
        from tflite_micro.python.tflite_micro import runtime
    except ImportError:
        raise ArtifactError("a tflite-micro artifact needs the TFLite Micro interpreter: expected tflite-micro "
                            "installed, found none (pip install tflite-micro)") from None
    try:
        return runtime.Interpreter.from_file(str(path), arena_size=arena)
    except Exception as exc:  # noqa: BLE001 - the interpreter raises RuntimeError and others
        raise ArtifactError(f"{path}: expected a model TFLite Micro can run in {arena} bytes, found: {exc}") from None


def open_backend(path: Path, threads: int = 1, runtime: str = "") -> Backend:
    if runtime == "edgebert-binary":
        from edgebert.runtime.binary import BinaryBackend

        return BinaryBackend(path.parent)
    if runtime in ("c99", "tflite-micro", "litert"):
        from edgebert.runtime.text_firmware import is_text_firmware

        if is_text_firmware(path.parent):
            return TextFirmwareBackend(path.parent) if runtime == "c99" else TextTfliteBackend(path.parent, runtime)
    if runtime in ("c99", "tflite-micro") or (runtime == "litert" and (path.parent / "firmware.json").is_file()):
        return FirmwareBackend(path.parent, runtime)
    if path.suffix == ".tflite":
        return LiteRTBackend(path, threads)
    return OnnxBackend(path, threads)
