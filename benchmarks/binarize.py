"""1-bit kernels against int8 ones, one thread, same run; the digits net binarized (issue 15).

For each shape (tokens x in -> out: MiniLM's FFN at 128 tokens, BERT-Tiny's at 32 and 128):

- ``int8 C``: a plain C int8 x int8 -> int32 GEMM (the kernel shape of ``eb_kernels.h``), built
  with the host compiler at -O3 -march=native so the compiler vectorizes it for this CPU;
- ``W1A8 C``: ``eb_w1a8_token`` (the lookup-table GEMM of ``edgebert/runtime/c/eb_binary.h``);
- ``W1A1 C``: ``eb_pack_signs_f32`` + ``eb_w1a1_token`` (xnor-popcount, 64 bits at a time);
- the peers, ONNX Runtime (one intra-op thread): ``MatMulInteger`` (u8 x s8, MLAS) and
  ``MatMulNBits`` with 2-bit codes {1, 3} and zero point 2 (1-bit weights as ORT can hold them).

Each C kernel is timed inside C (median of repeated calls, after warm-up); the ratios are what
counts on a shared machine. Every C kernel's output is checked against the numpy oracle first.

    python benchmarks/binarize.py [--kernels-only] [--repeats 30] [--digits-steps 0,2000]
"""

from __future__ import annotations

import argparse
import ctypes
import statistics
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path

import numpy as np
from common import finish

from edgebert.graph import binarize as bz

SHAPES = [("MiniLM FFN up", 128, 384, 1536), ("MiniLM FFN down", 128, 1536, 384),
          ("BERT-Tiny FFN up", 32, 128, 512), ("BERT-Tiny FFN up", 128, 128, 512)]

HARNESS = r"""
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include "eb_binary.h"

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1e9 + t.tv_nsec; }

void gemm_s8(const int8_t *x, const int8_t *w, int tokens, int n, int n_out, int32_t *y) {
    int t, o, k;
    for (t = 0; t < tokens; ++t) {
        const int8_t *row = x + (long)t * n;
        for (o = 0; o < n_out; ++o) {
            const int8_t *col = w + (long)o * n;
            int32_t acc = 0;
            for (k = 0; k < n; ++k) { acc += (int32_t)row[k] * col[k]; }
            y[(long)t * n_out + o] = acc;
        }
    }
}

void w1a8(const uint8_t *x, const uint8_t *bits, int tokens, int n, int n_out, int16_t *table, int32_t *y) {
    int t;
    for (t = 0; t < tokens; ++t) { eb_w1a8_token(x + (long)t * n, n, 128, bits, n_out, table, y + (long)t * n_out); }
}

void w1a1(const float *x, const uint8_t *bits, int tokens, int n, int n_out, uint8_t *a, int32_t *y) {
    int t;
    for (t = 0; t < tokens; ++t) {
        eb_pack_signs_f32(x + (long)t * n, n, a);
        eb_w1a1_token(a, n, bits, n_out, y + (long)t * n_out);
    }
}

/* median-free: the caller takes the median over calls of this (ns per call of kind k) */
double timed(int kind, const void *x, const void *w, int tokens, int n, int n_out, void *scratch, int32_t *y, int reps) {
    double start = now();
    int r;
    for (r = 0; r < reps; ++r) {
        if (kind == 0) gemm_s8((const int8_t *)x, (const int8_t *)w, tokens, n, n_out, y);
        else if (kind == 1) w1a8((const uint8_t *)x, (const uint8_t *)w, tokens, n, n_out, (int16_t *)scratch, y);
        else w1a1((const float *)x, (const uint8_t *)w, tokens, n, n_out, (uint8_t *)scratch, y);
    }
    return (now() - start) / reps;
}
"""


def build(tmp: Path) -> ctypes.CDLL:
    import subprocess

    (tmp / "eb_binary.h").write_text(resources.files("edgebert.runtime").joinpath("c/eb_binary.h").read_text())
    (tmp / "bench.c").write_text(HARNESS)
    subprocess.run(["cc", "-std=gnu99", "-O3", "-march=native", "-shared", "-fPIC", "-o", str(tmp / "b.so"),
                    str(tmp / "bench.c")], check=True)
    lib = ctypes.CDLL(str(tmp / "b.so"))
    lib.timed.restype = ctypes.c_double
    lib.timed.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                          ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int]
    return lib


def _p(a: np.ndarray) -> ctypes.c_void_p:
    return ctypes.c_void_p(a.ctypes.data)


