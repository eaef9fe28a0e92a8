"""Static int8 post-training quantization of the graph form.

- Weights: symmetric per-output-channel int8 (``quantize.quantize_symmetric``) within integer
  ranges that no CPU's int8 kernel saturates (``saturation.RANGES``; default "pairs": same-sign
  adjacent weight pairs have |w_2j| + |w_2j+1| <= 128, see ``saturation.py``).
- Embedding tables: symmetric int8 with one scale per row.
- Activations: uint8 with a range from calibration (``minmax``, ``percentile`` or ``mse``).
- SmoothQuant (Xiao et al., ICML 2023): per-input-channel factors
  ``s_c = range(x_c)^alpha / max|W_c|^(1-alpha)`` move activation outliers into the weights
  (``range`` = max - min with 0 included, since uint8 activations are asymmetric: GELU output
  is in [-0.17, inf)); the input is multiplied by ``1/s`` (one cheap elementwise Mul) before a
  per-tensor QuantizeLinear.
- Per linear, alpha and the range method are chosen by the least output error on the
  calibration rows (``search_linear``): a local, measured choice instead of one global knob.
- Sensitive linears (chosen by a measured greedy search, see ``choose_dynamic``) keep int8
  weights but quantize their input per call ("dynamic"); LayerNorm, softmax, GELU and the
  attention matmuls stay in fp32.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from edgebert.compress.calibrate import InputStats
from edgebert.compress.saturation import RANGES, IntegerRanges, quantize_pair_limited
from edgebert.errors import ConversionError, InputError
from edgebert.graph.form import Graph, Node
from edgebert.graph.quantize import (
    affine_params,
    dequantize_affine,
    dequantize_symmetric,
    mse_range,
    percentile_range,
    quantize_affine,
    quantize_symmetric,
)

RANGE_METHODS = ("minmax", "percentile", "mse")
AUTO = "auto"
ALPHAS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
_SEARCH_ROWS = 1024
_RANGE_VALUES = 1 << 18


@dataclass(frozen=True)
class Int8Scheme:
    """How to quantize: activation range method, SmoothQuant strength, per-linear overrides.

    ``activation_range`` and ``smoothquant_alpha`` may be ``"auto"``: each linear then takes the
    candidate with the least output error on its calibration rows.
    """

    activation_range: str = AUTO
    percentile: float = 99.99
    smoothquant_alpha: float | str | None = AUTO
    dynamic: tuple[str, ...] = ()
    keep_fp32: tuple[str, ...] = ()
    quantize_embeddings: bool = True
    integer_ranges: str = "pairs"
    bias_correction: bool = True

    def __post_init__(self) -> None:
        if self.integer_ranges not in RANGES:
            raise InputError(f"integer_ranges: expected one of {tuple(RANGES)}, found {self.integer_ranges!r}")
        if self.activation_range not in RANGE_METHODS + (AUTO,):
            raise InputError(f"activation_range: expected one of {RANGE_METHODS + (AUTO,)}, "
                             f"found {self.activation_range!r}")
        alpha = self.smoothquant_alpha
        if alpha not in (None, AUTO) and not (isinstance(alpha, (int, float)) and 0.0 <= alpha <= 1.0):
            raise InputError(f"smoothquant_alpha: expected auto, none or a value in [0, 1], found {alpha!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    def with_(self, **changes: object) -> Int8Scheme:
        return Int8Scheme(**{**self.to_dict(), **changes})

    @property
    def ranges(self) -> IntegerRanges:
        return RANGES[self.integer_ranges]


@dataclass(frozen=True)
class LinearPlan:
    """The choice made for one linear."""

    alpha: float | None
    range_method: str


def smooth_factors(act_range: np.ndarray, weight: np.ndarray, alpha: float) -> np.ndarray:
    """SmoothQuant factors per input channel; weight is (out, in)."""
    w_absmax = np.abs(weight).max(axis=0)  # (in,)
    s = np.power(np.maximum(act_range, 1e-5), alpha) / np.power(np.maximum(w_absmax, 1e-5), 1.0 - alpha)
    s = s / np.exp(np.mean(np.log(s)))  # geometric mean 1: keeps weights and inputs in range
    return np.clip(s, 1e-2, 1e2).astype(np.float32)


def channel_range(stats: InputStats) -> np.ndarray:
    return np.maximum(stats.channel_max, 0.0) - np.minimum(stats.channel_min, 0.0)


def activation_range(stats: InputStats, smooth: np.ndarray | None, method: str,
                     percentile: float = 99.99, qmax: int = 255) -> tuple[float, float]:
    """Calibrated [lo, hi] of the (smoothed) input of a linear."""
    divisor = smooth if smooth is not None else np.float32(1.0)
    lo = float((stats.channel_min / divisor).min())
    hi = float((stats.channel_max / divisor).max())
    if method == "minmax":
        return lo, hi
    values = (stats.sample / divisor).ravel()
    if values.size > _RANGE_VALUES:
        values = np.random.default_rng(0).choice(values, _RANGE_VALUES, replace=False)
    if method == "percentile":
        return percentile_range(values, percentile)
    return mse_range(values, lo, hi, qmax=qmax)


def _candidates(scheme: Int8Scheme) -> list[LinearPlan]:
    alphas = (None,) + ALPHAS if scheme.smoothquant_alpha == AUTO else (scheme.smoothquant_alpha,)
    methods = RANGE_METHODS if scheme.activation_range == AUTO else (scheme.activation_range,)
    return [LinearPlan(a, m) for a in alphas for m in methods]


def quantize_weight(w: np.ndarray, ranges: IntegerRanges, importance: np.ndarray | None = None,
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(out, in) weights -> per-output-channel int8 codes within ``ranges`` and their scales.
    ``importance`` (in,) weighs input channels when a same-sign pair must give up magnitude."""
    if ranges.pair_limit is None:
        return quantize_symmetric(w, axis=0, qmax=ranges.weight_max)
    return quantize_pair_limited(w, ranges.pair_limit, ranges.weight_max, importance)


