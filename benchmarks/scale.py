"""Benchmark: federated rounds at fleet scale, flat vs hierarchical, through a 3-node broker cluster.

For each fleet size N (1,000 and 10,000 by default; 10% of the fleet per round) and each shape
(one flat aggregator; a root and 3 edge aggregators), a fresh 3-node NATS cluster speaking MQTT
(edgebert.messaging.cluster) carries every message: each simulated device is its own MQTT
connection, spread over the nodes by client id. Same workload everywhere: the sine task's
1-40-40-1 MLP, FedAvg, one local epoch (one SGD step on its 10 samples), no robust rule (plain
FedAvg, as Flower's). Measured: connect time of the fleet, round wall time (median, p95), bytes in
per round at the aggregator/root and at each edge, broker CPU per round (the three nodes' CPU time
while the rounds ran, / rounds), broker and simulator memory. Flower's simulation (Ray) runs the
same clients at the same counts in the same run (its own process), when flwr is installed.

`--kill` adds a hierarchical run in which the cluster node holding the most devices is killed
(SIGKILL) when round 2 opens: the rounds' devices used show whether that round closed and how many
devices the next round has back.

    python benchmarks/scale.py [--sizes 1000,10000] [--rounds 5] [--kill] [--out benchmarks/results/scale.json]

The simulated devices run in this Python process (one MQTT loop thread for all of them); the
aggregator, or the root and the 3 edges, run as `edgebert federate serve` processes, as deployed;
the three broker nodes are processes too; all of it on the same 2 cores. Every client subscribes
at QoS 0 (`--subscribe-qos 0`: on NATS a QoS 1 subscription is a JetStream consumer, and 10,000
of them do not fit); what a dying node loses is sent again when the aggregators call whoever is
missing.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # (before numpy) tiny matrices: a second BLAS thread only spins
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np
import psutil
from common import finish

from edgebert.federated.simulate import SimConfig, simulate
from edgebert.messaging.cluster import NatsCluster

EDGES = 3


def broker_cpu(cluster: NatsCluster) -> float:
    total = 0.0
    for proc in cluster.procs:
        if proc is not None and proc.poll() is None:
            t = psutil.Process(proc.pid).cpu_times()
            total += t.user + t.system
    return total


def broker_rss_mb(cluster: NatsCluster) -> float:
    return sum(psutil.Process(p.pid).memory_info().rss for p in cluster.procs
               if p is not None and p.poll() is None) / 2**20


def run_edgebert(devices: int, edges: int, rounds: int, kill_at: int | None = None) -> dict:
    with tempfile.TemporaryDirectory() as tmp, NatsCluster(Path(tmp) / "cluster", nodes=3) as cluster:
        marks: dict[str, float] = {}
        killed: dict[str, int] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage == "connect" and done == total:
                marks["cpu0"] = broker_cpu(cluster)
            if stage == "round" and done == rounds:
                marks["cpu1"] = broker_cpu(cluster)
            if stage == "round" and kill_at is not None and done == kill_at and not killed:
                killed["node"], killed["at_round"] = 0, done  # (each node holds about a third of the fleet)
                threading.Timer(0.3, cluster.kill, [0]).start()  # mid-round

        cfg = SimConfig("sine", devices, devices // 10, rounds, "fedavg", cluster.url, inner_steps=1,
                        eval_devices=5, robust="none", edges=edges, subscribe_qos=0, deadline_s=60.0, processes=True)
        result = simulate(cfg, progress)
        result.pop("final_weights")
        rss = broker_rss_mb(cluster)
    rounds_ = result["rounds"]
    used = [r["devices_accepted"] if edges else r["accepted"] for r in rounds_]
    return {"devices": devices, "shape": f"{edges} edges" if edges else "flat", "connect_s": result["connect_s"],
            "round_median_s": result["round_wall_s"]["median"], "round_p95_s": result["round_wall_s"]["p95"],
            "in_bytes_per_round": result["bytes_per_round"]["aggregator_in"],
            "edge_in_bytes_per_round": result["bytes_per_round"].get("edges_in", []),
            "broker_cpu_s_per_round": (marks.get("cpu1", np.nan) - marks.get("cpu0", np.nan)) / rounds,
            "broker_rss_mb": rss, "simulator_max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "devices_used": used, "closed_by": [r["closed_by"] for r in rounds_],
            "round_s": [r["wall_s"] for r in rounds_], **({"killed": killed} if kill_at is not None else {})}


def run_flower(devices: int, rounds: int) -> dict:
    try:
        import flwr
    except ImportError:
        return {"skipped": "flwr is not installed (pip install 'flwr[simulation]')"}
    here = Path(__file__).parent
    proc = subprocess.run([sys.executable, str(here / "benchmarks_flower.py"), "--devices", str(devices),
                           "--per-round", str(devices // 10), "--rounds", str(rounds), "--steps", "1"],
                          capture_output=True, text=True, cwd=here, timeout=7200)
    if proc.returncode != 0:
        return {"failed": proc.stderr[-500:]}
    return {**json.loads(proc.stdout.strip().splitlines()[-1]), "flwr": flwr.__version__}


def plot(rows: list[dict], flower: dict[int, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for shape, marker in (("flat", "o"), (f"{EDGES} edges", "s")):
        pts = sorted((r["devices"], r["round_median_s"]) for r in rows if r["shape"] == shape and "killed" not in r)
        if pts:
            ax.plot(*zip(*pts, strict=True), marker=marker, label=f"edgebert, {shape} (3-node NATS cluster)")
    pts = sorted((n, f["round_s"]) for n, f in flower.items() if "round_s" in f)
    if pts:
        ax.plot(*zip(*pts, strict=True), marker="^", label="Flower simulation (Ray)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("devices in the fleet (10% per round)")
    ax.set_ylabel("median round wall time (s)")
    ax.set_title("Round time against fleet size, 2 cores")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--flower-rounds", type=int, default=3)
    parser.add_argument("--kill", action="store_true", help="add a hierarchical run with a node killed mid-round")
    parser.add_argument("--kill-size", type=int, default=10000)
    parser.add_argument("--skip-flower", action="store_true")
    parser.add_argument("--skip-flat", action="store_true")
    root = Path(__file__).resolve().parent.parent
    parser.add_argument("--plot", default=str(root / "docs/img/scale.png"))
    parser.add_argument("--out", default=str(root / "benchmarks/results/scale.json"))
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    rows: list[dict] = []
    flower: dict[int, dict] = {}
    for n in sizes:
        for edges in ((EDGES,) if args.skip_flat else (0, EDGES)):
            print(f"{n} devices, {'flat' if not edges else f'{edges} edges'} ...", file=sys.stderr, flush=True)
            rows.append(run_edgebert(n, edges, args.rounds))
        if not args.skip_flower:
            print(f"{n} devices, Flower ...", file=sys.stderr, flush=True)
            flower[n] = run_flower(n, args.flower_rounds)
    if args.kill:
        print(f"{args.kill_size} devices, {EDGES} edges, a node killed in round 2 ...", file=sys.stderr, flush=True)
        rows.append(run_edgebert(args.kill_size, EDGES, max(args.rounds, 5), kill_at=2))

    print("| devices | shape | connect s | round median s | round p95 s | bytes in at aggregator/root per round "
          "| bytes in per edge per round | broker CPU s/round | broker RSS MB | Flower round s | ratio to Flower |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        f = flower.get(r["devices"], {})
        fr = f.get("round_s")
        ratio = "-" if fr is None else f"{r['round_median_s'] / fr:.3f}"
        flower_s = "-" if fr is None else f"{fr:.2f}"
        edge_in = ", ".join(f"{b / 1e3:.0f} kB" for b in r["edge_in_bytes_per_round"]) or "-"
        name = r["shape"] + (" (node killed)" if "killed" in r else "")
        cpu = "n/a" if "killed" in r else f"{r['broker_cpu_s_per_round']:.2f}"  # (a dead node's CPU is gone)
        print(f"| {r['devices']:,} | {name} | {r['connect_s']:.1f} | {r['round_median_s']:.3f} | "
              f"{r['round_p95_s']:.3f} | {r['in_bytes_per_round'] / 1e3:,.0f} kB | {edge_in} | "
              f"{cpu} | {r['broker_rss_mb']:.0f} | "
              f"{flower_s} | {ratio} |")
    for r in rows:
        if "killed" in r:
            print(f"node {r['killed'].get('node')} killed in round {r['killed'].get('at_round')}: devices used per "
                  f"round {r['devices_used']}, closed by {r['closed_by']}")

    big = max(sizes)
    hier = next((r for r in rows if r["devices"] == big and r["shape"] != "flat" and "killed" not in r), None)
    flat = next((r for r in rows if r["devices"] == big and r["shape"] == "flat"), None)
    targets: dict[str, bool] = {}
    if hier is not None and big >= 10000:
        targets["10,000 devices, 3 edges: median round <= 2 s"] = hier["round_median_s"] <= 2.0
        fr = flower.get(big, {}).get("round_s")
        if fr:
            targets["<= 0.5x Flower's simulation"] = hier["round_median_s"] <= 0.5 * fr
        if flat is not None:
            targets["root bytes in <= 1/10 of the flat aggregator's"] = \
                hier["in_bytes_per_round"] <= flat["in_bytes_per_round"] / 10
    for r in rows:
        if "killed" in r:
            k = r["killed"]["at_round"]
            per_round = r["devices"] // 10
            targets["node killed: its round closes"] = len(r["devices_used"]) > k
            targets["node killed: next round has >= 95% of the devices back"] = \
                len(r["devices_used"]) > k + 1 and r["devices_used"][k + 1] >= 0.95 * per_round
    plot(rows, flower, Path(args.plot))
    return finish(targets, {"rows": rows, "flower": flower, "edges": EDGES, "rounds": args.rounds}, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
