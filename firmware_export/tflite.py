"""Write the integer program (``program.IntMlp``) as a .tflite flatbuffer, without TensorFlow.

Builtin ops only, all of them in TensorFlow Lite Micro: MUL (float, the first layer's SmoothQuant
multiplier; left out when it is all ones), QUANTIZE (float32 -> int8), FULLY_CONNECTED (int8,
per-channel weight scales, int32 bias, fused ReLU). Inputs: ``x`` float32 (1, in). Outputs:
``features`` int8 (1, features) and ``output`` int8 (1, outputs), with their scales and zero
points in the tensors' quantization parameters (the features' real values also need the
per-channel ``feature_scale`` of firmware.json, since a SmoothQuant multiplier is folded in).
Constant buffers are 16-byte aligned. The schema is LiteRT's (``ai_edge_litert.schema_py_generated``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgebert.errors import ArtifactError
from firmware_export.program import IntMlp

ALIGN = 16
# builtin op versions written (the lowest that covers int8 / int16 as used here)
OP_VERSIONS = {"MUL": 1, "QUANTIZE": 2, "FULLY_CONNECTED": 4}


def _schema() -> Any:
    try:
        import ai_edge_litert.schema_py_generated as schema
    except ImportError:
        raise ArtifactError("--target tflite: expected ai-edge-litert installed (its flatbuffer schema writes "
                            ".tflite files), found none (pip install ai-edge-litert)") from None
    return schema


def _aligned_buffer_class(schema: Any) -> type:
    class AlignedBuffer(schema.BufferT):  # type: ignore[misc, name-defined]
        """A Buffer whose bytes start on a 16-byte boundary (int32 biases, SIMD loads)."""

        def Pack(self, builder: Any) -> int:  # noqa: N802 - flatbuffers' object API name
            data = None
            if self.data is not None:
                payload = bytes(self.data)
                builder.StartVector(1, len(payload), ALIGN)
                builder.head -= len(payload)
                builder.Bytes[builder.head:builder.head + len(payload)] = payload
                builder.vectorNumElems = len(payload)
                data = builder.EndVector()
            schema.BufferStart(builder)
            if data is not None:
                schema.BufferAddData(builder, data)
            return schema.BufferEnd(builder)

    return AlignedBuffer


class _Builder:
    def __init__(self, schema: Any) -> None:
        self.s = schema
        self.buffer_cls = _aligned_buffer_class(schema)
        self.buffers: list[Any] = [self.buffer_cls()]  # buffer 0: the empty sentinel
        self.tensors: list[Any] = []
        self.operators: list[Any] = []
        self.opcodes: list[str] = []

    def quant(self, scales: np.ndarray, zero_points: np.ndarray, axis: int = 0) -> Any:
        q = self.s.QuantizationParametersT()
        q.scale = [float(v) for v in np.atleast_1d(scales).astype(np.float32)]
        q.zeroPoint = [int(v) for v in np.atleast_1d(zero_points)]
        q.quantizedDimension = axis
        return q

    def tensor(self, name: str, shape: tuple[int, ...], dtype: str, data: np.ndarray | None = None,
               quant: Any = None) -> int:
        t = self.s.TensorT()
        t.name, t.shape = name.encode(), list(shape)
        t.type = getattr(self.s.TensorType, dtype)
        t.buffer = 0
        if data is not None:
            buf = self.buffer_cls()
            buf.data = np.ascontiguousarray(data).tobytes()
            self.buffers.append(buf)
            t.buffer = len(self.buffers) - 1
        t.quantization = quant
        self.tensors.append(t)
        return len(self.tensors) - 1

    def op(self, kind: str, inputs: list[int], outputs: list[int], options: Any = None, options_type: str = "") -> None:
        if kind not in self.opcodes:
            self.opcodes.append(kind)
        o = self.s.OperatorT()
        o.opcodeIndex, o.inputs, o.outputs = self.opcodes.index(kind), inputs, outputs
        if options is not None:
            o.builtinOptionsType = getattr(self.s.BuiltinOptions, options_type)
            o.builtinOptions = options
        self.operators.append(o)

    def model(self, inputs: list[int], outputs: list[int], description: str) -> bytes:
        import flatbuffers

        s = self.s
        codes = []
        for kind in self.opcodes:
            c = s.OperatorCodeT()
            c.builtinCode = getattr(s.BuiltinOperator, kind)
            c.deprecatedBuiltinCode = min(c.builtinCode, 127)
            c.version = OP_VERSIONS.get(kind, 1)
            codes.append(c)
        sub = s.SubGraphT()
        sub.tensors, sub.inputs, sub.outputs, sub.operators = self.tensors, inputs, outputs, self.operators
        sub.name = b"main"
        m = s.ModelT()
        m.version, m.operatorCodes, m.subgraphs, m.buffers = 3, codes, [sub], self.buffers
        m.description = description.encode()
        builder = flatbuffers.Builder(4096)
        builder.Finish(m.Pack(builder), file_identifier=b"TFL3")
        return bytes(builder.Output())


def ops_of(model: IntMlp) -> list[str]:
    """The builtin ops ``to_tflite`` writes for ``model``, in the order they first appear."""
    return (["MUL"] if not np.all(model.input_mul == 1.0) else []) + ["QUANTIZE", "FULLY_CONNECTED"]


def to_tflite(model: IntMlp, description: str = "edgebert firmware export") -> bytes:
    """The program as .tflite bytes (batch 1)."""
    b = _Builder(_schema())
    n_in = model.input_dim
    x = b.tensor("x", (1, n_in), "FLOAT32")
    current = x
    if not np.all(model.input_mul == 1.0):
        mul = b.tensor("input_mul", (n_in,), "FLOAT32", model.input_mul.astype(np.float32))
        scaled = b.tensor("x_scaled", (1, n_in), "FLOAT32")
        opts = b.s.MulOptionsT()
        opts.fusedActivationFunction = b.s.ActivationFunctionType.NONE
        b.op("MUL", [x, mul], [scaled], opts, "MulOptions")
        current = scaled
    xq = b.tensor("x_q", (1, n_in), "INT8", quant=b.quant(np.array([model.input_scale]),
                                                            np.array([model.input_zero_point])))
    b.op("QUANTIZE", [current], [xq])
    current, outputs = xq, {}
    for i, lay in enumerate(model.layers):
        n_out = lay.weight.shape[0]
        w = b.tensor(f"{lay.name}.weight", lay.weight.shape, "INT8", lay.weight.astype(np.int8),
                     b.quant(lay.filter_scale, np.zeros(n_out, np.int64)))
        bias_scale = (np.float64(lay.in_scale) * lay.filter_scale.astype(np.float64)).astype(np.float32)
        bias = b.tensor(f"{lay.name}.bias", (n_out,), "INT32", lay.bias.astype("<i4"),
                        b.quant(bias_scale, np.zeros(n_out, np.int64)))
        name = "output" if i == len(model.layers) - 1 else ("features" if i == model.feature_layer else f"{lay.name}.out")
        out = b.tensor(name, (1, n_out), "INT8", quant=b.quant(np.array([lay.out_scale]), np.array([lay.out_zero_point])))
        opts = b.s.FullyConnectedOptionsT()
        opts.fusedActivationFunction = b.s.ActivationFunctionType.RELU if lay.relu else b.s.ActivationFunctionType.NONE
        b.op("FULLY_CONNECTED", [current, w, bias], [out], opts, "FullyConnectedOptions")
        outputs[name] = out
        current = out
    return b.model([x], [outputs["features"], outputs["output"]], description)


__all__ = ["ops_of", "to_tflite"]