def _importance(stats: InputStats, smooth: np.ndarray | None) -> np.ndarray:
    """Mean square of each (smoothed) input channel: how much a weight error there costs."""
    x = stats.sample[:_SEARCH_ROWS]
    if smooth is not None:
        x = x / smooth
    return np.mean(np.square(x, dtype=np.float64), axis=0)


def search_linear(w: np.ndarray, stats: InputStats, scheme: Int8Scheme) -> LinearPlan:
    """The candidate plan with the least mean squared output error on calibration rows."""
    candidates = _candidates(scheme)
    if len(candidates) == 1:
        return candidates[0]
    ranges = scheme.ranges
    x = stats.sample[:_SEARCH_ROWS]  # (rows, in)
    y = x @ w.T
    errors = []
    for alpha in dict.fromkeys(p.alpha for p in candidates):  # the weights depend on alpha only
        smooth = smooth_factors(channel_range(stats), w, alpha) if alpha else None
        ws = w * smooth[None, :] if smooth is not None else w
        wq = dequantize_symmetric(*quantize_weight(ws, ranges, _importance(stats, smooth)), axis=0)
        xs = x / smooth if smooth is not None else x
        for plan in (p for p in candidates if p.alpha == alpha):
            lo_hi = activation_range(stats, smooth, plan.range_method, scheme.percentile, ranges.act_max)
            scale, zp = affine_params(*lo_hi, ranges.act_max)
            xq = dequantize_affine(quantize_affine(xs, scale, zp), scale, zp)
            errors.append((float(np.mean((xq @ wq.T - y) ** 2)), plan))
    return min(errors, key=lambda e: e[0])[1]


def quantize_linear(g: Graph, node: Node, stats: InputStats, scheme: Int8Scheme) -> Node:
    if node.name in scheme.keep_fp32:
        return node
    a = dict(node.attrs)
    w = w32 = g.tensors[a["weight"]]  # (out, in)
    ranges = scheme.ranges
    if node.name in scheme.dynamic:
        codes, scales = quantize_weight(w, ranges, _importance(stats, None))
        g.tensors[a["weight"]], g.tensors[f"{node.name}.weight_scale"] = codes, scales
        a.update(weight_scale=f"{node.name}.weight_scale", act="dynamic")
        return Node(node.op, node.name, node.inputs, node.outputs, a)
    plan = search_linear(w, stats, scheme)
    smooth = smooth_factors(channel_range(stats), w, plan.alpha) if plan.alpha else None
    if smooth is not None:
        w = w * smooth[None, :]
        g.tensors[f"{node.name}.input_mul"] = (1.0 / smooth).astype(np.float32)
        a["input_mul"] = f"{node.name}.input_mul"
    codes, scales = quantize_weight(w, ranges, _importance(stats, smooth))
    g.tensors[a["weight"]], g.tensors[f"{node.name}.weight_scale"] = codes, scales
    scale, zp = affine_params(*activation_range(stats, smooth, plan.range_method, scheme.percentile, ranges.act_max),
                              ranges.act_max)
    a.update(weight_scale=f"{node.name}.weight_scale", act="static", act_scale=float(scale),
             act_zero_point=int(zp), smoothquant_alpha=plan.alpha, range_method=plan.range_method)
    out = Node(node.op, node.name, node.inputs, node.outputs, a)
    if scheme.bias_correction:
        out = correct_bias(g, out, w32, stats)
    return out


