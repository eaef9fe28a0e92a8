"""Lower an int8 BERT graph form to the integer encoder program of ``encoder.py``.

Kept from the graph, never re-derived: each linear's int8 codes, per-channel weight scales and
calibrated input quantization, and SmoothQuant's per-input-channel divisors, which move where
integer arithmetic can hold them exactly:
- a linear fed by a LayerNorm (QKV, FFN up): the divisor goes into that LayerNorm's gamma and beta
  (its int8 output then is exactly the linear's calibrated input); the residual reads those codes
  through per-channel integer multipliers that undo it;
- the attention output projection: its divisor goes into V's per-channel filter scale (attention
  is linear in V);
- the FFN down projection follows GELU, which no per-channel factor commutes with: its weights are
  re-quantized with the divisor folded back (per-channel symmetric int8), the one place where the
  firmware's weights differ from the artifact's.
Every other value is quantized with the per-channel ranges the converter recorded over its
calibration text (``ranges.<value>`` tensors). Pure; no I/O.
"""

from __future__ import annotations

import math

import numpy as np

from edgebert.errors import ArtifactError, InputError
from edgebert.graph.form import RANGE_PREFIX, Graph, Node, pooling_modes
from edgebert.graph.quantize import affine_params, quantize_rows_4bit, quantize_symmetric
from firmware_export import lut
from firmware_export.encoder import IntBlock, IntEncoder, IntLayerNorm, IntLinear
from firmware_export.fixedpoint import INT32_MAX, quantize_multiplier
from firmware_export.intops import EXP_FRAC, FINE, LN_FRAC, PROB_SCALE, RESIDUAL_LIMIT

BLOCK_OPS = ("linear", "attention", "linear", "add", "layernorm", "linear", "act", "linear", "add", "layernorm")
EMBED_FRAC = 14  # the largest embedding row scale is 2**14 residual units
WORD_BITS = (4, 8)
Quant = tuple[float, int]


def _quant(lo: float, hi: float) -> Quant:
    """int8 (scale, zero point) covering [lo, hi] (0 included), as TFLite's asymmetric int8."""
    scale, zp = affine_params(lo, hi)
    return float(np.float32(scale)), int(zp) - 128


def _range(graph: Graph, value: str) -> np.ndarray:
    r = graph.tensors.get(RANGE_PREFIX + value)
    if r is None:
        raise ArtifactError(f"graph: expected the calibrated range of value {value!r} (recorded by edgebert "
                            "converters since issue 14), found none: convert the model again")
    return r.astype(np.float64)


def _act(node: Node) -> Quant:
    a = node.attrs
    return float(np.float32(a["act_scale"])), int(a["act_zero_point"]) - 128


def _mul(graph: Graph, node: Node) -> np.ndarray:
    n_in = graph.tensors[node.attrs["weight"]].shape[1]
    name = node.attrs.get("input_mul")
    mul = graph.tensors[name].astype(np.float64) if name else np.ones(n_in)
    if mul.shape != (n_in,) or not (np.isfinite(mul).all() and (mul > 0).all()):
        raise ArtifactError(f"{node.name}: expected {n_in} positive finite input multipliers, found others")
    return mul


