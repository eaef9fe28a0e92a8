"""``edgebert distill``: a compact student of a sentence-embedding teacher, on unlabeled text."""

from __future__ import annotations

import argparse
import json
import sys

from edgebert.cli.common import progress_bar


def cmd_distill(args: argparse.Namespace) -> int:
    from edgebert.distill import distill

    with progress_bar(not args.quiet and sys.stderr.isatty()) as progress:
        report = distill(args.teacher, args.data, args.out, args.student, steps=args.steps, minutes=args.minutes,
                         vocab_size=args.vocab_size, init=args.init, seed=args.seed, batch_size=args.batch_size,
                         max_length=args.max_length, lr=args.lr, save_every=args.save_every,
                         pooling=args.pooling, binarize=args.binarize, force=args.force,
                         progress=progress)
    if args.json:
        print(json.dumps(report, indent=2, default=str))
        return 0
    t, v, c = report["training"], report["vocabulary"], report["config"]
    print(f"student     {args.out}: {report['student']} L{c['num_hidden_layers']}/H{c['hidden_size']}/"
          f"A{c['num_attention_heads']}, init from {report['init']}"
          + (f", resumed at step {report['resumed_from_step']}" if report["resumed_from_step"] is not None else ""))
    print(f"vocabulary  {v['kept']:,} of {v['original']:,} rows; held-out coverage {v['held_out_coverage']:.3f}")
    print(f"distilled   {t['steps']} steps in {t['seconds'] / 60:.1f} min; held-out cosine to the teacher "
          f"{t['curve'][0]['held_out_cosine']:.3f} -> {t['held_out_cosine']:.3f} ({t['held_out_lines']} lines)")
    print(f"next: edgebert convert {args.out} --precision int8 --calibration {args.data} --out ARTIFACT_DIR")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "distill", help="distil a sentence-embedding teacher into a miniature BERT (pre-trained distillation)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Pre-trained distillation (Turc et al., 'Well-Read Students Learn Better'): a student learns the "
                    "teacher's sentence embeddings and hidden states (direction matching, learned projections where "
                    "widths differ) on unlabeled text. The student starts from the teacher (layer selection, width "
                    "slicing) or at random; its vocabulary can be pruned to the K pieces the text uses most. Writes a "
                    "normal checkpoint directory (with a Dense module projecting to the teacher's width) that "
                    "edgebert convert takes as is. Resumable: run the same command again after Ctrl-C or a crash.",
        epilog="example:\n  edgebert distill path/to/all-MiniLM-L6-v2 --student bert-tiny --data sentences.txt "
               "--out tiny-student --minutes 60 --vocab-size 8000")
    p.add_argument("teacher", help="teacher checkpoint directory (BERT architecture, e.g. all-MiniLM-L6-v2)")
    p.add_argument("--student", default="bert-tiny", help="bert-tiny (L2/H128), bert-mini (L4/H256), bert-small "
                   "(L4/H512), bert-medium (L8/H512) or L<layers>H<hidden> (default bert-tiny)")
    p.add_argument("--data", required=True, help="unlabeled text, one sentence per line (500 lines are held out)")
    p.add_argument("--out", required=True, help="student checkpoint directory (an earlier run's is resumed)")
    budget = p.add_mutually_exclusive_group(required=True)
    budget.add_argument("--steps", type=int, help="training steps in all (a resumed run counts the earlier ones)")
    budget.add_argument("--minutes", type=float, help="wall-clock budget of this run")
    p.add_argument("--vocab-size", type=int, help="keep this many WordPiece rows (special tokens and single characters "
                   "always; then the most frequent in --data)")
    p.add_argument("--init", choices=("teacher", "random"), default="teacher", help="student's starting weights")
    p.add_argument("--pooling", default="cls+mean", help="the student's sentence pooling: cls, max, mean or several "
                   "joined by '+' (their vectors concatenated before the Dense projection to the teacher's width); "
                   "default cls+mean: a 128-wide mean alone caps the fit to a 384-wide teacher")
    p.add_argument("--binarize", choices=("w1a8", "w1a1"), help="train the student's encoder linears through 1-bit "
                   "weights (w1a8) or 1-bit weights and inputs (w1a1, experimental, with BiBERT's Bi-Attention in place of "
                   "softmax): the straight-through estimator on latent float weights, which the checkpoint holds and a "
                   "binary conversion binarizes again")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=32, help="tokens per sentence (default 32, a microcontroller's)")
    p.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (AdamW; 50 warm-up steps, then "
                   "cosine decay to 5%% over the --steps/--minutes budget; default 2e-3)")
    p.add_argument("--save-every", type=int, default=100, help="steps between saved states (default 100)")
    p.add_argument("--force", action="store_true", help="start over: remove --out first")
    p.add_argument("--json", action="store_true", help="print the full report (curve included) as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_distill)