def correct_bias(g: Graph, node: Node, w32: np.ndarray, stats: InputStats) -> Node:
    """Bias correction (Nagel et al., "Data-Free Quantization", ICCV 2019, with calibration data):
    the weights' rounding shifts each output by ``E[x] @ (W_q - W).T`` on average; subtract it.

    Only the weight error is corrected: the mean error of clipped activations is dominated by a
    few outlier tokens, and moving every token's bias by it was measured to wreck the model."""
    a = dict(node.attrs)
    w_q = g.linear_weight(node)  # (out, in), acting on the unsmoothed input
    mean_x = np.concatenate(stats.rows).mean(axis=0, dtype=np.float64)  # (in,)
    shift = mean_x @ (w_q.astype(np.float64) - w32).T  # (out,)
    bias = g.tensors[a["bias"]] if a.get("bias") else np.zeros(w32.shape[0], np.float32)
    a["bias"] = a.get("bias") or f"{node.name}.bias"
    g.tensors[a["bias"]] = (bias - shift).astype(np.float32)  # g.tensors is this graph's own dict
    return Node(node.op, node.name, node.inputs, node.outputs, a)


def quantize_embedding(g: Graph, node: Node, keys: tuple[str, ...] = ("word", "position")) -> Node:
    a = dict(node.attrs)
    for key in keys:
        codes, scales = quantize_symmetric(g.tensors[a[key]], axis=0)  # one scale per row
        g.tensors[a[key]], g.tensors[f"{a[key]}.scale"] = codes, scales
        a[f"{key}_scale"] = f"{a[key]}.scale"
    return Node(node.op, node.name, node.inputs, node.outputs, a)


def quantize_graph(fp32: Graph, stats: dict[str, InputStats], scheme: Int8Scheme) -> Graph:
    """Return an int8 copy of an fp32 graph given calibration statistics."""
    g = fp32.copy()
    for node in fp32.nodes:
        if node.op == "linear":
            if node.name not in stats:
                raise ConversionError(f"{node.name}: expected calibration statistics, found none")
            g.replace(quantize_linear(g, node, stats[node.name], scheme))
        elif node.op == "embedding" and scheme.quantize_embeddings:
            g.replace(quantize_embedding(g, node))
    g.meta = {**fp32.meta, "precision": "int8", "scheme": scheme.to_dict()}
    return g


def choose_dynamic(fp32: Graph, stats: dict[str, InputStats], scheme: Int8Scheme,
                   score: Callable[[Graph], float], budget: int) -> tuple[Int8Scheme, list[tuple[str, float]]]:
    """Greedy mixed precision: switch the linear whose dynamic quantization most improves
    ``score`` (higher is better; e.g. mean cosine on calibration text), up to ``budget`` times.
    Returns the final scheme and the (linear, score) trail."""
    current = scheme
    best_score = score(quantize_graph(fp32, stats, current))
    trail = [("(all static)", best_score)]
    for _ in range(budget):
        candidates = [n.name for n in fp32.linears() if n.name not in current.dynamic + current.keep_fp32]
        if not candidates:
            break
        scored = []
        for name in candidates:
            trial = current.with_(dynamic=current.dynamic + (name,))
            scored.append((score(quantize_graph(fp32, stats, trial)), name))
        top_score, top_name = max(scored)
        if top_score <= best_score:
            break
        current = current.with_(dynamic=current.dynamic + (top_name,))
        best_score = top_score
        trail.append((top_name, top_score))
    return current, trail
