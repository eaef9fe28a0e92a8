"""Numpy reference semantics of the graph ops (see ``graph.py``).

Used for calibration (an observer sees every linear's input), for fidelity searches during
conversion, and as the oracle the emitters are tested against. Integer linears accumulate
exactly in int32 (``kernel="exact"``: what VNNI, ARM and u8 x u8 kernels compute) or as ONNX
Runtime's u8 x s8 kernels on AVX2 without VNNI do (``kernel="vpmaddubsw"``: adjacent product
pairs saturated to int16, see ``saturation.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from edgebert.errors import ArtifactError
from edgebert.graph.avx2 import vpmaddubsw_matmul
from edgebert.graph.binarize import BinaryWeight, bi_attention, binarize_activations, per_row, row_bytes, w1a1_core, w1a8_linear
from edgebert.graph.form import Graph, Node, pooling_modes
from edgebert.graph.quantize import dynamic_affine_params, quantize_affine, unpack_rows_4bit

Observer = Callable[[Node, np.ndarray, np.ndarray], None]
MASK_VALUE = np.float32(-1e4)
KERNELS = ("exact", "vpmaddubsw")


def _erf(x: np.ndarray) -> np.ndarray:
    try:
        from scipy.special import erf  # scipy ships with scikit-learn on the host
    except ImportError:  # a device (numpy only): Abramowitz & Stegun 7.1.26, |error| <= 1.5e-7
        return erf_numpy(x)
    return erf(x).astype(np.float32)


def erf_numpy(x: np.ndarray) -> np.ndarray:
    """erf in numpy alone (Abramowitz & Stegun 7.1.26): absolute error at most 1.5e-7, about one
    float32 step of erf near 1."""
    z = np.abs(np.asarray(x, np.float64))
    t = 1.0 / (1.0 + 0.3275911 * z)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return (np.sign(x) * (1.0 - poly * np.exp(-z * z))).astype(np.float32)


def _table(g: Graph, node: Node, key: str) -> tuple[np.ndarray, np.ndarray | None]:
    scale = node.attrs.get(f"{key}_scale")
    return g.tensors[node.attrs[key]], (g.tensors[scale] if scale else None)


def _gather(table: np.ndarray, scale: np.ndarray | None, index: np.ndarray, cols: int | None = None) -> np.ndarray:
    """Rows of an embedding table times their scale; ``cols`` set: the table holds 4-bit packed rows."""
    if cols is not None:
        index = np.asarray(index)
        rows = unpack_rows_4bit(table[index.ravel()], cols).astype(np.float32).reshape(*index.shape, cols)
        return rows * scale[index][..., None] if scale is not None else rows
    rows = table[index].astype(np.float32)
    return rows * scale[index][..., None] if scale is not None else rows


def layernorm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return ((x - mean) / np.sqrt(var + np.float32(eps)) * gamma + beta).astype(np.float32)


def binary_weight(g: Graph, node: Node) -> BinaryWeight:
    """A 1-bit linear's packed weight (a per-matrix scale and centre repeated on every row), or one
    ArtifactError line saying which part does not fit."""
    a = node.attrs
    bits, scale, centre = g.tensors[a["weight"]], g.tensors[a["weight_scale"]], g.tensors[a["weight_centre"]]
    n = int(a.get("in_features", 0))
    if bits.dtype != np.uint8 or bits.ndim != 2 or n < 1 or bits.shape[1] != row_bytes(n) or \
            scale.shape not in ((bits.shape[0],), (1,)) or centre.shape != scale.shape:
        raise ArtifactError(f"{node.name}: expected packed signs ({bits.shape[0] if bits.ndim else '?'}, "
                            f"{row_bytes(max(n, 1))}) uint8 with one scale and centre per row, found "
                            f"{bits.dtype} {bits.shape}, {scale.shape}, {centre.shape}")
    return per_row(BinaryWeight(bits, scale.astype(np.float32), centre.astype(np.float32), n))


def binary_linear(g: Graph, node: Node, x: np.ndarray) -> np.ndarray:
    """A linear with 1-bit weights: W1A8 on uint8 codes of the calibrated range (act "static") or
    W1A1 on each token's signs and mean absolute value (act "binary"), through the exact integer
    cores of ``graph.binarize``."""
    a = node.attrs
    b = binary_weight(g, node)
    bias = g.tensors[a["bias"]].astype(np.float32) if a.get("bias") else None
    flat = x.reshape(-1, x.shape[-1])
    if flat.shape[1] != b.in_features:
        raise ArtifactError(f"{node.name}: expected inputs of width {b.in_features}, found {flat.shape[1]}")
    if a.get("act") == "static":
        scale, zp = np.float32(a["act_scale"]), np.uint8(a["act_zero_point"])
        y = w1a8_linear(quantize_affine(flat, scale, zp), float(scale), int(zp), b, bias)
    elif a.get("act") == "binary":
        bits, beta = binarize_activations(flat)
        signed = w1a1_core(bits, b.bits, b.in_features).astype(np.float32)
        total = (2 * np.bitwise_count(bits).sum(1, dtype=np.int64) - b.in_features).astype(np.float32)
        y = beta[:, None] * (b.scale[None, :] * signed + b.centre[None, :] * total[:, None])
        y = y + (bias[None, :] if bias is not None else np.float32(0))
    else:
        raise ArtifactError(f"{node.name}: expected act static or binary for 1-bit weights, found {a.get('act')!r}")
    return y.reshape(*x.shape[:-1], -1).astype(np.float32)


def linear(g: Graph, node: Node, x: np.ndarray, kernel: str = "exact") -> np.ndarray:
    a = node.attrs
    if a.get("weight_bits") == 1:
        return binary_linear(g, node, x)
    w = g.tensors[a["weight"]]  # (out, in)
    bias = g.tensors[a["bias"]] if a.get("bias") else np.float32(0.0)
    act = a.get("act", "none")
    if w.dtype == np.float32 and act == "none":
        return (x @ w.T + bias).astype(np.float32)
    w_scale = g.tensors[a["weight_scale"]]  # (out,)
    if act == "static":
        if a.get("input_mul"):
            x = x * g.tensors[a["input_mul"]]  # SmoothQuant: x / s
        scale, zp = np.float32(a["act_scale"]), np.uint8(a["act_zero_point"])
        q = quantize_affine(x, scale, zp)
    elif act == "dynamic":
        scale, zp = dynamic_affine_params(x)
        q = quantize_affine(x, scale, zp)
    else:
        raise ArtifactError(f"{node.name}: expected act static or dynamic for int8 weights, found {act!r}")
    if kernel == "vpmaddubsw":  # raw u8 codes times s8 codes, then the zero point's term (as MLAS does)
        acc = vpmaddubsw_matmul(q, w) - np.int64(zp) * w.astype(np.int64).sum(1)
    else:
        # exact integer accumulation: every product and partial sum is an integer below 2**53
        acc = (q.astype(np.float64) - float(zp)) @ w.T.astype(np.float64)
    return (acc.astype(np.float32) * (scale * w_scale) + bias).astype(np.float32)


def attention(qkv: np.ndarray, mask: np.ndarray, heads: int, binary: bool = False) -> np.ndarray:
    """Softmax attention, or with ``binary`` Bi-Attention (``graph.binarize.bi_attention``)."""
    b, s, three_h = qkv.shape
    hd = three_h // (3 * heads)
    parts = qkv.reshape(b, s, 3, heads, hd).transpose(2, 0, 3, 1, 4)  # (3, b, heads, s, hd)
    q, k, v = parts[0], parts[1], parts[2]
    if binary:
        context = bi_attention(q, k, v, np.asarray(mask) != 0)
        return context.transpose(0, 2, 1, 3).reshape(b, s, heads * hd).astype(np.float32)
    scores = q @ k.transpose(0, 1, 3, 2) + (1.0 - mask[:, None, None, :].astype(np.float32)) * MASK_VALUE
    scores = np.exp(scores - scores.max(-1, keepdims=True))
    probs = scores / scores.sum(-1, keepdims=True)
    return (probs @ v).transpose(0, 2, 1, 3).reshape(b, s, heads * hd).astype(np.float32)


def mean_pool(h: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The mean of the real tokens' states: (batch, seq, hidden), (batch, seq) -> (batch, hidden)."""
    m = mask.astype(np.float32)[..., None]
    return (h * m).sum(1) / np.maximum(m.sum(1), np.float32(1e-9))


