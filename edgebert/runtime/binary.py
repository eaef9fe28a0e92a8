"""A binarized artifact on a device: its graph form (packed 1-bit linears, int8 embedding rows,
float LayerNorm, attention and GELU) run by the numpy graph executor, every 1-bit linear through
the artifact's host library (``libedgebert_binary.so``, built by the converter from
``c/eb_binary.h`` and ``c/eb_binary_api.c``, called through ctypes). numpy, safetensors and the
standard library only, as on a device.
"""

from __future__ import annotations

import ctypes
import threading
from pathlib import Path

import numpy as np

from edgebert.errors import ArtifactError, InputError
from edgebert.graph.form import Graph, Node
from edgebert.graph.reference import binary_weight, run

LIBRARY = "libedgebert_binary.so"
SOURCES = ("eb_binary.h", "eb_binary_api.c")
_P = ctypes.c_void_p


def _ptr(a: np.ndarray | None) -> ctypes.c_void_p | None:
    return None if a is None else ctypes.c_void_p(a.ctypes.data)


def _f32(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, np.float32)


class BinaryKernels:
    """The host library's two entry points over numpy arrays."""

    def __init__(self, path: Path) -> None:
        try:
            lib = ctypes.CDLL(str(Path(path).resolve()))
            self._w1a8, self._w1a1 = lib.eb_w1a8_linear, lib.eb_w1a1_linear
        except (OSError, AttributeError) as exc:
            raise ArtifactError(f"{path}: expected the binarized artifact's host library, found: {exc}") from None
        self._w1a8.argtypes = [_P, ctypes.c_int, ctypes.c_int, ctypes.c_float, ctypes.c_int32, _P, _P, _P, _P,
                               ctypes.c_int, _P]
        self._w1a1.argtypes = [_P, ctypes.c_int, ctypes.c_int, _P, _P, _P, _P, ctypes.c_int, _P]
        self._w1a8.restype = self._w1a1.restype = ctypes.c_int
        self._operands: dict[str, tuple] = {}

    def _prepared(self, g: Graph, node: Node) -> tuple:
        """A linear's contiguous operands (bits, per-row scale and centre, bias), checked and
        converted once per node, not on every call."""
        if node.name not in self._operands:
            b = binary_weight(g, node)
            bias = _f32(g.tensors[node.attrs["bias"]]) if node.attrs.get("bias") else None
            self._operands[node.name] = (b, np.ascontiguousarray(b.bits), _f32(b.scale), _f32(b.centre), bias)
        return self._operands[node.name]

    def linear(self, g: Graph, node: Node, x: np.ndarray) -> np.ndarray:
        a = node.attrs
        b, bits, scale, centre, bias = self._prepared(g, node)
        flat = _f32(x.reshape(-1, x.shape[-1]))
        if flat.shape[1] != b.in_features or not np.isfinite(flat).all():
            raise InputError(f"{node.name}: expected finite inputs of width {b.in_features}, found {flat.shape[1]} "
                             "wide or non-finite ones")
        y = np.empty((flat.shape[0], b.shape[0]), np.float32)
        if a.get("act") == "static":
            code = self._w1a8(_ptr(flat), flat.shape[0], b.in_features, float(a["act_scale"]), int(a["act_zero_point"]),
                              _ptr(bits), _ptr(scale), _ptr(centre), _ptr(bias), b.shape[0], _ptr(y))
        else:
            code = self._w1a1(_ptr(flat), flat.shape[0], b.in_features, _ptr(bits), _ptr(scale), _ptr(centre),
                              _ptr(bias), b.shape[0], _ptr(y))
        if code != 0:
            raise MemoryError(f"{node.name}: the binary kernel could not allocate its scratch")
        return y.reshape(*x.shape[:-1], -1)


class BinaryBackend:
    """Runs ``graph.safetensors`` of a binarized artifact; ``run(feeds)`` as ONNX Runtime's would."""

    def __init__(self, directory: Path) -> None:
        self.graph = Graph.load(Path(directory) / "graph.safetensors")
        if not any(n.attrs.get("weight_bits") == 1 for n in self.graph.linears()):
            raise ArtifactError(f"{directory}: expected a graph with 1-bit linears, found none")
        self.kernels = BinaryKernels(Path(directory) / LIBRARY)
        self.input_names = list(self.graph.inputs)
        self.output_names = list(self.graph.outputs)
        self._lock = threading.Lock()

    def run(self, feeds: dict[str, np.ndarray], outputs: list[str] | None = None) -> dict[str, np.ndarray]:
        missing = [n for n in self.input_names if n not in feeds]
        if missing:
            raise InputError(f"feeds: expected {self.input_names}, found {sorted(feeds)}")
        self._check(feeds)
        with self._lock:
            out = run(self.graph, feeds, binary=lambda node, x: self.kernels.linear(self.graph, node, x))
        return {k: out[k] for k in (outputs or self.output_names)}

    def _check(self, feeds: dict[str, np.ndarray]) -> None:
        """Token ids inside the word table and a mask of their shape, or finite inputs of the net's
        width: one InputError line before any table is indexed."""
        first = self.graph.nodes[0]
        if first.op == "embedding":
            ids, mask = np.asarray(feeds["input_ids"]), np.asarray(feeds.get("attention_mask", feeds["input_ids"]))
            vocab = self.graph.tensors[first.attrs["word"]].shape[0]
            positions = self.graph.tensors[first.attrs["position"]].shape[0]
            if ids.ndim != 2 or not np.issubdtype(ids.dtype, np.integer) or mask.shape != ids.shape:
                raise InputError(f"input_ids: expected integer (batch, seq) ids with a mask of the same shape, found "
                                 f"{ids.dtype} {ids.shape} and {mask.shape}")
            if ids.size and (ids.min() < 0 or ids.max() >= vocab or ids.shape[1] > positions):
                raise InputError(f"input_ids: expected ids in [0, {vocab}) and at most {positions} tokens, found "
                                 f"{ids.min()}..{ids.max()} over {ids.shape[1]} tokens")
        else:
            x = np.asarray(feeds[self.input_names[0]])
            if not np.issubdtype(x.dtype, np.floating) or not np.isfinite(x).all():
                raise InputError(f"{self.input_names[0]}: expected finite float inputs, found {x.dtype} or NaN/Inf")


__all__ = ["LIBRARY", "SOURCES", "BinaryBackend", "BinaryKernels"]
