"""Step 4: federated Reptile rounds on the vibration devices, with authenticated updates."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import numpy as np

from edgebert.demo.fleet import DemoFleet
from edgebert.progress import Progress


def federate(fleet: DemoFleet, url: str, topics: Any, names: list[str], init: dict[str, np.ndarray],  # noqa: ANN401
             rounds: int, meta_step: float, seed: int, work: Path, progress: Progress) -> dict[str, Any]:
    from edgebert.federated.aggregator import Aggregator, JobConfig
    from edgebert.federated.client import DeviceClient
    from edgebert.federated.tasks import DeviceTask, few_shot_score, new_learner
    from edgebert.messaging.client import connect
    from edgebert.messaging.mqtt import MqttLoop

    keys = {n: secrets.token_bytes(32) for n in names}  # per-device update keys: updates are authenticated
    clients = [DeviceClient(fleet.channels[n], "vibration", new_learner("sine", 0.01, i),
                            DeviceTask("sine", seed * 1_000_003 + i).round_data, inner_steps=32, shots=10,
                            update_key=keys[n])
               for i, n in enumerate(names)]
    per_round = max(2, len(names) // 2)
    job = JobConfig("vibration", "sine", "reptile", rounds, fraction=per_round / len(names),
                    min_participants=per_round, deadline_s=60.0, server_step=meta_step, inner_steps=32, inner_lr=0.01,
                    shots=10, seed=seed)
    unseen = [DeviceTask("sine", 10_000_000 + seed * 1000 + i) for i in range(100)]
    scores = [few_shot_score("sine", init, unseen, 10)]
    loop = MqttLoop()
    try:
        agg = Aggregator(connect(url, topics, "aggregator", loop=loop), job, init, work / "aggregator", devices=names,
                         keep_history=True,
                         device_keys=keys)

        def on_round(n: int, weights: dict[str, np.ndarray]) -> None:
            scores.append(few_shot_score("sine", weights, unseen, 10))
            progress("federated rounds", n, rounds)

        final = agg.drive(on_round)
        logs = agg.metrics()
    finally:
        loop.stop()
    per_round_rows = [{"round": r["round"], "participants": r["accepted"], "closed_by": r["closed_by"],
                       "wall_s": r["wall_s"], "loss_before": r["device_metrics"].get("loss_first"),
                       "loss_after": r["device_metrics"].get("loss_last"), "unseen_mse": scores[i + 1]}
                      for i, r in enumerate(logs)]
    return {"devices": len(names), "per_round": per_round, "algorithm": "reptile", "meta_step": meta_step,
            "inner_steps": 32, "shots": 10,
            "unseen_devices": len(unseen), "unseen_mse_initial": scores[0], "unseen_mse_final": scores[-1],
            "rounds": per_round_rows, "final_weights": final,
            "device_rounds": {c.me: len(c.rounds_done) for c in clients}}
