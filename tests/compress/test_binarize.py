"""1-bit weights: the packing, the integer cores against plain matrix products, the C kernels bit
for bit against the numpy oracle, and the straight-through estimator's forward and gradient."""

from __future__ import annotations

import ctypes
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch

from edgebert.compress.ste import binarize_activation, binarize_weight, sign_ste
from edgebert.errors import InputError
from edgebert.graph import binarize as bz
from firmware_export import toolchain

SHAPES = [(1, 1), (3, 7), (5, 8), (4, 13), (16, 64), (9, 384), (7, 1000)]


@pytest.mark.parametrize("out, n", SHAPES)
def test_packing_round_trips_and_rows_take_one_bit_per_input(out: int, n: int) -> None:
    rng = np.random.default_rng(n)
    signs = rng.random((out, n)) < 0.5
    bits = bz.pack_signs(signs)
    assert bits.shape == (out, (n + 7) // 8) and bits.dtype == np.uint8
    assert np.array_equal(bz.unpack_signs(bits, n), np.where(signs, 1, -1))
    if n % 8:
        assert not (bits[:, -1] >> (n % 8)).any()  # padding bits are zero


def test_binarize_recovers_a_centred_scaled_sign_with_the_least_squares_scale() -> None:
    rng = np.random.default_rng(0)
    signs = np.where(rng.random((6, 40)) < 0.5, 1.0, -1.0)
    signs[:, :20], signs[:, 20:] = 1.0, -1.0  # balanced rows: their mean is the centre exactly
    centre, scale = rng.normal(size=6), rng.random(6) + 0.1
    b = bz.binarize(centre[:, None] + scale[:, None] * signs, per_row=True)
    assert np.allclose(b.centre, centre, atol=1e-6) and np.allclose(b.scale, scale, atol=1e-6)
    assert np.array_equal(bz.unpack_signs(b.bits, 40), signs.astype(np.int8))
    whole = bz.binarize(0.3 + 0.7 * signs)  # 40-input rows: one scale and centre for the matrix
    assert whole.scale.shape == whole.centre.shape == (1,) and np.allclose([whole.centre[0], whole.scale[0]], [0.3, 0.7])
    assert np.allclose(bz.dequantize(whole), 0.3 + 0.7 * signs, atol=1e-6)
    assert not bz.scale_per_row(bz.PER_ROW_MIN_INPUTS - 1) and bz.scale_per_row(bz.PER_ROW_MIN_INPUTS)
    w = rng.normal(size=(5, 33))
    b = bz.binarize(w, per_row=True)
    rest = w - b.centre[:, None]
    err = ((rest - b.scale[:, None] * bz.unpack_signs(b.bits, 33)) ** 2).sum()
    for factor in (0.99, 1.01):  # the mean absolute deviation minimizes the squared error of a scaled sign
        assert err < ((rest - factor * b.scale[:, None] * bz.unpack_signs(b.bits, 33)) ** 2).sum()
    with pytest.raises(InputError, match="finite"):
        bz.binarize(np.array([[0.0, np.nan]]))


@pytest.mark.parametrize("out, n", SHAPES)
def test_the_integer_cores_are_the_plain_products(out: int, n: int) -> None:
    rng = np.random.default_rng(out * n)
    b = bz.binarize(rng.normal(size=(out, n)))
    signs = bz.unpack_signs(b.bits, n).astype(np.int64)
    x = rng.integers(0, 256, (3, n)).astype(np.uint8)
    acc, total = bz.w1a8_core(x, 131, b.bits, n)
    assert np.array_equal(acc, (x.astype(np.int64) - 131) @ signs.T)
    assert np.array_equal(total, (x.astype(np.int64) - 131).sum(1))
    bias = rng.normal(size=out).astype(np.float32)
    want = ((x.astype(np.float32) - 131) * np.float32(0.02)) @ bz.dequantize(b).T + bias
    got = bz.w1a8_linear(x, 0.02, 131, b, bias)
    # float32 sums of n products: a few ulps of the largest partial sum
    assert np.abs(got - want).max() <= 8 * n * np.finfo(np.float32).eps * (np.abs(want).max() + 1)
    a_signs = rng.random((4, n)) < 0.5
    assert np.array_equal(bz.w1a1_core(bz.pack_signs(a_signs), b.bits, n),
                          np.where(a_signs, 1, -1) @ signs.T)


def _kernels(tmp: Path) -> ctypes.CDLL:
    src = tmp / "src"
    src.mkdir()
    header = resources.files("edgebert.runtime").joinpath("c/eb_binary.h").read_text(encoding="utf-8")
    (src / "eb_binary.h").write_text(header)
    (src / "k.c").write_text("""#include "eb_binary.h"
int32_t w1a8(const uint8_t *x, int n, int32_t zp, const uint8_t *bits, int n_out, int16_t *table, int32_t *acc) {
    return eb_w1a8_token(x, n, zp, bits, n_out, table, acc);
}
void w1a1(const uint8_t *a, int n, const uint8_t *bits, int n_out, int32_t *acc) { eb_w1a1_token(a, n, bits, n_out, acc); }
void pack_u8(const uint8_t *x, int n, int32_t zp, uint8_t *bits) { eb_pack_signs_u8(x, n, zp, bits); }
float pack_f32(const float *x, int n, uint8_t *bits) { return eb_pack_signs_f32(x, n, bits); }
""")
    lib = ctypes.CDLL(str(toolchain.host_library(src, ["k.c"], tmp / "k.so")))
    lib.pack_f32.restype = ctypes.c_float
    return lib


def _p(a: np.ndarray) -> ctypes.c_void_p:
    return ctypes.c_void_p(a.ctypes.data)


def test_the_c_kernels_match_the_numpy_oracle_bit_for_bit(tmp_path: Path) -> None:
    lib = _kernels(tmp_path)
    for out, n in SHAPES + [(1536, 384), (384, 1536)]:
        rng = np.random.default_rng(out + n)
        b = bz.binarize(rng.normal(size=(out, n)))
        for zp in (0, 128, 255):
            x = rng.integers(0, 256, n).astype(np.uint8)
            acc = np.zeros(out, np.int32)
            table = np.zeros(16 * ((n + 3) // 4), np.int16)
            total = lib.w1a8(_p(x), n, zp, _p(b.bits), out, _p(table), _p(acc))
            want_acc, want_total = bz.w1a8_core(x[None], zp, b.bits, n)
            assert np.array_equal(acc, want_acc[0]) and total == want_total[0]
            packed = np.zeros((n + 7) // 8, np.uint8)
            lib.pack_u8(_p(x), n, zp, _p(packed))
            assert np.array_equal(packed, bz.pack_signs((x.astype(np.int32) >= zp)[None])[0])
            lib.w1a1(_p(packed), n, _p(b.bits), out, _p(acc))
            assert np.array_equal(acc, bz.w1a1_core(packed[None], b.bits, n)[0])
        xf = rng.normal(size=n).astype(np.float32)
        scale = lib.pack_f32(_p(xf), n, _p(packed))
        want_bits, want_scale = bz.binarize_activations(xf[None])
        assert np.array_equal(packed, want_bits[0])
        assert abs(scale - want_scale[0]) <= n * np.finfo(np.float32).eps * want_scale[0]  # float32 summation order


def test_the_straight_through_estimator_exports_what_it_trains() -> None:
    torch.manual_seed(0)
    w = (torch.randn(6, 50) * 0.05 + 0.01).requires_grad_()
    fwd = binarize_weight(w)
    b = bz.binarize(w.detach().numpy())
    assert torch.allclose(fwd.detach(), torch.from_numpy(bz.dequantize(b)), atol=1e-6)
    # the sign's gradient passes where the deviation is within one scale of the centre, else stops
    x = torch.tensor([-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0], requires_grad=True)
    sign_ste(x).sum().backward()
    assert x.grad is not None and x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0]
    assert sign_ste(torch.tensor([0.0])).item() == 1.0  # zero is +1, as the packed bits store it
    (fwd * torch.randn(6, 50)).sum().backward()
    assert w.grad is not None and torch.isfinite(w.grad).all() and w.grad.abs().sum() > 0
    a = torch.randn(3, 16)
    out = binarize_activation(a)
    bits, scale = bz.binarize_activations(a.numpy())
    assert torch.allclose(out, torch.from_numpy(scale[:, None] * bz.unpack_signs(bits, 16).astype(np.float32)),
                          atol=1e-6)


@pytest.mark.parametrize("precision", ["binary", "binary-full"])
def test_a_binarized_graph_holds_packed_bits_and_its_linears_are_the_dequantized_products(tiny_graph, tmp_path: Path,
                                                                                         precision: str) -> None:
    from edgebert.compress.binary import binarize_graph
    from edgebert.graph import reference
    from edgebert.graph.form import Graph
    from edgebert.graph.quantize import dequantize_affine, quantize_affine

    _, g, stats = tiny_graph
    gb = binarize_graph(g, stats, precision)
    gb.save(tmp_path / "g.safetensors")
    gb = Graph.load(tmp_path / "g.safetensors")
    rng = np.random.default_rng(1)
    for node in gb.linears():
        a = node.attrs
        out, n = g.tensors[g.node(node.name).attrs["weight"]].shape
        bits = gb.tensors[a["weight"]]
        assert bits.dtype == np.uint8 and bits.shape == (out, (n + 7) // 8)  # 1/32 of the float32 bytes
        x = rng.normal(size=(2, 5, n)).astype(np.float32)
        wb, bias = gb.linear_weight(node), gb.tensors[a["bias"]]
        if precision == "binary":
            s, z = np.float32(a["act_scale"]), np.uint8(a["act_zero_point"])
            want = dequantize_affine(quantize_affine(x, s, z), s, z) @ wb.T + bias
        else:
            beta = np.abs(x).mean(-1, keepdims=True)
            want = beta * np.where(x >= 0, 1.0, -1.0).astype(np.float32) @ wb.T + bias
        got = reference.linear(gb, node, x)
        assert np.abs(got - want).max() <= 8 * n * np.finfo(np.float32).eps * (np.abs(want).max() + 1)
    ids = rng.integers(0, 100, (2, 9))
    out = reference.run(gb, {"input_ids": ids, "attention_mask": np.ones_like(ids)})
    assert all(np.isfinite(v).all() for v in out.values())


def test_the_devices_erf_is_within_its_published_bound() -> None:
    from scipy.special import erf

    from edgebert.graph.reference import erf_numpy

    x = np.linspace(-6, 6, 100_001)
    assert np.abs(erf_numpy(x).astype(np.float64) - erf(x)).max() <= 1.5e-7 + np.finfo(np.float32).eps  # A&S + rounding
