"""The project's own model form: a small graph of (quantized) ops with their scales.

Every converter pass works on this form and every emitter (ONNX today; .tflite and C next)
reads it, so quantization decisions are made once. Nodes refer to values by name; weights and
quantization parameters live in ``Graph.tensors`` (numpy arrays) and are referred to by name
from node attributes. Semantics of each op are defined by ``edgebert.graph.reference``.

Ops (inputs -> outputs; attributes):
- ``embedding``  (input_ids) -> (batch, seq, hidden); word, position tables, each fp32 or int8
  with a per-row scale (``word_scale``/``position_scale``).
- ``layernorm``  (x) -> y; gamma, beta, eps.
- ``linear``     (x) -> y = x @ W.T + b; weight (out, in) fp32 or int8 with per-output-channel
  ``weight_scale``; ``act``: "none" (fp32 input), "static" (uint8 input quantized with the
  calibrated ``act_scale``/``act_zero_point`` and optional per-input-channel ``smooth``
  divisor) or "dynamic" (uint8 range computed per call). With ``weight_bits`` 1 the weight is
  packed signs (out, ceil(in/8)) uint8 with ``weight_scale`` and ``weight_centre`` per row and
  ``in_features`` (``graph.binarize``); ``act`` "static" (W1A8) or "binary" (W1A1: each token's
  signs times its mean absolute value).
- ``attention``  (qkv, attention_mask) -> context; heads. Queries arrive pre-scaled. With ``binary``
  true, Bi-Attention (``graph.binarize.bi_attention``: 0/1 weights from the signs of q and k).
- ``add``, ``gelu`` (approximate: "none" | "tanh"), ``relu``.
- ``pool``       (hidden, attention_mask) -> sentence embedding; mode ("cls", "max", "mean", or
  several joined by "+": their vectors concatenated in that order), normalize, optional Dense
  ``projection``/``projection_bias``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgebert.errors import ArtifactError

# per-channel [min, max] (2, channels) of a value over the calibration text, recorded by the converter
# for transformer graphs (what a firmware export quantizes its int8 values with)
RANGE_PREFIX = "ranges."
OPS = ("embedding", "layernorm", "linear", "attention", "add", "gelu", "relu", "pool")
POOLING_MODES = ("cls", "max", "mean")  # sentence-transformers' concatenation order of its flags


def pooling_modes(mode: str) -> tuple[str, ...]:
    """The modes of a pool op's ``mode``: one of POOLING_MODES, or several joined by "+" in the order
    their vectors are concatenated (``"cls+mean"``: the CLS state, then the mean)."""
    parts = tuple(str(mode).split("+"))
    if any(p not in POOLING_MODES for p in parts) or len(set(parts)) != len(parts):
        raise ArtifactError(f"pooling: expected one of {POOLING_MODES} or several joined by '+' in their "
                            f"concatenation order (e.g. 'cls+mean'), found {str(mode)[:80]!r}")
    return parts


@dataclass(frozen=True)
class Node:
    op: str
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise ArtifactError(f"node {self.name}: expected op one of {OPS}, found {self.op!r}")


@dataclass
class Graph:
    """Inputs, outputs, topologically ordered nodes and named tensors."""

    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    nodes: list[Node]
    tensors: dict[str, np.ndarray]
    meta: dict[str, Any] = field(default_factory=dict)

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def replace(self, node: Node) -> None:
        self.nodes = [node if n.name == node.name else n for n in self.nodes]

    def linears(self) -> list[Node]:
        return [n for n in self.nodes if n.op == "linear"]

    def linear_weight(self, node: Node) -> np.ndarray:
        """A linear node's weight as float32 (out, in) acting on its original input: int8 codes
        times their per-channel scale, SmoothQuant's input divisor folded back."""
        a = node.attrs
        if a.get("weight_bits") == 1:  # packed signs: centre + scale * sign
            from edgebert.graph.binarize import BinaryWeight, dequantize

            return dequantize(BinaryWeight(self.tensors[a["weight"]], self.tensors[a["weight_scale"]].astype(np.float32),
                                           self.tensors[a["weight_centre"]].astype(np.float32), int(a["in_features"])))
        w = self.tensors[a["weight"]].astype(np.float32)
        if a.get("weight_scale"):
            w = w * self.tensors[a["weight_scale"]].astype(np.float32)[:, None]
        if a.get("input_mul"):
            w = w * self.tensors[a["input_mul"]][None, :]
        return w

    def copy(self) -> Graph:
        return Graph(self.inputs, self.outputs, list(self.nodes), dict(self.tensors), dict(self.meta))

    # -- persistence: safetensors holds tensors, its metadata header holds the structure --
    def save(self, path: Path) -> None:
        from safetensors.numpy import save_file

        structure = {
            "inputs": list(self.inputs),
            "outputs": list(self.outputs),
            "nodes": [{"op": n.op, "name": n.name, "inputs": list(n.inputs),
                       "outputs": list(n.outputs), "attrs": n.attrs} for n in self.nodes],
            "meta": self.meta,
        }
        tensors = {k: np.ascontiguousarray(v) for k, v in self.tensors.items()}
        save_file(tensors, str(path), metadata={"edgebert.graph": json.dumps(structure)})

    @classmethod
    def load(cls, path: Path) -> Graph:
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), "np") as handle:
                header = (handle.metadata() or {}).get("edgebert.graph")
                tensors = {k: handle.get_tensor(k) for k in handle.keys()}
        except (SafetensorError, OSError) as exc:
            raise ArtifactError(f"{path}: expected a graph safetensors file, found: {exc}") from None
        if header is None:
            raise ArtifactError(f"{path}: expected an 'edgebert.graph' metadata entry, found none")
        raw = json.loads(header)
        nodes = [Node(n["op"], n["name"], tuple(n["inputs"]), tuple(n["outputs"]), n["attrs"])
                 for n in raw["nodes"]]
        return cls(tuple(raw["inputs"]), tuple(raw["outputs"]), nodes, tensors, raw.get("meta", {}))