def _pairs(reals: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    reals = np.atleast_1d(np.asarray(reals, np.float64))
    if not np.isfinite(reals).all() or (reals >= 2.0 ** 30).any():
        raise ArtifactError(f"{what}: expected rescaling factors below 2**30, found {reals.max():.3g}")
    pairs = [quantize_multiplier(float(r)) for r in reals]
    return np.array([m for m, _ in pairs], np.int64), np.array([s for _, s in pairs], np.int64)


def _check_acc(name: str, w: np.ndarray, bias: np.ndarray, shifts: np.ndarray, in_span: int = 255) -> None:
    worst = np.abs(w.astype(np.int64)).sum(1) * in_span + np.abs(bias)
    if (worst << np.maximum(shifts, 0)).max() > INT32_MAX:
        raise ArtifactError(f"{name}: expected int32 accumulators for every int8 input, found a channel that can "
                            "overflow (weights or bias too large for its scales)")


def _linear(name: str, codes: np.ndarray, filter_scale: np.ndarray, bias_real: np.ndarray, in_q: Quant,
            out_scale: float | np.ndarray, out_zp: int | None) -> IntLinear:
    """One int8 linear: filter_scale per output channel (real weight = code * filter_scale), real bias."""
    s_in = np.float64(in_q[0])
    fs = filter_scale.astype(np.float64)
    bias = np.rint(bias_real / (s_in * fs))
    if np.abs(bias).max(initial=0) > INT32_MAX:
        raise ArtifactError(f"{name}: expected int32 biases, found one beyond int32 (input scale too small)")
    m, s = _pairs(s_in * fs / np.float64(out_scale), name)
    bias = bias.astype(np.int64)
    _check_acc(name, codes, bias, s)
    return IntLinear(codes.astype(np.int8), bias.astype(np.int32), m, s, in_q[1], out_zp)


def _int8_linear(graph: Graph, node: Node, rows: slice, in_q: Quant, out_q: Quant,
                 out_mul: np.ndarray | None = None) -> IntLinear:
    """Rows ``rows`` of a graph linear, int8 output; ``out_mul`` scales each output (a folded divisor)."""
    a = node.attrs
    codes = graph.tensors[a["weight"]][rows]
    n = codes.shape[0]
    mul = np.ones(n) if out_mul is None else out_mul
    fs = graph.tensors[a["weight_scale"]][rows].astype(np.float64) * mul
    bias = (graph.tensors[a["bias"]][rows].astype(np.float64) if a.get("bias") else np.zeros(n)) * mul
    return _linear(f"{node.name}[{rows.start}:{rows.stop}]", codes, fs, bias, in_q, out_q[0], out_q[1])


def _residual_scale(graph: Graph, value: str) -> float:
    r = _range(graph, value)
    absmax = max(float(np.abs(r).max()), 1e-6)
    return 2.0 * absmax / RESIDUAL_LIMIT  # 2x headroom over the calibrated range, then clamped


def _layernorm(graph: Graph, node: Node, in_scale: float, out_q: Quant, mul: np.ndarray) -> IntLayerNorm:
    a = node.attrs
    s_out = np.float64(out_q[0])
    gamma = np.rint(graph.tensors[a["gamma"]].astype(np.float64) * mul / s_out * (1 << LN_FRAC))
    beta = np.rint(graph.tensors[a["beta"]].astype(np.float64) * mul / s_out * (1 << LN_FRAC))
    if max(np.abs(gamma).max(), np.abs(beta).max()) > INT32_MAX:
        raise ArtifactError(f"{node.name}: expected gamma and beta within int32 at the output scale, found larger")
    eps = int(round(float(a["eps"]) / (in_scale * in_scale)))
    return IntLayerNorm(gamma.astype(np.int64), beta.astype(np.int64), min(eps, INT32_MAX), out_q[1])


def encoder_structure(graph: Graph) -> tuple[Node, Node, list[list[Node]], Node | None]:
    """(embedding, its LayerNorm, the blocks' ten nodes each, the pool node or None) of a post-LN BERT
    graph whose linears are int8 with static activations, or ArtifactError saying what differs."""
    if graph.meta.get("architecture") != "bert":
        raise ArtifactError(f"encoder export: expected a BERT graph (architecture bert), found "
                            f"{graph.meta.get('architecture')!r}")
    nodes = list(graph.nodes)
    pool = nodes.pop() if nodes and nodes[-1].op == "pool" else None
    if len(nodes) < 2 or nodes[0].op != "embedding" or nodes[1].op != "layernorm" or (len(nodes) - 2) % 10:
        raise ArtifactError("encoder export: expected embedding, LayerNorm and post-LN transformer blocks, found "
                            f"{[n.op for n in nodes[:4]]}...")
    blocks = [nodes[i:i + 10] for i in range(2, len(nodes), 10)]
    for b in blocks:
        ops = tuple("act" if n.op in ("gelu", "relu") else n.op for n in b)
        if ops != BLOCK_OPS:
            raise ArtifactError(f"{b[0].name}: expected a post-LN block {BLOCK_OPS}, found {ops}")
        if b[1].attrs.get("binary"):
            raise ArtifactError(f"{b[1].name}: expected softmax attention, found Bi-Attention (a fully binarized "
                                "student's); the firmware exports run softmax attention only")
        for lin in (b[0], b[2], b[5], b[7]):
            a = lin.attrs
            if a.get("act") != "static" or graph.tensors[a["weight"]].dtype != np.int8:
                raise ArtifactError(f"{lin.name}: expected an int8 linear with static activations, found act="
                                    f"{a.get('act')!r}, weights {graph.tensors[a['weight']].dtype} (convert with "
                                    "--precision int8 and no --dynamic/--keep-fp32)")
    if pool is not None:
        pooling_modes(pool.attrs.get("mode", "mean"))
    return nodes[0], nodes[1], blocks, pool


def _table(graph: Graph, node: Node, key: str, rows: int | None) -> np.ndarray:
    """An embedding table as float32 rows (int8 codes times their row scale)."""
    t = graph.tensors[node.attrs[key]][:rows]
    scale = node.attrs.get(f"{key}_scale")
    return t.astype(np.float32) * (graph.tensors[scale][:rows, None] if scale else np.float32(1.0))


def _embedding(graph: Graph, node: Node, max_len: int, word_bits: int, wide_ids: tuple[int, ...] = ()) -> tuple:
    a = node.attrs
    if word_bits == 8 and graph.tensors[a["word"]].dtype == np.int8 and a.get("word_scale"):
        word, w_scale = graph.tensors[a["word"]], graph.tensors[a["word_scale"]].astype(np.float64)
    elif word_bits == 8:
        word, w_scale = quantize_symmetric(_table(graph, node, "word", None), axis=0)
    else:
        word, w_scale = quantize_rows_4bit(_table(graph, node, "word", None))
    pos, p_scale = quantize_symmetric(_table(graph, node, "position", max_len), axis=0)
    w_scale, p_scale = np.asarray(w_scale, np.float64), np.asarray(p_scale, np.float64)
    s_e = max(float(w_scale.max()), float(p_scale.max()), 1e-12) / (1 << EMBED_FRAC)
    ids = np.asarray(sorted(set(wide_ids)) if word_bits == 4 else [], np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= len(word)):
        raise ArtifactError(f"wide rows: expected token ids in [0, {len(word)}), found {ids.min()}..{ids.max()}")
    wide, wide_scale = quantize_symmetric(_table(graph, node, "word", None)[ids], axis=0) if ids.size else \
        (np.zeros((0, pos.shape[1]), np.int8), np.zeros(0))
    return (word, np.rint(w_scale / s_e).astype(np.int64), pos.astype(np.int8),
            np.rint(p_scale / s_e).astype(np.int64), s_e,
            (ids, wide.astype(np.int8), np.rint(np.asarray(wide_scale, np.float64) / s_e).astype(np.int64)))


def lower_encoder(graph: Graph, max_len: int = 32, word_bits: int = 8, wide_ids: tuple[int, ...] = ()) -> IntEncoder:
    """The integer program of an int8 BERT graph for sentences of at most ``max_len`` tokens. With
    4-bit word rows, the rows of ``wide_ids`` (the special tokens every input carries: [CLS],
    [SEP]) are kept as int8 rows too, and used in place of their 4-bit ones."""
    if word_bits not in WORD_BITS:
        raise InputError(f"--embedding-bits: expected one of {WORD_BITS}, found {word_bits}")
    emb, ln0, blocks, pool = encoder_structure(graph)
    cfg = graph.meta.get("config", {})
    positions = graph.tensors[emb.attrs["position"]].shape[0]
    if not 1 <= max_len <= positions:
        raise InputError(f"--max-length: expected 1..{positions} (the model's positions), found {max_len}")
    heads = int(cfg.get("num_attention_heads", 0))
    word, word_mul, pos, pos_mul, s_e, wide = _embedding(graph, emb, max_len, word_bits, wide_ids)
    hidden = pos.shape[1]
    if heads < 1 or hidden % heads:
        raise ArtifactError(f"config: expected attention heads dividing {hidden}, found {heads}")
    r_last = _range(graph, ln0.outputs[0] if not blocks else blocks[-1][-1].outputs[0])
    last_q = _quant(r_last[0].min(), r_last[1].max())
    # the LayerNorm before each block feeds that block's QKV: its divisor and input quantization
    first_q = _act(blocks[0][0]) if blocks else last_q
    first_mul = _mul(graph, blocks[0][0]) if blocks else np.ones(hidden)
    int_ln0 = _layernorm(graph, ln0, s_e, first_q, first_mul)
    h_q, h_mul = first_q, first_mul
    int_blocks = []
    for i, (qkv, att, out, _res1, ln1, ffn1, act, ffn2, _res2, ln2) in enumerate(blocks):
        r = _range(graph, qkv.outputs[0])
        out_mul = _mul(graph, out)
        q_q = _quant(r[0, :hidden].min(), r[1, :hidden].max())
        k_q = _quant(r[0, hidden:2 * hidden].min(), r[1, hidden:2 * hidden].max())
        v_q = _quant((r[0, 2 * hidden:] * out_mul).min(), (r[1, 2 * hidden:] * out_mul).max())
        q = _int8_linear(graph, qkv, slice(0, hidden), h_q, q_q)
        k = _int8_linear(graph, qkv, slice(hidden, 2 * hidden), h_q, k_q)
        v = _int8_linear(graph, qkv, slice(2 * hidden, 3 * hidden), h_q, v_q, out_mul)
        ctx_q = _act(out)
        softmax = tuple(int(x[0]) for x in _pairs(q_q[0] * k_q[0] * (1 << EXP_FRAC), f"{att.name} softmax"))
        context = tuple(int(x[0]) for x in _pairs(v_q[0] * PROB_SCALE / ctx_q[0], f"{att.name} context"))
        s_r1 = _residual_scale(graph, _res1.outputs[0])
        a = out.attrs
        int_out = _linear(out.name, graph.tensors[a["weight"]], graph.tensors[a["weight_scale"]].astype(np.float64),
                          graph.tensors[a["bias"]].astype(np.float64), ctx_q, s_r1, None)
        res1 = np.rint(h_q[0] / (h_mul * s_r1)).astype(np.int64)
        ffn1_q, ffn1_mul = _act(ffn1), _mul(graph, ffn1)
        int_ln1 = _layernorm(graph, ln1, s_r1, ffn1_q, ffn1_mul)
        rf = _range(graph, ffn1.outputs[0])
        f_q = _quant(rf[0].min(), rf[1].max())
        int_ffn1 = _int8_linear(graph, ffn1, slice(0, graph.tensors[ffn1.attrs["weight"]].shape[0]), ffn1_q, f_q)
        ra = _range(graph, act.outputs[0])
        g_q = _quant(ra[0].min(), ra[1].max())
        table = lut.activation_table(act.op, act.attrs.get("approximate", "none"), f_q[0], f_q[1], g_q[0], g_q[1])
        # GELU commutes with no per-channel factor: FFN down's divisor goes back into its weights
        w2, s2 = quantize_symmetric(graph.linear_weight(ffn2), axis=0)
        b2 = graph.tensors[ffn2.attrs["bias"]].astype(np.float64) if ffn2.attrs.get("bias") else np.zeros(len(s2))
        s_r2 = _residual_scale(graph, _res2.outputs[0])
        int_ffn2 = _linear(ffn2.name, w2, np.asarray(s2, np.float64), b2, g_q, s_r2, None)
        res2 = np.rint(ffn1_q[0] / (ffn1_mul * s_r2)).astype(np.int64)
        if i + 1 < len(blocks):
            h_q, h_mul = _act(blocks[i + 1][0]), _mul(graph, blocks[i + 1][0])
        else:
            h_q, h_mul = last_q, np.ones(hidden)
        int_ln2 = _layernorm(graph, ln2, s_r2, h_q, h_mul)
        int_blocks.append(IntBlock(q, k, v, softmax, context, ctx_q[1], int_out, res1, int_ln1, int_ffn1, table,
                                   int_ffn2, res2, int_ln2))
    s_h = np.float64(h_q[0])
    mode = pool.attrs.get("mode", "mean") if pool is not None else "mean"
    projection = None
    pooled = hidden * len(pooling_modes(mode))
    out_scale = np.full(pooled, s_h / FINE)  # encoder.pool's units
    if pool is not None and pool.attrs.get("projection"):
        wp, sp = quantize_symmetric(graph.tensors[pool.attrs["projection"]].astype(np.float32), axis=0)
        if wp.shape[1] != pooled:
            raise ArtifactError(f"pool.projection: expected {pooled} inputs ({mode} pooling of {hidden}), found "
                                f"{wp.shape[1]}")
        bias = np.rint(graph.tensors[pool.attrs["projection_bias"]].astype(np.float64) / (s_h * sp))
        # every pooled value is at most 255 x max_len in size (a sum over tokens, or one multiplied by n)
        _check_acc("pool.projection", wp, bias.astype(np.int64) * max_len, np.zeros(1, np.int64),
                   in_span=255 * max_len)
        projection = IntLinear(wp.astype(np.int8), bias.astype(np.int32), np.zeros(len(sp), np.int64),
                               np.zeros(len(sp), np.int64), 0, None)
        out_scale = s_h * np.asarray(sp, np.float64)
    normalize = bool(pool.attrs.get("normalize", False)) if pool is not None else False
    if not math.isfinite(float(out_scale.max())):
        raise ArtifactError("pool: expected finite output scales, found others")
    return IntEncoder(word, word_bits, word_mul, pos, pos_mul, int_ln0, tuple(int_blocks), heads, h_q[1], mode,
                      projection, out_scale.astype(np.float32), normalize, *wide)


__all__ = ["WORD_BITS", "encoder_structure", "lower_encoder"]
