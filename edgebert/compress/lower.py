"""Lower a compact BERT encoder (torch) to the fp32 graph form.

Two exact rewrites happen here, once, for every emitter: Q, K and V projections are fused into
one (hidden -> 3*hidden) linear, and the 1/sqrt(head_dim) attention scale is folded into the
query weights and bias. Token type 0's embedding is folded into the position table (the
artifacts take no token_type_ids).
"""

from __future__ import annotations

import math

import numpy as np

from edgebert.graph.form import Graph, Node
from edgebert.model.encoder import BertEncoder


def _np(t) -> np.ndarray:  # noqa: ANN001 - torch tensor; torch stays out of the signature
    return t.detach().cpu().numpy().astype(np.float32).copy()


def lower_bert(model: BertEncoder) -> Graph:
    cfg = model.config
    sd = {k: _np(v) for k, v in model.state_dict().items()}
    tensors: dict[str, np.ndarray] = {}
    nodes: list[Node] = []

    def linear(name: str, x: str, w: np.ndarray, b: np.ndarray) -> str:
        tensors[f"{name}.weight"], tensors[f"{name}.bias"] = w, b
        nodes.append(Node("linear", name, (x,), (name,), {"weight": f"{name}.weight", "bias": f"{name}.bias"}))
        return name

    def layernorm(name: str, x: str, prefix: str) -> str:
        tensors[f"{name}.gamma"], tensors[f"{name}.beta"] = sd[f"{prefix}.weight"], sd[f"{prefix}.bias"]
        nodes.append(Node("layernorm", name, (x,), (name,),
                          {"gamma": f"{name}.gamma", "beta": f"{name}.beta", "eps": cfg.layer_norm_eps}))
        return name

    tensors["emb.word"] = sd["embeddings.word_embeddings.weight"]
    tensors["emb.position"] = (sd["embeddings.position_embeddings.weight"]
                               + sd["embeddings.token_type_embeddings.weight"][0])
    nodes.append(Node("embedding", "emb", ("input_ids",), ("emb",),
                      {"word": "emb.word", "position": "emb.position"}))
    h = layernorm("emb.ln", "emb", "embeddings.LayerNorm")

    q_scale = np.float32(1.0 / math.sqrt(cfg.head_dim))
    for i in range(cfg.num_hidden_layers):
        p, n = f"encoder.layer.{i}", f"l{i}"
        att = f"{p}.attention.self"
        w = np.concatenate([sd[f"{att}.query.weight"] * q_scale, sd[f"{att}.key.weight"],
                            sd[f"{att}.value.weight"]], axis=0)  # (3*hidden, hidden)
        b = np.concatenate([sd[f"{att}.query.bias"] * q_scale, sd[f"{att}.key.bias"], sd[f"{att}.value.bias"]])
        qkv = linear(f"{n}.qkv", h, w, b)
        nodes.append(Node("attention", f"{n}.att", (qkv, "attention_mask"), (f"{n}.att",),
                          {"heads": cfg.num_attention_heads,
                           **({"binary": True} if cfg.binary_attention else {})}))
        o = linear(f"{n}.out", f"{n}.att", sd[f"{p}.attention.output.dense.weight"],
                   sd[f"{p}.attention.output.dense.bias"])
        nodes.append(Node("add", f"{n}.res1", (o, h), (f"{n}.res1",)))
        h = layernorm(f"{n}.ln1", f"{n}.res1", f"{p}.attention.output.LayerNorm")
        f1 = linear(f"{n}.ffn1", h, sd[f"{p}.intermediate.dense.weight"], sd[f"{p}.intermediate.dense.bias"])
        if cfg.hidden_act == "relu":
            nodes.append(Node("relu", f"{n}.act", (f1,), (f"{n}.act",)))
        else:
            approx = "none" if cfg.hidden_act == "gelu" else "tanh"
            nodes.append(Node("gelu", f"{n}.act", (f1,), (f"{n}.act",), {"approximate": approx}))
        f2 = linear(f"{n}.ffn2", f"{n}.act", sd[f"{p}.output.dense.weight"], sd[f"{p}.output.dense.bias"])
        nodes.append(Node("add", f"{n}.res2", (f2, h), (f"{n}.res2",)))
        h = layernorm(f"{n}.ln2", f"{n}.res2", f"{p}.output.LayerNorm")

    outputs: tuple[str, ...] = ("last_hidden_state",)
    # the last LayerNorm's output is the model output
    last = nodes[-1]
    nodes[-1] = Node(last.op, last.name, last.inputs, ("last_hidden_state",), last.attrs)
    if model.pooling is not None:
        attrs = {"mode": model.pooling.mode, "normalize": model.pooling.normalize}
        if model.projection is not None:  # a Dense module after the pooling, kept fp32 inside the pool op
            tensors["pool.projection.weight"] = _np(model.projection.weight)
            tensors["pool.projection.bias"] = _np(model.projection.bias)
            attrs.update({"projection": "pool.projection.weight", "projection_bias": "pool.projection.bias"})
        nodes.append(Node("pool", "pool", ("last_hidden_state", "attention_mask"), ("sentence_embedding",), attrs))
        outputs += ("sentence_embedding",)
    meta = {"architecture": "bert", "config": cfg.to_dict(),
            "pooling": None if model.pooling is None else
            {"mode": model.pooling.mode, "normalize": model.pooling.normalize}}
    return Graph(("input_ids", "attention_mask"), outputs, nodes, tensors, meta)


def lower_mlp(cfg, weights: dict[str, np.ndarray]) -> Graph:  # noqa: ANN001 - edgebert.model.tinyml.MlpConfig
    """An MLP (linear/ReLU stack) to the graph form; the last hidden activation is ``features``."""
    tensors: dict[str, np.ndarray] = {}
    nodes: list[Node] = []
    x = "x"
    n_layers = len(cfg.sizes) - 1
    for i in range(n_layers):
        name = f"layers.{i}"
        tensors[f"{name}.weight"] = np.asarray(weights[f"{name}.weight"], np.float32)
        tensors[f"{name}.bias"] = np.asarray(weights[f"{name}.bias"], np.float32)
        out = "output" if i == n_layers - 1 else f"{name}.pre"
        nodes.append(Node("linear", name, (x,), (out,), {"weight": f"{name}.weight", "bias": f"{name}.bias"}))
        if i < n_layers - 1:
            x = "features" if i == n_layers - 2 else f"{name}.act"
            nodes.append(Node("relu", f"{name}.relu", (out,), (x,)))
    meta = {"architecture": "mlp", "config": cfg.to_dict(),
            "output_dims": {"features": cfg.sizes[-2], "output": cfg.n_outputs}, "input_dim": cfg.input_dim}
    return Graph(("x",), ("features", "output"), nodes, tensors, meta)
