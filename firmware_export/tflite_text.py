"""Write a BERT graph (int8 artifact) as a .tflite of TFLite Micro builtins, without TensorFlow.

Post-training quantization the way TFLite does it: the same graph is first written in float32
and run in LiteRT on calibration sentences with every intermediate tensor kept; the [min, max] of
each tensor then quantizes the int8 graph. The int8 graph, all builtins TFLite Micro has:

- embedding: GATHER of int8 word rows (one scale per table: GATHER copies codes) + ADD of the
  position rows;
- LayerNorm in int16 (symmetric, TFLM's int16 kernels): QUANTIZE int8 -> int16, MEAN, SUB, MUL
  (the square), MEAN, RSQRT, MUL, MUL by gamma, ADD beta, QUANTIZE back to int8;
- attention: FULLY_CONNECTED Q, K, V; RESHAPE/TRANSPOSE into heads; BATCH_MATMUL (K adjoint);
  ADD of the attention mask (QUANTIZE of a float bias: 0 for real tokens, -10000 for padding,
  saturating to the lowest code, which the scores' range puts at least 16 below their top);
  SOFTMAX to int8 with scale 1/256 and zero point -128; BATCH_MATMUL with V;
- FFN: FULLY_CONNECTED, GELU as a 256-entry table (CAST of the codes to int32, ADD 128, GATHER:
  the same table as the C export), FULLY_CONNECTED; residual ADDs in int8;
- pooling: BATCH_MATMUL of the pooling weights (one row per mode: 1/n on the n real tokens for a
  mean, 1 on token 0 for CLS; QUANTIZE of a float input) with the last hidden rows, RESHAPE of the
  rows into one vector (the modes' concatenation), then the Dense projection as FULLY_CONNECTED.

Linear weights are the artifact's, with SmoothQuant's divisor folded back (``Graph.linear_weight``)
and re-quantized per output channel: a TFLite int8 activation has one scale per tensor.
Inputs: ``input_ids`` int32 (S,), ``attention_bias`` float32 (1, 1, S), ``pool_weights``
float32 (P, S), P pooling modes. Output: ``embedding`` int8 (1, out) with its scale and zero point.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edgebert.graph.form import Graph, Node
from edgebert.graph.quantize import affine_params, quantize_symmetric
from edgebert.runtime.text_firmware import MASK_VALUE, litert_interpreter, pool_rows, text_feeds
from firmware_export import lut
from firmware_export.lower_encoder import encoder_structure
from firmware_export.tflite import OP_VERSIONS, _Builder, _schema

SCORE_SPAN = 16.0  # the lowest score code is at least this far below the top: exp(-16) ~ 1e-7
VERSIONS = {"FULLY_CONNECTED": 4, "QUANTIZE": 2, "ADD": 3, "SUB": 3, "MUL": 4, "MEAN": 2, "RSQRT": 2,
            "GATHER": 3, "BATCH_MATMUL": 1, "SOFTMAX": 2, "RESHAPE": 1, "TRANSPOSE": 2, "CAST": 1, "GELU": 1}
OP_VERSIONS.update(VERSIONS)
Ranges = dict[str, tuple[float, float]]


@dataclass(frozen=True)
class TextTflite:
    data: bytes
    ops: list[str]
    max_len: int
    out_dim: int
    out_scale: float
    out_zero_point: int
    normalize: bool
    pool: str


class _Writer:
    """One pass over the graph, in float32 (calibration) or int8 (with ``ranges``)."""

    def __init__(self, graph: Graph, max_len: int, ranges: Ranges | None) -> None:
        self.g, self.S, self.ranges = graph, max_len, ranges
        self.int8 = ranges is not None
        self.b = _Builder(_schema())
        self.s = self.b.s

    # -- tensors
    def _q(self, name: str, bits: int = 8) -> Any:  # noqa: ANN401
        if not self.int8:
            return None
        lo, hi = self.ranges[name]  # type: ignore[index]
        if bits == 16:
            return self.b.quant(np.array([max(abs(lo), abs(hi), 1e-8) / 32767.0]), np.array([0]))
        scale, zp = affine_params(lo, hi)
        return self.b.quant(np.array([scale]), np.array([int(zp) - 128]))

    def act(self, name: str, shape: tuple[int, ...], bits: int = 8, quant: Any = None,  # noqa: ANN401
            like: str | None = None) -> int:
        """An activation tensor; quantized (int8 build) with the range of ``like`` (default: its own name)."""
        if bits == 32:
            return self.b.tensor(name, shape, "INT32")
        dtype = "FLOAT32" if not self.int8 else ("INT16" if bits == 16 else "INT8")
        if quant is None and self.int8:
            quant = self._q(like or name, bits)
        return self.b.tensor(name, shape, dtype, quant=quant)

    def const(self, name: str, values: np.ndarray, bits: int = 8) -> int:
        v = np.asarray(values, np.float32)
        if not self.int8:
            return self.b.tensor(name, v.shape, "FLOAT32", v)
        if bits == 16:
            scale = max(float(np.abs(v).max()), 1e-8) / 32767.0
            return self.b.tensor(name, v.shape, "INT16", np.clip(np.rint(v / scale), -32767, 32767).astype("<i2"),
                                 self.b.quant(np.array([scale]), np.array([0])))
        scale = max(float(np.abs(v).max()), 1e-8) / 127.0
        return self.b.tensor(name, v.shape, "INT8", np.clip(np.rint(v / scale), -127, 127).astype(np.int8),
                             self.b.quant(np.array([scale]), np.array([0])))

    def i32(self, name: str, values: np.ndarray) -> int:
        v = np.asarray(values, np.int32)
        return self.b.tensor(name, v.shape, "INT32", v.astype("<i4"))

    # -- ops
    def op(self, kind: str, ins: list[int], out: int, options: Any = None, otype: str = "") -> int:  # noqa: ANN401
        self.b.op(kind, ins, [out], options, otype)
        return out

    def binary(self, kind: str, a: int, c: int, name: str, shape: tuple[int, ...], bits: int = 8,
               like: str | None = None) -> int:
        opts = getattr(self.s, f"{kind.title().replace('_', '')}OptionsT")()
        opts.fusedActivationFunction = self.s.ActivationFunctionType.NONE
        return self.op(kind, [a, c], self.act(name, shape, bits, like=like), opts,
                       f"{kind.title().replace('_', '')}Options")

    def mean(self, x: int, name: str, shape: tuple[int, ...], bits: int) -> int:
        opts = self.s.ReducerOptionsT()
        opts.keepDims = True
        axis = self.i32(f"{name}.axis", np.array([len(shape) - 1]))
        return self.op("MEAN", [x, axis], self.act(name, shape[:-1] + (1,), bits), opts, "ReducerOptions")

    def quantize(self, x: int, name: str, shape: tuple[int, ...], bits: int, like: str | None = None) -> int:
        if not self.int8:
            return x
        return self.op("QUANTIZE", [x], self.act(name, shape, bits, like=like))

    def fc(self, x: int, w: np.ndarray, bias: np.ndarray, in_name: str, name: str, rows: int) -> int:
        n_out = w.shape[0]
        if not self.int8:
            wt = self.b.tensor(f"{name}.weight", w.shape, "FLOAT32", w.astype(np.float32))
            bt = self.b.tensor(f"{name}.bias", (n_out,), "FLOAT32", bias.astype(np.float32))
        else:
            codes, scales = quantize_symmetric(w.astype(np.float32), axis=0)
            wt = self.b.tensor(f"{name}.weight", w.shape, "INT8", codes.astype(np.int8),
                               self.b.quant(scales, np.zeros(n_out, np.int64)))
            s_in = affine_params(*self.ranges[in_name])[0]  # type: ignore[index]
            bias_scale = (np.float64(s_in) * scales.astype(np.float64))
            bq = np.clip(np.rint(bias / bias_scale), -(2**31), 2**31 - 1).astype("<i4")
            bt = self.b.tensor(f"{name}.bias", (n_out,), "INT32", bq,
                               self.b.quant(bias_scale.astype(np.float32), np.zeros(n_out, np.int64)))
        opts = self.s.FullyConnectedOptionsT()
        opts.fusedActivationFunction = self.s.ActivationFunctionType.NONE
        return self.op("FULLY_CONNECTED", [x, wt, bt], self.act(name, (rows, n_out)), opts, "FullyConnectedOptions")

    def reshape(self, x: int, name: str, shape: tuple[int, ...], like: str) -> int:
        opts = self.s.ReshapeOptionsT()
        opts.newShape = list(shape)
        new = self.i32(f"{name}.shape", np.array(shape))
        out = self.act(name, shape, quant=self._q(like) if self.int8 else None)
        return self.op("RESHAPE", [x, new], out, opts, "ReshapeOptions")

    def transpose(self, x: int, name: str, perm: tuple[int, ...], shape: tuple[int, ...], like: str) -> int:
        p = self.i32(f"{name}.perm", np.array(perm))
        return self.op("TRANSPOSE", [x, p], self.act(name, shape, quant=self._q(like) if self.int8 else None))

    def matmul(self, a: int, c: int, name: str, shape: tuple[int, ...], adj_y: bool = False) -> int:
        opts = self.s.BatchMatMulOptionsT()
        opts.adjX, opts.adjY = False, adj_y
        return self.op("BATCH_MATMUL", [a, c], self.act(name, shape), opts, "BatchMatMulOptions")

    # -- blocks
    def layernorm(self, x: int, node: Node, shape: tuple[int, ...], in_name: str, out_name: str) -> int:
        a, n = node.attrs, node.name
        x16 = self.quantize(x, f"{n}.x16", shape, 16, like=in_name)
        mean = self.mean(x16, f"{n}.mean", shape, 16)
        d = self.binary("SUB", x16, mean, f"{n}.d", shape, 16)
        sq = self.binary("MUL", d, d, f"{n}.sq", shape, 16)
        var = self.mean(sq, f"{n}.var", shape, 16)
        eps = float(a["eps"])
        if not self.int8 or eps / (max(abs(v) for v in self.ranges[f"{n}.var"]) / 32767.0) >= 0.5:  # type: ignore[index]
            var = self.binary("ADD", var, self.const(f"{n}.eps", np.array([eps]), 16), f"{n}.var_eps",
                              shape[:-1] + (1,), 16)
        r = self.op("RSQRT", [var], self.act(f"{n}.rstd", shape[:-1] + (1,), 16))
        z = self.binary("MUL", d, r, f"{n}.z", shape, 16)
        gz = self.binary("MUL", z, self.const(f"{n}.gamma", self.g.tensors[a["gamma"]], 16), f"{n}.gz", shape, 16)
        beta = self.const(f"{n}.beta", self.g.tensors[a["beta"]], 16)
        y = self.binary("ADD", gz, beta, f"{n}.y" if self.int8 else out_name, shape, 16, like=out_name)
        return self.quantize(y, out_name, shape, 8)

    def gelu(self, x: int, in_name: str, node: Node, shape: tuple[int, ...]) -> int:
        name = node.outputs[0]
        if not self.int8:
            if node.op == "relu":
                return self.op("RELU", [x], self.act(name, shape))
            opts = self.s.GeluOptionsT()
            opts.approximate = node.attrs.get("approximate") == "tanh"
            return self.op("GELU", [x], self.act(name, shape), opts, "GeluOptions")
        s_in, zp_in = affine_params(*self.ranges[in_name])  # type: ignore[index]
        s_out, zp_out = affine_params(*self.ranges[name])  # type: ignore[index]
        table = lut.activation_table(node.op, node.attrs.get("approximate", "none"), float(s_in), int(zp_in) - 128,
                                     float(s_out), int(zp_out) - 128)
        idx = self.op("CAST", [x], self.b.tensor(f"{name}.codes", shape, "INT32"))
        shifted = self.binary("ADD", idx, self.i32(f"{name}.offset", np.array([128])), f"{name}.index", shape, 32)
        tab = self.b.tensor(f"{name}.table", (256,), "INT8", table, self._q(name))
        opts = self.s.GatherOptionsT()
        opts.axis = 0
        return self.op("GATHER", [tab, shifted], self.act(name, shape), opts, "GatherOptions")

    def build(self) -> tuple[bytes, dict[str, Any]]:
        g, S = self.g, self.S
        emb, ln0, blocks, pool = encoder_structure(g)
        cfg = g.meta.get("config", {})
        heads = int(cfg["num_attention_heads"])
        word = _rows(g, emb, "word")
        pos = _rows(g, emb, "position")[:S]
        H = word.shape[1]
        hd = H // heads
        ids = self.b.tensor("input_ids", (S,), "INT32")
        bias_in = self.b.tensor("attention_bias", (1, 1, S), "FLOAT32")
        mode = str(pool.attrs.get("mode", "mean")) if pool is not None else "mean"
        P = len(pool_rows(mode))
        pool_in = self.b.tensor("pool_weights", (P, S), "FLOAT32")
        table = self.const("emb.word_table", word) if not self.int8 else self._word_table(word)
        opts = self.s.GatherOptionsT()
        opts.axis = 0
        rows = self.op("GATHER", [table, ids], self.act("emb.word", (S, H), quant=self._word_quant(word)), opts,
                       "GatherOptions")
        x = self.binary("ADD", rows, self.const("emb.position_rows", pos), emb.outputs[0], (S, H))
        h_name = ln0.outputs[0]
        h = self.layernorm(x, ln0, (S, H), emb.outputs[0], h_name)
        for qkv, att, out, res1, ln1, ffn1, act, ffn2, res2, ln2 in blocks:
            w = g.linear_weight(qkv)
            b = g.tensors[qkv.attrs["bias"]]
            n = qkv.name
            q = self.fc(h, w[:H], b[:H], h_name, f"{n}.q", S)
            k = self.fc(h, w[H:2 * H], b[H:2 * H], h_name, f"{n}.k", S)
            v = self.fc(h, w[2 * H:], b[2 * H:], h_name, f"{n}.v", S)
            heads_of = {}
            for part, t in (("q", q), ("k", k), ("v", v)):
                r = self.reshape(t, f"{n}.{part}.r", (S, heads, hd), f"{n}.{part}")
                heads_of[part] = self.transpose(r, f"{n}.{part}.t", (1, 0, 2), (heads, S, hd), f"{n}.{part}")
            scores = self.matmul(heads_of["q"], heads_of["k"], f"{att.name}.scores", (heads, S, S), adj_y=True)
            mask = self.quantize(bias_in, f"{att.name}.mask", (1, 1, S), 8)
            masked = self.binary("ADD", scores, mask, f"{att.name}.masked", (heads, S, S))
            sm_opts = self.s.SoftmaxOptionsT()
            sm_opts.beta = 1.0
            probs_q = self.b.quant(np.array([1.0 / 256]), np.array([-128])) if self.int8 else None
            probs = self.op("SOFTMAX", [masked], self.act(f"{att.name}.probs", (heads, S, S), quant=probs_q), sm_opts,
                            "SoftmaxOptions")
            ctx = self.matmul(probs, heads_of["v"], f"{att.name}.ctx", (heads, S, hd))
            ctx_t = self.transpose(ctx, f"{att.name}.ctx.t", (1, 0, 2), (S, heads, hd), f"{att.name}.ctx")
            ctx2 = self.reshape(ctx_t, att.outputs[0], (S, H), f"{att.name}.ctx")
            o = self.fc(ctx2, g.linear_weight(out), g.tensors[out.attrs["bias"]], att.outputs[0], out.outputs[0], S)
            x = self.binary("ADD", o, h, res1.outputs[0], (S, H))
            h_name = ln1.outputs[0]
            h = self.layernorm(x, ln1, (S, H), res1.outputs[0], h_name)
            inter = g.tensors[ffn1.attrs["weight"]].shape[0]
            f1 = self.fc(h, g.linear_weight(ffn1), g.tensors[ffn1.attrs["bias"]], h_name, ffn1.outputs[0], S)
            a1 = self.gelu(f1, ffn1.outputs[0], act, (S, inter))
            f2 = self.fc(a1, g.linear_weight(ffn2), g.tensors[ffn2.attrs["bias"]], act.outputs[0], ffn2.outputs[0], S)
            x = self.binary("ADD", f2, h, res2.outputs[0], (S, H))
            h_name = ln2.outputs[0]
            h = self.layernorm(x, ln2, (S, H), res2.outputs[0], h_name)
        pw_q = self.b.quant(np.array([1.0 / 127]), np.array([0])) if self.int8 else None
        pw = self.op("QUANTIZE", [pool_in], self.act("pool.weights", (P, S), quant=pw_q)) if self.int8 else pool_in
        rows = self.matmul(pw, h, "pool.rows", (P, H))  # one row per mode: sentence-transformers' concatenation
        pooled = self.reshape(rows, "pool.flat", (1, P * H), "pool.rows")
        out_name, out = "pool.rows", pooled
        normalize = bool(pool.attrs.get("normalize")) if pool is not None else False
        if pool is not None and pool.attrs.get("projection"):
            proj = g.tensors[pool.attrs["projection"]]
            out = self.fc(pooled, proj, g.tensors[pool.attrs["projection_bias"]], "pool.rows", "embedding", 1)
            out_name = "embedding"
        data = self.b.model([ids, bias_in, pool_in], [out], "edgebert text encoder firmware export")
        return data, {"out_name": out_name, "normalize": normalize, "pool": mode,
                      "out_dim": int(proj.shape[0]) if out_name == "embedding" else P * H}

    def _word_quant(self, word: np.ndarray) -> Any:  # noqa: ANN401
        if not self.int8:
            return None
        return self.b.quant(np.array([max(float(np.abs(word).max()), 1e-8) / 127.0]), np.array([0]))

    def _word_table(self, word: np.ndarray) -> int:
        scale = max(float(np.abs(word).max()), 1e-8) / 127.0
        codes = np.clip(np.rint(word / scale), -127, 127).astype(np.int8)
        return self.b.tensor("emb.word_table", word.shape, "INT8", codes, self._word_quant(word))


def _rows(g: Graph, node: Node, key: str) -> np.ndarray:
    t = g.tensors[node.attrs[key]].astype(np.float32)
    scale = node.attrs.get(f"{key}_scale")
    return t * g.tensors[scale][:, None].astype(np.float32) if scale else t


def calibrate(graph: Graph, max_len: int, sentences: list[np.ndarray]) -> Ranges:
    """[min, max] of every tensor of the float32 graph over ``sentences`` (LiteRT, all tensors kept)."""
    import warnings

    from firmware_export.tflm import quiet

    data, _ = _Writer(graph, max_len, None).build()
    with warnings.catch_warnings(), quiet():  # "debugging purposes only": calibration is what it is for here
        warnings.simplefilter("ignore")
        it = litert_interpreter(data, preserve_all_tensors=True)
    index = {d["name"]: d["index"] for d in it.get_tensor_details()}
    inputs = {d["name"]: d["index"] for d in it.get_input_details()}
    lo: dict[str, float] = {}
    hi: dict[str, float] = {}
    _, _, _, pool = encoder_structure(graph)
    for feed in text_feeds(sentences, max_len, str(pool.attrs.get("mode", "mean")) if pool is not None else "mean"):
        for name, value in feed.items():
            it.set_tensor(inputs[name], value)
        it.invoke()
        n = int((feed["attention_bias"] == 0).sum())
        for name, i in index.items():
            try:
                v = it.get_tensor(i)
            except ValueError:
                continue
            if v.dtype != np.float32 or v.size == 0:
                continue
            if name.endswith(".masked"):  # padding's -10000 is the mask, not a score
                v = v[..., :n]
            lo[name] = min(lo.get(name, np.inf), float(v.min()))
            hi[name] = max(hi.get(name, -np.inf), float(v.max()))
    ranges = {k: (lo[k], hi[k]) for k in lo}
    for name in [k for k in ranges if k.endswith(".masked")]:
        top = ranges[name][1]
        ranges[name] = (min(ranges[name][0], top - SCORE_SPAN), top)
        ranges[name.replace(".masked", ".mask")] = ranges[name]
    return ranges


def to_tflite_text(graph: Graph, max_len: int, sentences: list[np.ndarray]) -> TextTflite:
    """The int8 .tflite of a BERT graph, calibrated on ``sentences`` (token id arrays)."""
    ranges = calibrate(graph, max_len, sentences)
    writer = _Writer(graph, max_len, ranges)
    data, info = writer.build()
    scale, zp = affine_params(*ranges[info["out_name"]])
    return TextTflite(data, list(writer.b.opcodes), max_len, info["out_dim"], float(scale), int(zp) - 128,
                      info["normalize"], info["pool"])


__all__ = ["MASK_VALUE", "TextTflite", "calibrate", "text_feeds", "to_tflite_text"]
