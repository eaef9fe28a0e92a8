"""One hostile device in ten: unseen-device MSE under each aggregation rule, ours and Flower's.

Workload (tests/federated/hostile.py, ``LEARNING``): the sine meta-learning job of
``federate simulate``, 300 devices with per-device update keys, 30 per round, 60 Reptile rounds of
32 local steps (the untrained model's MSE is ~4.6, a clean run ends near 1); every tenth device
(3, 13, …) is compromised (valid key) and sends, each round it is selected, the worst update each
attack allows. The score is the 10-shot MSE on 30 unseen
devices after the job; ratios are to the clean run of the default rule.

Rules compared in the same run, inside the same aggregator (so the checks before aggregation —
authentication, round, finiteness, shapes, sample bounds — apply to all of them):
- ours: ``clipped_mean`` (the default), ``clipped_trimmed_mean`` and ``none`` (plain FedAvg);
- Flower 1.41's aggregation functions (``flwr.server.strategy.aggregate``): ``aggregate``
  (FedAvg), ``aggregate_median``, ``aggregate_trimmed_avg`` (cut 0.2) and ``aggregate_krum``
  (f = 1), applied to the same accepted updates.

Target (issue 11): with the default rule every attack stays within 10% of the clean MSE.

    python benchmarks/robust_aggregation.py [--seeds 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import finish

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/federated/hostile.py

import edgebert.federated.strategy as aggregator_module  # noqa: E402
from edgebert.federated.aggregate import reptile_update  # noqa: E402
from tests.federated.hostile import ATTACKS, LEARNING, run  # noqa: E402

OURS = ("clipped_mean", "clipped_trimmed_mean", "none")


def flower_rule(name: str):  # noqa: ANN201
    """A ``reptile_update`` replacement that combines with Flower's aggregation function ``name``."""
    from flwr.server.strategy import aggregate as fl

    def update(theta, adapted, samples, step=1.0, rule=None, max_norm=None, trim=0.1):  # noqa: ANN001, ANN202, ARG001
        keys = sorted(theta)
        results = [([a[k] for k in keys], int(n)) for a, n in zip(adapted, samples, strict=True)]
        if name == "fedavg":
            agg = fl.aggregate(results)
        elif name == "median":
            agg = fl.aggregate_median(results)
        elif name == "trimmed_avg":
            agg = fl.aggregate_trimmed_avg(results, 0.2)
        else:
            agg = fl.aggregate_krum(results, num_malicious=1, to_keep=0)
        return {k: (theta[k] + step * (np.asarray(v, np.float64) - theta[k])).astype(np.float32)
                for k, v in zip(keys, agg, strict=True)}

    return update


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--out", default="benchmarks/results/robust_aggregation.json")
    args = ap.parse_args()
    rules = [f"ours:{r}" for r in OURS] + [f"flower:{r}" for r in ("fedavg", "median", "trimmed_avg", "krum")]
    attacks = ("clean",) + ATTACKS
    table: dict[str, dict[str, float]] = {r: {} for r in rules}
    t0 = time.perf_counter()
    for rule in rules:
        who, name = rule.split(":")
        aggregator_module.reptile_update = reptile_update if who == "ours" else flower_rule(name)  # type: ignore[assignment]
        for attack in attacks:
            scores = []
            for seed in range(1, args.seeds + 1):
                with tempfile.TemporaryDirectory() as tmp:
                    mse, _ = run(Path(tmp), None if attack == "clean" else attack,
                                 robust=name if who == "ours" else "none", seed=seed, work=LEARNING)
                scores.append(mse)
            table[rule][attack] = float(np.mean(scores))
            print(f"  {rule:<28} {attack:<18} mse {table[rule][attack]:.4f}", file=sys.stderr, flush=True)
    aggregator_module.reptile_update = reptile_update  # type: ignore[assignment]
    clean = table["ours:clipped_mean"]["clean"]
    print(f"\n10-shot MSE on 30 unseen devices after 60 rounds, 1 hostile device in 10 ({args.seeds} seed(s)); "
          f"ratio to the default rule's clean run ({clean:.4f})")
    head = f"{'rule':<28}" + "".join(f"{a:>18}" for a in attacks)
    print(head + "\n" + "-" * len(head))
    for rule in rules:
        cells = []
        for a in attacks:
            v = table[rule][a]
            cells.append(f"{'inf' if not np.isfinite(v) else f'{v:.4f}'} ({v / clean:.2f}x)" if np.isfinite(v)
                         else "diverged")
        print(f"{rule:<28}" + "".join(f"{c:>18}" for c in cells))
    from edgebert.federated.tasks import DeviceTask, few_shot_score, new_learner

    initial = few_shot_score("sine", new_learner("sine", LEARNING.inner_lr).get_weights(),
                             [DeviceTask("sine", 10_000_000 + i) for i in range(30)], 10)
    print(f"(the untrained initial model: {initial:.4f})")
    default = table["ours:clipped_mean"]
    worst = max(default[a] / clean for a in ATTACKS)
    print(f"default rule, worst attack: {worst:.3f}x the clean MSE; wall {time.perf_counter() - t0:.0f} s")
    return finish({"default rule within 10% of clean under every attack": bool(worst <= 1.10)},
                  {"mse": table, "clean": clean, "initial": initial, "worst_ratio_default": worst,
                   "seeds": args.seeds, "workload": vars(LEARNING) if hasattr(LEARNING, "__dict__") else str(LEARNING)}, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
