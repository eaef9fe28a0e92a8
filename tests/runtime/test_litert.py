"""The LiteRT backend on a real .tflite file (one FULLY_CONNECTED layer written with the
flatbuffer schema LiteRT ships; the .tflite exporter proper is the firmware-export issue)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

litert_schema = pytest.importorskip("ai_edge_litert.schema_py_generated")


def write_fc_tflite(path: Path, w: np.ndarray, b: np.ndarray) -> None:
    """y = x @ w.T + b, float32, input 'x' (1, in), output 'output' (1, out)."""
    import flatbuffers

    s = litert_schema
    out_f, in_f = w.shape

    def buffer(data: bytes | None) -> object:
        buf = s.BufferT()
        buf.data = list(data) if data else None
        return buf

    def tensor(name: str, shape: list[int], buf: int) -> object:
        t = s.TensorT()
        t.name, t.shape, t.type, t.buffer = name, shape, s.TensorType.FLOAT32, buf
        return t

    model = s.ModelT()
    model.version = 3
    model.buffers = [buffer(None), buffer(None), buffer(w.astype(np.float32).tobytes()),
                     buffer(b.astype(np.float32).tobytes()), buffer(None)]
    code = s.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = s.BuiltinOperator.FULLY_CONNECTED
    code.version = 1
    model.operatorCodes = [code]
    op = s.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, [0, 1, 2], [3]
    op.builtinOptionsType = s.BuiltinOptions.FullyConnectedOptions
    op.builtinOptions = s.FullyConnectedOptionsT()
    graph = s.SubGraphT()
    graph.tensors = [tensor("x", [1, in_f], 1), tensor("w", [out_f, in_f], 2), tensor("b", [out_f], 3),
                     tensor("output", [1, out_f], 4)]
    graph.inputs, graph.outputs, graph.operators, graph.name = [0], [3], [op], "main"
    model.subgraphs = [graph]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    path.write_bytes(bytes(builder.Output()))


def test_litert_backend_runs_a_tflite_model_and_serialises_callers(tmp_path: Path) -> None:
    from edgebert.runtime.backends import LiteRTBackend, open_backend

    rng = np.random.default_rng(0)
    w, b = rng.normal(0, 1, (3, 5)).astype(np.float32), rng.normal(0, 1, 3).astype(np.float32)
    write_fc_tflite(tmp_path / "model.tflite", w, b)
    backend = open_backend(tmp_path / "model.tflite")
    xs = rng.normal(0, 1, (32, 1, 5)).astype(np.float32)

    with ThreadPoolExecutor(max_workers=4) as pool:
        outs = list(pool.map(lambda x: backend.run({"x": x})["output"], xs))

    assert isinstance(backend, LiteRTBackend) and backend.input_names == ["x"]
    np.testing.assert_allclose(np.concatenate(outs), xs[:, 0] @ w.T + b, rtol=1e-5, atol=1e-5)


def test_corrupt_tflite_is_a_clear_error(tmp_path: Path) -> None:
    from edgebert.errors import ArtifactError
    from edgebert.runtime.backends import open_backend

    (tmp_path / "model.tflite").write_bytes(b"not a flatbuffer")

    with pytest.raises(ArtifactError, match="expected a .tflite model LiteRT can load"):
        open_backend(tmp_path / "model.tflite")