def c_kernels(lib: ctypes.CDLL, tokens: int, n: int, n_out: int, repeats: int) -> dict:
    rng = np.random.default_rng(n * n_out)
    w = rng.normal(size=(n_out, n)).astype(np.float32)
    b = bz.binarize(w)
    w8 = rng.integers(-127, 128, (n_out, n)).astype(np.int8)
    x8 = rng.integers(-128, 128, (tokens, n)).astype(np.int8)
    xu = rng.integers(0, 256, (tokens, n)).astype(np.uint8)
    xf = rng.normal(size=(tokens, n)).astype(np.float32)
    y = np.zeros((tokens, n_out), np.int32)
    table = np.zeros(16 * ((n + 3) // 4), np.int16)
    packed = np.zeros((n + 7) // 8, np.uint8)
    bits = np.ascontiguousarray(b.bits)
    # correctness first: each kernel against its oracle
    lib.timed(0, _p(x8), _p(w8), tokens, n, n_out, None, _p(y), 1)
    assert np.array_equal(y, x8.astype(np.int64) @ w8.T.astype(np.int64))
    lib.timed(1, _p(xu), _p(bits), tokens, n, n_out, _p(table), _p(y), 1)
    assert np.array_equal(y, bz.w1a8_core(xu, 128, bits, n)[0])
    lib.timed(2, _p(xf), _p(bits), tokens, n, n_out, _p(packed), _p(y), 1)
    assert np.array_equal(y, bz.w1a1_core(bz.binarize_activations(xf)[0], bits, n))
    out = {}
    for kind, name, x, scratch in ((0, "int8", x8, None), (1, "w1a8", xu, table), (2, "w1a1", xf, packed)):
        inner = max(1, int(2e7 // (tokens * n * n_out)))  # ~tens of ms a call
        lib.timed(kind, _p(x), _p(w8 if kind == 0 else bits), tokens, n, n_out,
                  None if scratch is None else _p(scratch), _p(y), inner)
        times = [lib.timed(kind, _p(x), _p(w8 if kind == 0 else bits), tokens, n, n_out,
                           None if scratch is None else _p(scratch), _p(y), inner) for _ in range(repeats)]
        out[name] = statistics.median(times) / 1e6  # ms
    return out


def ort_kernels(tokens: int, n: int, n_out: int, repeats: int) -> dict:
    """ONNX Runtime, one thread: MatMulInteger (u8 x s8) and MatMulNBits with 2-bit codes."""
    import onnx
    from onnx import TensorProto, helper

    from edgebert.runtime.backends import ort_session

    rng = np.random.default_rng(1)
    w8 = rng.integers(-127, 128, (n, n_out)).astype(np.int8)
    mmi = helper.make_graph([helper.make_node("MatMulInteger", ["x", "w", "zp"], ["y"])], "mmi",
                            [helper.make_tensor_value_info("x", TensorProto.UINT8, [tokens, n])],
                            [helper.make_tensor_value_info("y", TensorProto.INT32, [tokens, n_out])],
                            [onnx.numpy_helper.from_array(w8, "w"), onnx.numpy_helper.from_array(np.uint8(128), "zp")])
    block = 32
    codes = np.where(rng.random((n_out, n)) < 0.5, 3, 1).astype(np.uint8)  # (code - 2) = +-1
    packed = np.zeros((n_out, n // block, block // 4), np.uint8)
    c = codes.reshape(n_out, n // block, block // 4, 4)
    packed[:] = c[..., 0] | (c[..., 1] << 2) | (c[..., 2] << 4) | (c[..., 3] << 6)
    scales = np.full((n_out, n // block), 0.01, np.float32)
    zps = np.full((n_out, (n // block * 2 + 7) // 8), 0b10101010, np.uint8)  # 2-bit zero points 2, packed
    nbits = helper.make_graph([helper.make_node("MatMulNBits", ["x", "b", "s", "z"], ["y"], domain="com.microsoft",
                                                K=n, N=n_out, bits=2, block_size=block)], "nbits",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [tokens, n])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [tokens, n_out])],
                              [onnx.numpy_helper.from_array(packed, "b"), onnx.numpy_helper.from_array(scales, "s"),
                               onnx.numpy_helper.from_array(zps, "z")])
    out = {}
    for name, graph, x in (("ort_matmulinteger", mmi, rng.integers(0, 256, (tokens, n)).astype(np.uint8)),
                           ("ort_matmulnbits2", nbits, rng.normal(size=(tokens, n)).astype(np.float32))):
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                        helper.make_opsetid("com.microsoft", 1)])
        try:
            sess = ort_session(model.SerializeToString(), 1)
        except Exception as exc:  # noqa: BLE001 - ORT's own exception types
            out[name] = None
            print(f"  {name}: not run ({str(exc)[:120]})", file=sys.stderr)
            continue
        for _ in range(5):
            sess.run(None, {"x": x})
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            sess.run(None, {"x": x})
            times.append((time.perf_counter() - t0) * 1e3)
        out[name] = statistics.median(times)
    return out


def digits(steps: list[int], work: Path) -> list[dict]:
    """The digits net (64-32-32-10): int8 against 1-bit weights, post-training and binarization-aware
    (``--steps`` each); test accuracy on the 397 rows its training left out, weight bytes."""
    import edgebert
    from edgebert.graph.form import Graph
    from edgebert.model.tinyml import digits_data, train
    from edgebert.runtime.engine import Engine

    model = work / "digits"
    if not (model / "model.safetensors").is_file():
        train("digits", model)
    x, y = digits_data()
    test = np.random.default_rng(0).permutation(len(x))[1400:]

    def accuracy(path: Path) -> float:
        out = Engine.load(path).backend.run({"x": x[test]})
        return float((out[list(out)[-1]].argmax(1) == y[test]).mean())

    int8 = edgebert.convert(model, work / "digits-int8", "int8", model / "calibration.npy", force=True)
    g8 = Graph.load(int8.path / "graph.safetensors")
    int8_bytes = sum(g8.tensors[n.attrs["weight"]].nbytes for n in g8.linears())
    rows = [{"variant": "int8", "accuracy": accuracy(int8.path), "weight_bytes": int8_bytes, "seconds": 0.0}]
    for n in steps:
        t0 = time.perf_counter()
        art = edgebert.convert(model, work / f"digits-binary-{n}", "binary", model / "calibration.npy", force=True,
                               steps=n or None)
        sizes = art.manifest.quantization["sizes"]
        rows.append({"variant": f"W1A8, {n} steps" if n else "W1A8, post-training", "accuracy": accuracy(art.path),
                     "weight_bytes": sizes["linear_bits"] + sizes["linear_scales_centres"],
                     "seconds": time.perf_counter() - t0})
        print(f"  digits {rows[-1]}", file=sys.stderr, flush=True)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--kernels-only", action="store_true", help="only the kernel table (the default today)")
    ap.add_argument("--digits-steps", default="0,2000", help="binarization-aware steps for the digits rows (0: none)")
    ap.add_argument("--work", default="benchmarks/results/binarize-work")
    ap.add_argument("--out", default="benchmarks/results/binarize.json")
    args = ap.parse_args()
    result: dict = {}
    if not args.kernels_only:
        result["digits"] = digits([int(s) for s in args.digits_steps.split(",")], Path(args.work))
        base = result["digits"][0]
        print(f"\n{'digits 64-32-32-10':>24}{'accuracy':>10}{'weight B':>10}{'x int8 B':>10}")
        for r in result["digits"]:
            ratio = r["weight_bytes"] / base["weight_bytes"]
            print(f"{r['variant']:>24}{r['accuracy']:>10.3f}{r['weight_bytes']:>10,}{ratio:>10.3f}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        lib = build(Path(tmp))
        for name, tokens, n, n_out in SHAPES:
            row = {"shape": name, "tokens": tokens, "in": n, "out": n_out,
                   **c_kernels(lib, tokens, n, n_out, args.repeats), **ort_kernels(tokens, n, n_out, args.repeats)}
            rows.append(row)
            print(f"  {row}", file=sys.stderr, flush=True)
    print(f"\n{'shape':>18}{'tokens':>7}{'in->out':>11}{'int8 C ms':>11}{'W1A8 C':>9}{'W1A1 C':>9}"
          f"{'ORT u8s8':>10}{'ORT 2-bit':>10}{'W1A1 x':>8}{'W1A8 x':>8}")
    for r in rows:
        ort = [f"{r[k]:>10.3f}" if r[k] is not None else f"{'-':>10}" for k in ("ort_matmulinteger", "ort_matmulnbits2")]
        print(f"{r['shape']:>18}{r['tokens']:>7}{str(r['in']) + '->' + str(r['out']):>11}{r['int8']:>11.3f}"
              f"{r['w1a8']:>9.3f}{r['w1a1']:>9.3f}{''.join(ort)}{r['int8'] / r['w1a1']:>8.2f}{r['int8'] / r['w1a8']:>8.2f}")
    print("x = speed-up over the int8 C kernel (higher is faster); one thread; medians")
    ffn = [r for r in rows if r["shape"].startswith("MiniLM")]
    targets = {"W1A1 C kernel >= 1.5x the int8 C kernel at MiniLM FFN shapes, seq 128":
               all(r["int8"] / r["w1a1"] >= 1.5 for r in ffn)}
    if "digits" in result:
        best = max(result["digits"][1:], key=lambda r: r["accuracy"])
        targets["digits binarized within 3 points of int8"] = best["accuracy"] >= result["digits"][0]["accuracy"] - 0.03
        targets["digits weights <= 1/7 of the int8 bytes"] = best["weight_bytes"] * 7 <= result["digits"][0]["weight_bytes"]
    return finish(targets, {**result, "kernels": rows}, args.out)


if __name__ == "__main__":
    sys.exit(main())
