"""``edgebert tinyml train``: small MLPs trained on the host."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edgebert.errors import InputError


def cmd_tinyml_train(args: argparse.Namespace) -> int:
    from edgebert.model.tinyml import train

    out = Path(args.out)
    if out.exists() and not args.force:
        raise InputError(f"{out}: expected a new output directory, found an existing one (use --force to replace it)")
    print(f"training the {args.task} MLP on the host (torch)…", file=sys.stderr)
    path, metric = train(args.task, out, seed=args.seed, steps=args.steps)
    print(f"wrote {path} (config.json, model.safetensors, calibration.npy); {json.dumps(metric)}")
    print(f"next: edgebert convert {path} --precision int8 --calibration {path / 'calibration.npy'} --out ARTIFACT_DIR")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    t = sub.add_parser("tinyml", help="TinyML nets beside BERT (sine regression, 8x8 digits)")
    tsub = t.add_subparsers(dest="tinyml_command", required=True)
    tt = tsub.add_parser("train", help="train a small MLP on the host and write a model directory",
                         description="Train the sine-wave regressor (MAML/Reptile task family) or the 8x8-digits "
                                     "classifier in torch; writes config.json, model.safetensors and calibration.npy.")
    tt.add_argument("task", choices=("sine", "digits"))
    tt.add_argument("--out", required=True, help="model directory to create")
    tt.add_argument("--seed", type=int, default=0)
    tt.add_argument("--steps", type=int, help="training steps (default: 3000 for sine, 600 for digits)")
    tt.add_argument("--force", action="store_true", help="replace --out if it exists")
    tt.set_defaults(func=cmd_tinyml_train)
