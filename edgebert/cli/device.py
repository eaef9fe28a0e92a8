"""``edgebert device run``: an artifact as a device (inference and online learning on a stream)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edgebert.cli.common import EXIT_BAD_INPUT
from edgebert.errors import InputError


def cmd_device_run(args: argparse.Namespace) -> int:
    from edgebert.runtime.device import Device, DeviceConfig
    from edgebert.runtime.engine import Engine

    config = DeviceConfig(mode=args.mode, optimizer=args.optimizer, lr=args.lr, normalize=not args.no_normalize,
                          allow_new_classes=args.allow_new_classes,
                          hidden=tuple(args.hidden), replay=args.replay, save_every=args.save_every)
    device = Device(Engine.load(args.artifact), config, Path(args.state) if args.state else None)
    if args.stream == "-":
        errors = device.run_stream(sys.stdin, sys.stdout)
    else:
        path = Path(args.stream)
        if not path.is_file():
            raise InputError(f"{path}: expected a JSON-lines stream file, found no such file")
        with path.open(encoding="utf-8") as lines:
            errors = device.run_stream(lines, sys.stdout)
    summary = f"{device.seen} labelled samples"
    if device.learner.loss == "xent" and device.seen:
        summary += f", prequential accuracy {device.correct / device.seen:.3f}"
    print(f"edgebert device: {summary}; {errors} bad message(s)", file=sys.stderr)
    return EXIT_BAD_INPUT if errors else 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    dv = sub.add_parser("device", help="run an artifact as a device: inference and online learning")
    dsub = dv.add_subparsers(dest="device_command", required=True)
    dr = dsub.add_parser("run", help="serve inference and learn from a JSON-lines stream",
                         description="Reads JSON lines {\"x\": …} (predict) or {\"x\": …, \"y\": …} (predict, then "
                                     "learn) from a file or stdin and writes one JSON reply per line. Text artifacts take "
                                     "a sentence as x, TinyML artifacts a list of numbers.")
    dr.add_argument("artifact", help="artifact directory (every sha256 is verified first)")
    dr.add_argument("--stream", default="-", help="JSON-lines file, or - for stdin (default)")
    dr.add_argument("--mode", choices=("head", "full"), default="head",
                    help="head: frozen backbone + trainable head (default); full: train every layer of a TinyML net")
    dr.add_argument("--optimizer", choices=("sgd", "adam"), default="adam", help="default adam")
    dr.add_argument("--lr", type=float, default=5e-3, help="learning rate (default 0.005)")
    dr.add_argument("--allow-new-classes", action="store_true",
                    help="learn labels a classifier artifact does not have (default: such a message gets an error reply)")
    dr.add_argument("--no-normalize", action="store_true",
                    help="head mode: feed the features as they are (default: standardized online with running "
                         "mean/variance, which recovers faster after drift)")
    dr.add_argument("--hidden", type=int, nargs="*", default=[], help="hidden layer sizes of the head")
    dr.add_argument("--replay", type=int, default=0, help="replay buffer size (0: off)")
    dr.add_argument("--state", help="safetensors file for the learner's state: loaded at start, saved as it learns")
    dr.add_argument("--save-every", type=int, default=50, help="save the state every N updates")
    dr.set_defaults(func=cmd_device_run)
