"""Benchmark: federated meta-learning over MQTT.

(a) sine-wave few-shot regression, each device one task (amplitude 0.1-5, phase 0-pi, x in [-5, 5]):
    MSE on unseen devices after 10-shot adaptation (32 SGD steps) from the Reptile-learned init,
    the FedAvg init and a random init; 1,000 devices, 100 per round, through the broker.
(b) digits with per-device sensor shift (gain/offset, half the devices a 1-pixel shift): accuracy
    after 10-shot adaptation on unseen devices, same three inits.
(c) round wall time and bytes per round for N = 10, 100, 1000 devices, 10% per round, through
    Mosquitto (127.0.0.1:1883; the embedded broker when Mosquitto is down, said in the table).
(d) the 1000-device sine workload (100 per round) in Flower's simulation, in the same run, when
    flwr is installed (pip install "flwr[simulation]").

    python benchmarks/federated.py [--rounds 30] [--out benchmarks/results/federated.json]
"""

from __future__ import annotations

import argparse
import socket
import sys
import time
from pathlib import Path

import numpy as np
from common import finish

from edgebert.federated.simulate import SimConfig, simulate

MOSQUITTO = "mqtt://127.0.0.1:1883"


def mosquitto() -> str | None:
    try:
        socket.create_connection(("127.0.0.1", 1883), timeout=1).close()
        return MOSQUITTO
    except OSError:
        return None


def few_shot(task: str, broker: str | None, rounds: int, devices: int, per_round: int) -> dict:
    out = {}
    for algorithm in ("reptile", "fedavg"):
        # the plain FedAvg/Reptile combiner: this compares the algorithms (benchmarks/robust_aggregation.py
        # measures the robust default, clipped_mean, with and without hostile devices)
        r = simulate(SimConfig(task, devices, per_round, rounds, algorithm, broker, eval_devices=100, robust="none"))
        out[algorithm] = {"final": r["evaluation"]["final"], "round_wall_s": r["round_wall_s"],
                          "inner_steps": r["config"]["inner_steps"] or (32 if algorithm == "reptile" else 1)}
        out["random_init"] = r["evaluation"]["initial"]
        out["metric"] = r["evaluation"]["metric"]
    return out


def scaling(broker: str | None, rounds: int) -> list[dict]:
    rows = []
    for n in (10, 100, 1000):
        r = simulate(SimConfig("sine", n, max(1, n // 10), rounds, "reptile", broker, eval_devices=5))
        rows.append({"devices": n, "per_round": max(1, n // 10), "connect_s": r["connect_s"],
                     "round_wall_s": r["round_wall_s"], "bytes_per_round": r["bytes_per_round"],
                     "broker": r["broker"]})
    return rows


def flower(rounds: int, devices: int = 1000, per_round: int = 100) -> dict:
    """The same sine workload in Flower's simulation engine (Ray), numpy clients, FedAvg-style rounds."""
    try:
        import flwr
    except ImportError:
        return {"skipped": "flwr is not installed (pip install 'flwr[simulation]')"}
    from benchmarks_flower import run_flower  # local helper module, imported only when flwr is there  # noqa: I001

    t = time.perf_counter()
    result = run_flower(rounds, devices, per_round)
    result.update({"flwr": flwr.__version__, "total_s": time.perf_counter() - t})
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=100, help="rounds for (a) and (b)")
    parser.add_argument("--scaling-rounds", type=int, default=5)
    parser.add_argument("--skip-flower", action="store_true")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "federated.json"))
    args = parser.parse_args()
    broker = mosquitto()
    where = "Mosquitto 127.0.0.1:1883" if broker else "the embedded amqtt broker (Mosquitto is down)"
    result: dict = {"broker": where}

    result["sine"] = s = few_shot("sine", broker, args.rounds, 1000, 100)
    print(f"\n(a) sine, 1000 devices, 100 per round, {args.rounds} rounds, through {where}; "
          f"10-shot MSE on 100 unseen devices (lower is better)")
    print(f"    Reptile init {s['reptile']['final']:.3f} | FedAvg init {s['fedavg']['final']:.3f} | "
          f"random init {s['random_init']:.3f} | Reptile/FedAvg = {s['reptile']['final'] / s['fedavg']['final']:.2f}")
    result["digits"] = d = few_shot("digits", broker, args.rounds, 200, 20)
    print(f"\n(b) digits with per-device sensor shift, 200 devices, 20 per round, {args.rounds} rounds; "
          f"10-shot accuracy on 100 unseen devices (higher is better)")
    print(f"    Reptile init {d['reptile']['final']:.3f} | FedAvg init {d['fedavg']['final']:.3f} | "
          f"random init {d['random_init']:.3f}")
    result["scaling"] = rows = scaling(broker, args.scaling_rounds)
    print(f"\n(c) round wall time and bytes per round, 10% per round, {args.scaling_rounds} rounds, through {where}")
    print(f"{'devices':>8}{'per round':>10}{'connect s':>11}{'round s median':>16}{'round s max':>13}"
          f"{'aggregator B/round':>20}{'all devices B/round':>21}")
    for r in rows:
        print(f"{r['devices']:>8}{r['per_round']:>10}{r['connect_s']:>11.2f}{r['round_wall_s']['median']:>16.3f}"
              f"{r['round_wall_s']['max']:>13.3f}{r['bytes_per_round']['aggregator']:>20.0f}"
              f"{r['bytes_per_round']['devices']:>21.0f}")
    if not args.skip_flower:
        result["flower"] = f = flower(args.scaling_rounds)
        ours = rows[-1]["round_wall_s"]["median"]
        if "skipped" in f:
            print(f"\n(d) Flower: {f['skipped']}")
        else:
            print(f"\n(d) Flower {f['flwr']} simulation (Ray), same 1000-device sine workload, 100 per round: "
                  f"{f['round_s']:.2f} s per round (mean over the rounds) vs EdgeBERT over MQTT {ours:.3f} s (median): "
                  f"{f['round_s'] / ours:.1f}x")
    large = rows[-1]["round_wall_s"]["median"]
    ratio = s["reptile"]["final"] / s["fedavg"]["final"]
    targets = {"1000 devices, 100/round: <= 2 s per round": large <= 2.0,
               "Reptile 10-shot MSE <= half of FedAvg's": ratio <= 0.5}
    if "flower" in result and "round_s" in result["flower"]:
        targets["faster than Flower's simulation"] = large < result["flower"]["round_s"]
    return finish(targets, result, args.out)


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    sys.exit(main())
