"""``edgebert convert``: a checkpoint directory to an artifact, with a report."""

from __future__ import annotations

import argparse

from edgebert.cli.common import progress_bar
from edgebert.errors import InputError


def _scheme(args: argparse.Namespace):  # noqa: ANN202
    from edgebert.compress.int8 import Int8Scheme

    alpha: float | str | None = args.smoothquant
    if alpha not in ("auto", "none"):
        try:
            alpha = float(alpha)
        except ValueError:
            raise InputError(f"--smoothquant: expected auto, none or a number in [0, 1], found {alpha!r}") from None
    return Int8Scheme(activation_range=args.activation_range, percentile=args.percentile,
                      smoothquant_alpha=None if alpha == "none" else alpha, integer_ranges=args.integer_ranges)


def _size(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e6 else f"{n / 1e3:.1f} KB"


def report_table(artifact) -> str:  # noqa: ANN001
    """A short plain-text report of an artifact's manifest."""
    m = artifact.manifest
    cfg = m.architecture["config"]
    shape = (f"MLP {'-'.join(str(n) for n in [cfg['input_dim'], *cfg['hidden'], cfg['n_outputs']])}"
             if m.architecture["type"] == "mlp" else f"L{cfg['num_hidden_layers']}/H{cfg['hidden_size']}")
    params = m.architecture["parameters"]
    lines = [f"artifact    {artifact.path}", f"id          {m.artifact_id}",
             f"model       {m.source['name']}: {shape}, "
             + (f"{params / 1e6:.1f} M parameters" if params >= 1e5 else f"{params} parameters"),
             f"precision   {m.precision}"]
    if "model.onnx" in m.files:
        lines.append(f"model.onnx  {_size(m.files['model.onnx'].bytes)} (fp32 weights: "
                     f"{_size(m.architecture['parameters'] * 4)})")
    sizes = m.quantization.get("sizes")
    if sizes:
        lines.append(f"1-bit       linear weights {_size(sizes['linear_bits'] + sizes['linear_scales_centres'])} "
                     f"(1/{1 / sizes['linear_ratio_to_fp32']:.1f} of their fp32 {_size(sizes['linear_weights_fp32'])}); "
                     f"embeddings {_size(sizes['embeddings'])}; artifact {_size(m.memory['flash_bytes'])}")
    fid, lat = m.metrics.get("fidelity"), m.metrics.get("latency")
    if fid:
        count = f"{fid['texts']} sentences" if "texts" in fid else f"{fid['samples']} samples"
        lines.append(f"fidelity    {fid['metric']}: mean {fid['mean']:.4f}, worst {fid['worst']:.4f} "
                     f"on {count} ({'held out' if fid['held_out'] else 'calibration'})"
                     + (f"; argmax agreement {fid['argmax_agreement']:.3f}" if "argmax_agreement" in fid else ""))
        if "reference_mean" in fid and "integer_kernel" not in fid:
            lines.append(f"            through the artifact's C kernels; numpy reference: mean {fid['reference_mean']:.4f}")
        elif "reference_mean" in fid:
            kernel = fid.get("integer_kernel", {})
            lines.append(f"            through ONNX Runtime on this CPU ({kernel.get('description', 'unknown kernel')}); "
                         f"saturation-free reference: mean {fid['reference_mean']:.4f}, worst {fid['reference_worst']:.4f}")
    ranges = m.quantization.get("integer_ranges")
    if ranges:
        w, a = ranges["weight_codes"], ranges["activation_codes"]
        limit = ranges.get("same_sign_pair_limit")
        lo, hi = ranges["pair_sum_range"]
        lines.append(f"integers    {ranges['name']}: weights [{w[0]}, {w[1]}]"
                     + (f", same-sign pairs |w|+|w'| <= {limit}" if limit else "")
                     + f", inputs [{a[0]}, {a[1]}]; pair sums [{lo}, {hi}] for any uint8 input: "
                     + ("no CPU saturates them" if ranges["saturation_free"] else
                        "SATURATE on x86 AVX2 without VNNI"))
    if lat:
        seq = f", seq {lat['seq']}" if "seq" in lat else ""
        lines.append(f"latency     {lat['median_ms']:.3f} ms (fp32 {lat['fp32_median_ms']:.3f} ms), batch {lat['batch']}"
                     f"{seq}, {lat['threads']} thread, ONNX Runtime CPU")
    return "\n".join(lines)


def cmd_convert(args: argparse.Namespace) -> int:
    from edgebert.converter import convert

    scheme = _scheme(args)
    with progress_bar(not args.quiet and not args.json) as progress:
        artifact = convert(args.model_dir, args.out, args.precision, args.calibration, force=args.force,
                           allow_pickle=args.allow_pickle, scheme=scheme, measure=not args.no_measure,
                           name=args.name, steps=args.steps, minutes=args.minutes,
                           embedding_bits=args.embedding_bits, vocab_size=args.vocab_size, progress=progress)
    if args.json:
        print(artifact.manifest.to_json())
    else:
        print(report_table(artifact))
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert", help="convert a Hugging Face BERT checkpoint directory into an artifact",
                       description="Convert a BERT-architecture checkpoint directory (config.json, "
                                   "model.safetensors, tokenizer.json or vocab.txt) into an artifact "
                                   "directory: model.onnx, tokenizer.json, graph.safetensors, manifest.json.")
    p.add_argument("model_dir", help="checkpoint directory")
    p.add_argument("--out", required=True, help="artifact directory to create")
    p.add_argument("--precision", choices=("int8", "fp32", "binary", "binary-full"), default="int8",
                   help="target precision (default int8). binary: 1-bit weights, 8-bit activations (W1A8), packed "
                        "8 weights to a byte and run by the artifact's C kernels; binary-full: 1-bit activations too "
                        "(W1A1, experimental; with --steps/--minutes the student also learns Bi-Attention, keys "
                        "picked by the signs of queries and keys). Binarizing without --steps/--minutes loses most "
                        "of a model's fidelity")
    p.add_argument("--calibration", help="UTF-8 text, one sentence per line; 20%% is held out to measure fidelity "
                                         "(required for int8 and binary; the unlabeled text of binary's distillation)")
    p.add_argument("--embedding-bits", type=int, choices=(4, 8), default=8, help="binary: word rows in 8 or 4 bits "
                   "(4: half the word table, e.g. MiniLM's 11.7 MB of int8 rows to 5.9 MB; default 8)")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--steps", type=int, help="binary: distil binarization-aware for this many steps first "
                        "(the fp32 checkpoint is the teacher; resumable after Ctrl-C)")
    budget.add_argument("--minutes", type=float, help="binary: distil binarization-aware for this long first")
    p.add_argument("--vocab-size", type=int, help="binary with --steps/--minutes: keep this many word rows, the most "
                   "frequent in the calibration text (rare words are spelled in more pieces; default: all)")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p.add_argument("--name", help="model name used in the artifact id (default: the checkpoint directory's name)")
    p.add_argument("--allow-pickle", action="store_true",
                   help="accept a pickle pytorch_model.bin when there is no model.safetensors (unsafe on untrusted files)")
    p.add_argument("--activation-range", choices=("auto", "minmax", "percentile", "mse"), default="auto",
                   help="how calibrated activation ranges are chosen (auto: least output error per linear)")
    p.add_argument("--percentile", type=float, default=99.99, help="percentile for --activation-range percentile")
    p.add_argument("--smoothquant", default="auto", help="SmoothQuant alpha: auto (per linear), none, or 0..1")
    p.add_argument("--integer-ranges", choices=("pairs", "w7", "a7", "full"), default="pairs",
                   help="integer codes of int8 linears. pairs (default): 8-bit weights whose same-sign adjacent "
                        "pairs stay within 128, so no CPU's int8 kernel saturates; w7: 7-bit weights (also safe); "
                        "a7: calibrated inputs on [0, 128]; full: 8 bits both sides, which saturates on x86 AVX2 "
                        "CPUs without VNNI (for comparison only; see docs/converter.md)")
    p.add_argument("--no-measure", action="store_true", help="skip the fidelity and latency measurement")
    p.add_argument("--json", action="store_true", help="print the manifest as JSON instead of a report")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_convert)
