"""ONNX emitter for the graph form, in standard ONNX ops (opset 17) that ONNX Runtime fuses.

A static int8 linear becomes ``QuantizeLinear -> MatMulInteger -> Cast -> Mul -> Add``, which
ONNX Runtime's graph optimizer fuses into one ``MatMulIntegerToFloat`` kernel (u8 x s8 with the
scales and bias applied to the int32 accumulator); a dynamic one uses ``DynamicQuantizeLinear``
instead of the calibrated QuantizeLinear. LayerNorm is ``LayerNormalization``; GELU is written
with ``Erf`` (fused by ORT into ``Gelu``); attention stays in fp32.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgebert.errors import ConversionError
from edgebert.graph.form import Graph, Node, pooling_modes

OPSET = 17


class _Builder:
    def __init__(self, g: Graph, fused: bool) -> None:
        self.g = g
        self.fused = fused
        self.nodes: list[onnx.NodeProto] = []
        self.inits: dict[str, onnx.TensorProto] = {}
        self._count = 0

    def const(self, name: str, value: np.ndarray) -> str:
        if name not in self.inits:
            self.inits[name] = numpy_helper.from_array(np.asarray(value), name)
        return name

    def op(self, op_type: str, inputs: list[str], name: str, n_out: int = 1, **attrs: object) -> list[str]:
        self._count += 1
        base = f"{name}/{op_type}{self._count}"
        outs = [f"{base}:{i}" for i in range(n_out)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=base, **attrs))
        return outs


def _embedding(b: _Builder, n: Node, ids: str) -> str:
    g, a = b.g, n.attrs

    def gather(key: str, index: str) -> str:
        table = b.const(a[key], g.tensors[a[key]])
        rows = b.op("Gather", [table, index], f"{n.name}.{key}")[0]
        if not a.get(f"{key}_scale"):
            return rows
        rows = b.op("Cast", [rows], f"{n.name}.{key}", to=TensorProto.FLOAT)[0]
        scale = b.const(a[f"{key}_scale"], g.tensors[a[f"{key}_scale"]])
        row_scale = b.op("Gather", [scale, index], f"{n.name}.{key}_scale")[0]
        row_scale = b.op("Unsqueeze", [row_scale, b.const("axes_last", np.array([-1], np.int64))],
                         f"{n.name}.{key}_scale")[0]
        return b.op("Mul", [rows, row_scale], f"{n.name}.{key}")[0]

    word = gather("word", ids)  # (batch, seq, hidden)
    shape = b.op("Shape", [ids], n.name)[0]
    seq = b.op("Gather", [shape, b.const("one_i64", np.array(1, np.int64))], n.name)[0]
    positions = b.op("Range", [b.const("zero_i64", np.array(0, np.int64)), seq,
                               b.const("one_i64", np.array(1, np.int64))], n.name)[0]
    pos = gather("position", positions)  # (seq, hidden)
    return b.op("Add", [word, pos], n.name)[0]


def _linear(b: _Builder, n: Node, x: str) -> str:
    g, a = b.g, n.attrs
    w = g.tensors[a["weight"]]
    act = a.get("act", "none")
    bias = b.const(a["bias"], g.tensors[a["bias"]]) if a.get("bias") else None
    if act == "none":
        wt = b.const(f"{a['weight']}.T", np.ascontiguousarray(w.T))  # (in, out)
        y = b.op("MatMul", [x, wt], n.name)[0]
    else:
        wt = b.const(f"{a['weight']}.T", np.ascontiguousarray(w.T))  # int8 (in, out)
        w_scale = g.tensors[a["weight_scale"]]
        if act == "static":
            a_scale, zp = np.float32(a["act_scale"]), np.uint8(a["act_zero_point"])
            if a.get("input_mul"):  # SmoothQuant: x / s, per input channel
                x = b.op("Mul", [x, b.const(a["input_mul"], g.tensors[a["input_mul"]])], n.name)[0]
            q = b.op("QuantizeLinear", [x, b.const(f"{n.name}.in_scale", a_scale),
                                        b.const(f"{n.name}.in_zp", zp)], n.name)[0]
            zp_name = b.const(f"{n.name}.in_zp_scalar", zp)
            if b.fused:  # one ORT kernel: int8 GEMM, then scales and bias on the int32 accumulator
                inputs = [q, wt, b.const(f"{n.name}.a_scale", a_scale), b.const(f"{n.name}.w_scale", w_scale),
                          zp_name, "", bias or ""]
                return b.op("MatMulIntegerToFloat", inputs, n.name, domain="com.microsoft")[0]
            acc = b.op("MatMulInteger", [q, wt, zp_name], n.name)[0]
            acc = b.op("Cast", [acc], n.name, to=TensorProto.FLOAT)[0]
            y = b.op("Mul", [acc, b.const(f"{n.name}.out_scale", (a_scale * w_scale).astype(np.float32))],
                     n.name)[0]
        elif act == "dynamic":
            q, a_scale_v, zp_v = b.op("DynamicQuantizeLinear", [x], n.name, n_out=3)
            acc = b.op("MatMulInteger", [q, wt, zp_v], n.name)[0]
            acc = b.op("Cast", [acc], n.name, to=TensorProto.FLOAT)[0]
            scale = b.op("Mul", [a_scale_v, b.const(f"{n.name}.w_scale", w_scale)], n.name)[0]
            y = b.op("Mul", [acc, scale], n.name)[0]
        else:
            raise ConversionError(f"{n.name}: unknown act mode {act!r}")
    return b.op("Add", [y, bias], n.name)[0] if bias else y


def _bi_attention(b: _Builder, n: Node, q: str, kt: str, v: str, mask_f: str) -> str:
    """Bi-Attention (``graph.binarize.bi_attention``) in standard ops: ±1 signs (x >= 0 is +1, as
    ONNX's Sign is not: it gives 0 at 0), 0/1 weights on the real keys, the mean of binarized values."""
    one, minus = b.const("one_f", np.float32(1.0)), b.const("minus_one_f", np.float32(-1.0))
    zero = b.const("zero_f", np.float32(0.0))

    def signs(x: str) -> str:
        return b.op("Where", [b.op("GreaterOrEqual", [x, zero], n.name)[0], one, minus], n.name)[0]

    scores = b.op("MatMul", [signs(q), signs(kt)], n.name)[0]  # integers, exact in float32
    weights = b.op("Cast", [b.op("GreaterOrEqual", [scores, zero], n.name)[0]], n.name, to=TensorProto.FLOAT)[0]
    keys = b.op("Unsqueeze", [mask_f, b.const("axes12", np.array([1, 2], np.int64))], n.name)[0]  # (b, 1, 1, s)
    weights = b.op("Mul", [weights, keys], n.name)[0]
    v_scale = b.op("ReduceMean", [b.op("Abs", [v], n.name)[0]], n.name, axes=[-1], keepdims=1)[0]
    vb = b.op("Mul", [signs(v), v_scale], n.name)[0]
    count = b.op("ReduceSum", [weights, b.const("axes_last", np.array([-1], np.int64))], n.name, keepdims=1)[0]
    count = b.op("Max", [count, one], n.name)[0]
    return b.op("Div", [b.op("MatMul", [weights, vb], n.name)[0], count], n.name)[0]


def _attention(b: _Builder, n: Node, qkv: str, mask_add: str, mask_f: str) -> str:
    heads = int(n.attrs["heads"])
    shape5 = b.const(f"{n.name}.shape5", np.array([0, 0, 3, heads, -1], np.int64))
    parts = b.op("Reshape", [qkv, shape5], n.name)[0]  # (b, s, 3, heads, hd)
    parts = b.op("Transpose", [parts], n.name, perm=[2, 0, 3, 1, 4])[0]  # (3, b, heads, s, hd)
    q, k, v = b.op("Split", [parts], n.name, n_out=3, axis=0)
    sq = b.const("axes0", np.array([0], np.int64))
    q, k, v = (b.op("Squeeze", [t, sq], n.name)[0] for t in (q, k, v))
    kt = b.op("Transpose", [k], n.name, perm=[0, 1, 3, 2])[0]
    if n.attrs.get("binary"):
        ctx = _bi_attention(b, n, q, kt, v, mask_f)
    else:
        scores = b.op("MatMul", [q, kt], n.name)[0]  # (b, heads, s, s); q is pre-scaled
        scores = b.op("Add", [scores, mask_add], n.name)[0]
        probs = b.op("Softmax", [scores], n.name, axis=-1)[0]
        ctx = b.op("MatMul", [probs, v], n.name)[0]  # (b, heads, s, hd)
    ctx = b.op("Transpose", [ctx], n.name, perm=[0, 2, 1, 3])[0]
    return b.op("Reshape", [ctx, b.const(f"{n.name}.shape3", np.array([0, 0, -1], np.int64))], n.name)[0]


def _pool(b: _Builder, n: Node, h: str, mask_f: str) -> str:
    mode, normalize = n.attrs["mode"], n.attrs["normalize"]
    m = b.op("Unsqueeze", [mask_f, b.const("axes_last", np.array([-1], np.int64))], n.name)[0]  # (b, s, 1)
    axis1 = b.const("axes1", np.array([1], np.int64))
    parts = []
    for part in pooling_modes(mode):  # several modes concatenate, in their order
        if part == "cls":
            parts.append(b.op("Gather", [h, b.const("zero_i64", np.array(0, np.int64))], n.name, axis=1)[0])
        elif part == "max":
            neg = b.op("Mul", [b.op("Sub", [b.const("one_f", np.float32(1.0)), m], n.name)[0],
                               b.const("mask_value", np.float32(-1e4))], n.name)[0]
            parts.append(b.op("ReduceMax", [b.op("Add", [h, neg], n.name)[0]], n.name, axes=[1], keepdims=0)[0])
        else:
            total = b.op("ReduceSum", [b.op("Mul", [h, m], n.name)[0], axis1], n.name, keepdims=0)[0]
            count = b.op("ReduceSum", [m, axis1], n.name, keepdims=0)[0]
            count = b.op("Max", [count, b.const("count_floor", np.float32(1e-9))], n.name)[0]
            parts.append(b.op("Div", [total, count], n.name)[0])
    out = parts[0] if len(parts) == 1 else b.op("Concat", parts, n.name, axis=-1)[0]
    if n.attrs.get("projection"):  # a sentence-transformers Dense module after the pooling
        w = b.const(f"{n.name}.projection.weight_t", np.ascontiguousarray(b.g.tensors[n.attrs["projection"]].T))
        out = b.op("MatMul", [out, w], n.name)[0]
        out = b.op("Add", [out, b.const(f"{n.name}.projection.bias", b.g.tensors[n.attrs["projection_bias"]])],
                   n.name)[0]
    if normalize:
        norm = b.op("ReduceL2", [out], n.name, axes=[-1], keepdims=1)[0]
        norm = b.op("Max", [norm, b.const("norm_floor", np.float32(1e-12))], n.name)[0]
        out = b.op("Div", [out, norm], n.name)[0]
    return out


def to_onnx(g: Graph, producer_version: str = "0", fused: bool = True) -> onnx.ModelProto:
    """Build an ONNX model with inputs input_ids/attention_mask and the graph's outputs.

    ``fused=True`` writes static int8 linears as ONNX Runtime's ``com.microsoft``
    ``MatMulIntegerToFloat`` (ORT cannot fuse them itself: its fusion wants the scale product
    as a run-time Mul, which constant folding removes first); ``fused=False`` keeps to
    standard ONNX ops only, for other runtimes.
    """
    b = _Builder(g, fused)
    env: dict[str, str] = {name: name for name in g.inputs}
    mask_f = mask_add = ""
    if "attention_mask" in g.inputs:
        mask_f = b.op("Cast", ["attention_mask"], "mask", to=TensorProto.FLOAT)[0]  # (b, s)
        inv = b.op("Sub", [b.const("one_f", np.float32(1.0)), mask_f], "mask")[0]
        mask_add = b.op("Mul", [inv, b.const("mask_value", np.float32(-1e4))], "mask")[0]
        mask_add = b.op("Unsqueeze", [mask_add, b.const("axes12", np.array([1, 2], np.int64))], "mask")[0]
    for n in g.nodes:
        ins = [env[i] for i in n.inputs]
        a = n.attrs
        if n.op == "embedding":
            out = _embedding(b, n, ins[0])
        elif n.op == "layernorm":
            out = b.op("LayerNormalization", [ins[0], b.const(a["gamma"], g.tensors[a["gamma"]]),
                                              b.const(a["beta"], g.tensors[a["beta"]])],
                       n.name, axis=-1, epsilon=float(a["eps"]))[0]
        elif n.op == "linear":
            out = _linear(b, n, ins[0])
        elif n.op == "attention":
            out = _attention(b, n, ins[0], mask_add, mask_f)
        elif n.op == "add":
            out = b.op("Add", ins, n.name)[0]
        elif n.op == "gelu":
            if a.get("approximate") == "tanh":
                c = np.float32(math.sqrt(2.0 / math.pi))
                cube = b.op("Mul", [b.op("Mul", [ins[0], ins[0]], n.name)[0], ins[0]], n.name)[0]
                inner = b.op("Add", [ins[0], b.op("Mul", [cube, b.const("gelu_k", np.float32(0.044715))],
                                                  n.name)[0]], n.name)[0]
                t = b.op("Tanh", [b.op("Mul", [inner, b.const("gelu_c", c)], n.name)[0]], n.name)[0]
            else:
                scaled = b.op("Div", [ins[0], b.const("sqrt2", np.float32(math.sqrt(2.0)))], n.name)[0]
                t = b.op("Erf", [scaled], n.name)[0]
            onep = b.op("Add", [t, b.const("one_f", np.float32(1.0))], n.name)[0]
            half = b.op("Mul", [ins[0], b.const("half_f", np.float32(0.5))], n.name)[0]
            out = b.op("Mul", [half, onep], n.name)[0]
        elif n.op == "relu":
            out = b.op("Relu", ins, n.name)[0]
        elif n.op == "pool":
            out = _pool(b, n, ins[0], mask_f)
        else:  # pragma: no cover
            raise ConversionError(n.op)
        for o in n.outputs:
            env[o] = out
    hidden = g.meta.get("config", {}).get("hidden_size")
    outputs = []
    for name in g.outputs:
        # make the graph output carry its public name
        producer = next(p for p in b.nodes if env[name] in p.output)
        producer.output[list(producer.output).index(env[name])] = name
        for p in b.nodes:
            for i, inp in enumerate(p.input):
                if inp == env[name]:
                    p.input[i] = name
        if name in g.meta.get("output_dims", {}):
            dims = ["batch", g.meta["output_dims"][name]]
        else:
            dims = ["batch", "seq", hidden] if name == "last_hidden_state" else ["batch", hidden]
        outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, dims))
    inputs = [helper.make_tensor_value_info(i, TensorProto.INT64, ["batch", "seq"]) if i in ("input_ids", "attention_mask")
              else helper.make_tensor_value_info(i, TensorProto.FLOAT, ["batch", g.meta.get("input_dim")])
              for i in g.inputs]
    graph = helper.make_graph(b.nodes, "edgebert", inputs, outputs, list(b.inits.values()))
    opsets = [helper.make_opsetid("", OPSET)]
    if any(n.domain == "com.microsoft" for n in b.nodes):
        opsets.append(helper.make_opsetid("com.microsoft", 1))
    model = helper.make_model(graph, opset_imports=opsets,
                              producer_name="edgebert", producer_version=producer_version)
    model.ir_version = 8
    return model
