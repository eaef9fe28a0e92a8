"""Integer ranges that no x86 int8 kernel saturates (the converter's choice of weight codes).

ONNX Runtime's u8 x s8 kernels on AVX2 without VNNI add adjacent products pairwise into a
saturating int16 (``edgebert.graph.avx2`` emulates them exactly). Activation codes are always in
[0, 255] at run time (``QuantizeLinear`` and ``DynamicQuantizeLinear`` saturate to uint8 whatever
the calibration said), so safety must come from the weights. With activation codes in [0, A] a
pair's sum lies in ``[-A * (n_2j + n_2j+1), A * (p_2j + p_2j+1)]`` where p and n are the positive
and negative parts of the two weight codes: it never saturates when, for every output channel
and every pair of same-sign weights, ``|w_2j| + |w_2j+1| <= 32767 // A`` (128 for A = 255).
Opposite-sign pairs and unpaired weights never saturate (``255 * 127 = 32,385``).

Pure functions on numpy arrays, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgebert.errors import InputError
from edgebert.graph.avx2 import INT16_MAX, UINT8_MAX, _pairs
from edgebert.graph.quantize import symmetric_scales


@dataclass(frozen=True)
class IntegerRanges:
    """The integer codes a quantized linear may use.

    Weight codes lie in ``[-weight_max, weight_max]``, activation codes in ``[0, act_max]`` (the
    calibrated range maps onto it; run-time codes still reach 255), and when ``pair_limit`` is
    set, every pair of same-sign weights (2j, 2j+1) of an output channel has
    ``|w_2j| + |w_2j+1| <= pair_limit``.
    """

    name: str
    weight_max: int = 127
    act_max: int = UINT8_MAX
    pair_limit: int | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.weight_max <= 127:
            raise InputError(f"weight_max: expected 1..127, found {self.weight_max}")
        if not 1 <= self.act_max <= UINT8_MAX:
            raise InputError(f"act_max: expected 1..255, found {self.act_max}")
        if self.pair_limit is not None and not 1 <= self.pair_limit <= 2 * self.weight_max:
            raise InputError(f"pair_limit: expected 1..{2 * self.weight_max} or none, found {self.pair_limit}")

    @property
    def max_pair_magnitude(self) -> int:
        """The largest |pair sum| of weight codes times 255 (run-time activation codes)."""
        return UINT8_MAX * min(2 * self.weight_max, self.pair_limit or 2 * self.weight_max)

    @property
    def safe(self) -> bool:
        """True when no u8 input can saturate a pair, whatever the weights within these ranges."""
        return self.max_pair_magnitude <= INT16_MAX

    def to_dict(self) -> dict:
        return {"name": self.name, "weight_codes": [-self.weight_max, self.weight_max],
                "activation_codes": [0, self.act_max], "same_sign_pair_limit": self.pair_limit,
                "saturation_free_by_construction": self.safe}


# The forms measured in docs/converter.md; "pairs" is the default.
RANGES = {
    "pairs": IntegerRanges("pairs", 127, UINT8_MAX, INT16_MAX // UINT8_MAX),  # 8-bit, pair-limited
    "w7": IntegerRanges("w7", 64, UINT8_MAX),  # 2 x 255 x 64 = 32,640
    "a7": IntegerRanges("a7", 127, 128),  # calibrated range on [0, 128]; run-time codes may still reach 255
    "full": IntegerRanges("full", 127, UINT8_MAX),  # the pre-0.2 form: saturates on AVX2 without VNNI
}


def limit_pairs(real: np.ndarray, limit: int, weight_max: int = 127,
                importance: np.ndarray | None = None) -> np.ndarray:
    """Round (out, in) real-valued codes to int8 so that same-sign pairs have |c1| + |c2| <= limit.

    Pairs within the limit are plainly rounded. A same-sign pair over it is moved onto the line
    |c1| + |c2| = limit with the least weighted squared error ``h1 e1^2 + h2 e2^2`` (``importance``
    h per input channel, e.g. the mean square of the input it multiplies): the excess d is split
    as ``e1 = d h2 / (h1 + h2)``, so the channel that matters more keeps more of its value.
    """
    real = np.asarray(real, np.float64)
    n_in = real.shape[1]
    codes = np.clip(np.rint(real), -weight_max, weight_max)
    p = _pairs(codes)  # (out, pairs, 2), a view when in is even
    r = _pairs(real)
    c1, c2 = p[..., 0], p[..., 1]
    over = (c1 * c2 > 0) & (np.abs(c1) + np.abs(c2) > limit)
    if not over.any():
        return codes.astype(np.int8)
    h = np.ones(p.shape[1] * 2) if importance is None else np.asarray(importance, np.float64)
    if h.size < p.shape[1] * 2:
        h = np.concatenate([h, [1.0]])
    h = np.maximum(h.reshape(-1, 2), 1e-30)  # (pairs, 2)
    out_idx, pair_idx = np.nonzero(over)
    m1 = np.minimum(np.abs(r[out_idx, pair_idx, 0]), weight_max)
    m2 = np.minimum(np.abs(r[out_idx, pair_idx, 1]), weight_max)
    h1, h2 = h[pair_idx, 0], h[pair_idx, 1]
    excess = m1 + m2 - limit
    t1 = np.clip(m1 - excess * h2 / (h1 + h2), 0, min(limit, weight_max))
    t2 = np.clip(m2 - excess * h1 / (h1 + h2), 0, min(limit, weight_max))
    k1 = np.rint(t1)
    k2 = np.minimum(np.rint(t2), limit - k1)
    sign = np.sign(c1[out_idx, pair_idx])
    p = p.copy()
    p[out_idx, pair_idx, 0] = sign * k1
    p[out_idx, pair_idx, 1] = sign * k2
    return p.reshape(p.shape[0], -1)[:, :n_in].astype(np.int8)


def quantize_pair_limited(w: np.ndarray, limit: int, weight_max: int = 127, importance: np.ndarray | None = None,
                          grid: int = 17) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-output-channel int8 codes of (out, in) weights whose same-sign pairs keep
    ``|c_2j| + |c_2j+1| <= limit``. Returns (codes, scales).

    Each output channel takes the scale ``absmax / q`` (q on a grid from ``limit // 2``, where no
    pair can exceed the limit, up to ``weight_max``, the finest step) whose pair-limited codes
    (``limit_pairs``) have the least importance-weighted squared error: a channel with few
    large same-sign neighbours keeps 8-bit resolution and gives up a little on those pairs; one
    with many gives up a bit of resolution instead.
    """
    w = np.asarray(w, np.float32)
    h = np.ones(w.shape[1]) if importance is None else np.asarray(importance, np.float64)
    absmax = np.abs(w).max(axis=1)
    codes = np.zeros(w.shape, np.int8)
    scales = np.ones(w.shape[0], np.float32)
    best = np.full(w.shape[0], np.inf)
    for q in np.unique(np.linspace(limit // 2, weight_max, grid).round().astype(int)):
        sc = symmetric_scales(absmax, int(q))
        c = limit_pairs(w / sc[:, None], limit, int(q), importance)
        err = ((w - c * sc[:, None]) ** 2 * h).sum(axis=1)
        better = err < best
        codes[better], scales[better], best[better] = c[better], sc[better], err[better]
    return codes, scales


