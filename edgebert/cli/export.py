"""``edgebert export``: an int8 TinyML net or text encoder to firmware (.tflite, a TFLite Micro bundle, or C99);
a binarized (W1A8) TinyML net to C99."""

from __future__ import annotations

import argparse
import json
import sys

from edgebert.cli.common import progress_bar

TARGET_HELP = {"tflite": ".tflite flatbuffer (LiteRT and TFLite Micro)",
               "tflm": ".tflite + model_data.c/.h + op resolver + measured arena, for a TFLite Micro application",
               "c": "standalone C99 (no malloc, static arena) + on-device head learning; host build + Cortex-M4 "
                    "figures measured under QEMU"}


def _int(text: str) -> int:
    """Bytes, with an optional K/M (or KB/MB) suffix (powers of 1000, as device datasheets mostly use): 256K, 1MB."""
    t = text.strip().upper()
    t = t[:-1] if t.endswith(("KB", "MB")) else t
    mult = 1_000_000 if t.endswith("M") else 1_000 if t.endswith("K") else 1
    try:
        value = int(float(t.rstrip("KM") or "x") * mult)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected bytes (e.g. 262144, 256K, 1M), found {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of bytes, found {text!r}")
    return value


def text_report(result) -> str:  # noqa: ANN001 - firmware_export.export.ExportResult
    fw, m = result.firmware, result.artifact.manifest
    fig, sh, ag = fw["figures"], fw["shape"], fw["agreement"]
    lines = [f"artifact     {result.artifact.path}", f"id           {m.artifact_id} (runtime {m.runtime})",
             f"encoder      L{sh['layers']}/H{sh['hidden']}/A{sh['heads']}, {sh['vocab']:,} word rows "
             f"({fw['quantization']['word_bits']}-bit), up to {sh['max_len']} tokens -> {sh['out']} outputs",
             (f"agreement    host C vs fixed-point reference: {ag['c_host_vs_reference']} ({ag['sentences']} sentences)"
              + (f"; Cortex-M4 vs host: {ag['m4_vs_host']}" if "m4_vs_host" in ag else "")) if fw["target"] == "c" else
             f"ops          {', '.join(fw['ops'])}"]
    if "cosine_to_artifact" in ag:
        c = ag["cosine_to_artifact"]
        where = "" if fw["target"] == "c" else " in TFLM"
        lines.append(f"fidelity     cosine to the artifact's embeddings{where}: mean {c['mean']:.4f}, min {c['min']:.4f} "
                     f"({c['sentences']} bundled sentences)")
    if "litert_cosine_to_artifact" in ag:
        lines.append(f"             in LiteRT: mean {ag['litert_cosine_to_artifact']['mean']:.4f}")
    if fw["target"] != "c":
        lines.append(f"tflm         model {fig['model_bytes']:,} B, arena {fig['arena_bytes']:,} B (measured "
                     f"{fig['arena_bytes_measured']:,} B + 10%), for {fig['tokens']} tokens")
    elif fig.get("measured"):
        lines.append(f"cortex-m4    flash {fig['flash_bytes']:,} B, RAM {fig['ram_bytes']:,} B (buffers "
                     f"{fig['arena_bytes']:,} + stack {fig['stack_bytes']}), {fig['instructions_per_inference']:,} "
                     f"instructions for {fig['tokens']} tokens")
    else:
        lines.append(f"weights      {fig['weight_bytes']:,} B (not measured: --no-measure)")
    if fw.get("budget"):
        lines.append(f"budget       {fw['budget']['message']}")
    return "\n".join(lines)


def report(result) -> str:  # noqa: ANN001 - firmware_export.export.ExportResult
    fw, m = result.firmware, result.artifact.manifest
    if fw.get("task") == "embedding":
        return text_report(result)
    fig = fw["figures"]
    lines = [f"artifact     {result.artifact.path}", f"id           {m.artifact_id} (runtime {m.runtime})",
             f"network      {fw['shape']['inputs']} -> {fw['shape']['features']} features -> {fw['shape']['outputs']} "
             f"outputs; ops {', '.join(fw['ops'])}",
             f"agreement    {'; '.join(f'{k}: {v}' for k, v in fw['agreement'].items() if k != 'inputs')} "
             f"({fw['agreement']['inputs']} inputs)"]
    if fw["target"] == "c" and fig.get("measured"):
        lines += [f"cortex-m4    inference: flash {fig['inference_flash_bytes']:,} B, "
                  f"RAM {fig['inference_ram_bytes']:,} B (arena {fig['arena_bytes']} + stack "
                  f"{fig['stack_bytes']}), {fig['instructions_per_inference']:,} instructions",
                  f"             with head learning: flash {fig['learn_flash_bytes']:,} B, RAM {fig['learn_ram_bytes']:,} B "
                  f"(head state {fig['head_state_bytes']:,} B), {fig['instructions_per_learning_step']:,} "
                  f"instructions per step"]
    elif fw["target"] != "c":
        lines.append(f"tflm         model {fig['model_bytes']:,} B, arena {fig['arena_bytes']:,} B "
                     f"(measured {fig['arena_bytes_measured']:,} B + 10%)")
    if fw.get("budget"):
        lines.append(f"budget       {fw['budget']['message']}")
    return "\n".join(lines)


def cmd_export(args: argparse.Namespace) -> int:
    from firmware_export.export import export

    with progress_bar(not args.quiet and sys.stderr.isatty()) as progress:
        result = export(args.artifact, args.target, args.out, device=args.device, ram=args.ram, flash=args.flash,
                        force=args.force, lr=args.lr, measure=not args.no_measure, max_length=args.max_length,
                        embedding_bits=args.embedding_bits, progress=progress)
    if args.json:
        print(json.dumps({"artifact": str(result.artifact.path), "artifact_id": result.artifact.manifest.artifact_id,
                          **result.firmware}, indent=2))
    else:
        print(report(result))
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export", help="export an int8 artifact for microcontrollers (.tflite, TFLite Micro, C99)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Export an int8 TinyML artifact (edgebert convert --precision int8) as firmware. The graph form "
                    "in the artifact is lowered to TFLite Micro's integer arithmetic; the build is checked bit for "
                    "bit against a fixed-point reference before anything is written, and the output directory is "
                    "itself an artifact the registry and provisioning take.\n\nAn int8 text encoder (a small BERT, e.g. "
                    "from edgebert distill) takes sentences of up to --max-length tokens. --target c writes an "
                    "integer-only transformer (integer LayerNorm, softmax and GELU tables, int32 residual stream), "
                    "checked bit for bit on the host and a Cortex-M4; its word rows are int8, or 4-bit when "
                    "--embedding-bits 4 or when int8 rows miss the flash budget. --target tflite/tflm write TFLite "
                    "builtins (int16 LayerNorm, int8 BATCH_MATMUL and SOFTMAX), calibrated in LiteRT and checked in "
                    "TFLM and LiteRT against the artifact.\n\nA binarized TinyML net (convert --precision binary) "
                    "exports with --target c only (TFLite has no 1-bit FULLY_CONNECTED): its packed signs run in "
                    "a W1A8 C kernel with int32 requantization, the same firmware API and learning head, checked "
                    "bit for bit on the host and a Cortex-M4.\n\n"
                    "targets:\n"
                    + "\n".join(f"  {k:<7} {v}" for k, v in TARGET_HELP.items()),
        epilog="examples:\n  edgebert export digits-int8 --target c --out digits-m4 --device cortex-m4\n"
               "  edgebert export digits-int8 --target tflm --out digits-tflm --ram 64K --flash 256K\n"
               "  edgebert export student-int8 --target c --out student-m4 --device cortex-m4 --max-length 32\n"
               "  edgebert export digits-binary --target c --out digits-binary-m4 --flash 11K --ram 16K\n"
               "The Cortex-M4 figures need arm-none-eabi-gcc and qemu-system-arm (Debian: apt-get install "
               "--no-install-recommends gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm).")
    p.add_argument("artifact", help="an int8 artifact directory (TinyML net or text encoder), or a binarized "
                   "TinyML net's (--target c)")
    p.add_argument("--target", required=True, choices=tuple(TARGET_HELP), help="what to produce (see above)")
    p.add_argument("--out", required=True, help="output directory (a new firmware artifact)")
    p.add_argument("--device", choices=("cortex-m4",), help="check the build against this device's budget "
                   "(cortex-m4: 256 KB RAM, 1 MB flash)")
    p.add_argument("--ram", type=_int, help="RAM budget in bytes (with --flash; K/M suffixes accepted)")
    p.add_argument("--flash", type=_int, help="flash budget in bytes (with --ram)")
    p.add_argument("--lr", type=float, default=0.01, help="learning rate of the on-device head (target c; default 0.01)")
    p.add_argument("--max-length", type=int, default=32, help="text encoders: tokens per sentence the firmware "
                   "takes (default 32)")
    p.add_argument("--embedding-bits", type=int, choices=(4, 8), help="text encoders: bits per word-table code "
                   "(default: 8, or 4 when 8 misses the flash budget)")
    p.add_argument("--no-measure", action="store_true", help="target c: skip the Cortex-M4 build and QEMU run")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p.add_argument("--json", action="store_true", help="print firmware.json's content instead of the report")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_export)