def pool(h: np.ndarray, mask: np.ndarray, mode: str, normalize: bool,
         projection: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    m = mask.astype(np.float32)[..., None]
    parts = []
    for part in pooling_modes(mode):  # several modes concatenate, in their order
        if part == "cls":
            parts.append(h[:, 0])
        elif part == "max":
            parts.append((h + (1.0 - m) * MASK_VALUE).max(1))
        else:
            parts.append(mean_pool(h, mask))
    out = np.concatenate(parts, axis=-1)
    if projection is not None:
        out = out @ projection[0].T + projection[1]
    if normalize:
        out = out / np.maximum(np.linalg.norm(out, axis=-1, keepdims=True), np.float32(1e-12))
    return out.astype(np.float32)


def run(g: Graph, feeds: dict[str, np.ndarray], observer: Observer | None = None,
        kernel: str = "exact", binary: Callable[[Node, np.ndarray], np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Execute the graph; ``observer(node, x, mask)`` sees each linear's input before it runs;
    ``kernel`` says how integer linears accumulate (one of ``KERNELS``); ``binary(node, x)``, when
    given, runs the 1-bit linears instead of the numpy oracle (a device's C kernels)."""
    if kernel not in KERNELS:
        raise ArtifactError(f"kernel: expected one of {KERNELS}, found {kernel!r}")
    env: dict[str, np.ndarray] = dict(feeds)
    mask = feeds.get("attention_mask")
    for node in g.nodes:
        x = [env[i] for i in node.inputs]
        a = node.attrs
        if node.op == "embedding":
            ids = x[0]
            out = _gather(*_table(g, node, "word"), ids, int(a["word_cols"]) if a.get("word_bits") == 4 else None)
            positions = np.arange(ids.shape[1])
            out = out + _gather(*_table(g, node, "position"), positions)[None]
        elif node.op == "layernorm":
            out = layernorm(x[0], g.tensors[a["gamma"]], g.tensors[a["beta"]], a["eps"])
        elif node.op == "linear":
            if observer is not None:
                observer(node, x[0], mask if mask is not None else np.ones(x[0].shape[:-1]))
            out = binary(node, x[0]) if binary is not None and a.get("weight_bits") == 1 else linear(g, node, x[0], kernel)
        elif node.op == "attention":
            out = attention(x[0], x[1], a["heads"], bool(a.get("binary", False)))
        elif node.op == "add":
            out = x[0] + x[1]
        elif node.op == "gelu":
            if a.get("approximate") == "tanh":
                c = np.float32(math.sqrt(2.0 / math.pi))
                out = 0.5 * x[0] * (1.0 + np.tanh(c * (x[0] + np.float32(0.044715) * x[0] ** 3)))
            else:
                out = 0.5 * x[0] * (1.0 + _erf(x[0] / np.float32(math.sqrt(2.0))))
        elif node.op == "relu":
            out = np.maximum(x[0], np.float32(0.0))
        elif node.op == "pool":
            proj = (g.tensors[a["projection"]], g.tensors[a["projection_bias"]]) if a.get("projection") else None
            out = pool(x[0], x[1], a["mode"], a["normalize"], proj)
        else:  # pragma: no cover - Node validates op names
            raise ArtifactError(node.op)
        env[node.outputs[0]] = out.astype(np.float32)
    return {name: env[name] for name in g.outputs}
