"""``edgebert federate simulate``: N device clients (each its own MQTT connection) + the aggregator
on one machine, through a real broker (the embedded one unless a URL is given)."""

from __future__ import annotations

import secrets
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgebert.federated.aggregate import DEFAULT_RULE
from edgebert.federated.aggregator import Aggregator, JobConfig
from edgebert.federated.client import DeviceClient
from edgebert.federated.tasks import DeviceTask, few_shot_score, new_learner
from edgebert.messaging.broker import EmbeddedBroker
from edgebert.messaging.client import connect
from edgebert.messaging.mqtt import BrokerConfig, MqttLoop
from edgebert.messaging.protocol import Topics
from edgebert.progress import Progress


@dataclass(frozen=True)
class SimConfig:
    task: str = "sine"
    devices: int = 100
    per_round: int = 10
    rounds: int = 10
    algorithm: str = "reptile"
    broker: str | None = None
    inner_steps: int | None = None  # default: 32 for Reptile, 1 (one local epoch on its 10 samples) for FedAvg
    inner_lr: float = 0.01
    shots: int = 10
    eval_devices: int = 50
    int8_updates: bool = False
    seed: int = 0
    deadline_s: float = 60.0
    robust: str = DEFAULT_RULE

    @property
    def k(self) -> int:
        return self.inner_steps or (32 if self.algorithm == "reptile" else 1)


def _digits() -> tuple[np.ndarray, np.ndarray]:
    from edgebert.model.tinyml import digits_data

    return digits_data()


def simulate(cfg: SimConfig, progress: Progress = lambda s, d, t: None, state_dir: Path | None = None) -> dict[str, Any]:
    broker = EmbeddedBroker().start() if cfg.broker is None else None
    url = broker.url if broker else str(cfg.broker)
    topics = Topics("edgebert-sim", f"run-{uuid.uuid4().hex[:8]}")  # isolated on a shared broker
    dx, dy = _digits() if cfg.task == "digits" else (None, None)

    def task(i: int) -> DeviceTask:
        return DeviceTask(cfg.task, cfg.seed * 1_000_003 + i, dx, dy)

    device_loop, agg_loop = MqttLoop(), MqttLoop()
    keys = {f"dev{i:05d}": secrets.token_bytes(32) for i in range(cfg.devices)}  # as `fleet credentials` hands out
    clients: list[DeviceClient] = []
    tmp = tempfile.TemporaryDirectory() if state_dir is None else None
    try:
        t0 = time.perf_counter()
        for i in range(cfg.devices):
            name = f"dev{i:05d}"
            channel = connect(url, topics, name, device=True, loop=device_loop)
            clients.append(DeviceClient(channel, cfg.task, new_learner(cfg.task, cfg.inner_lr, i),
                                        task(i).round_data, inner_steps=cfg.k, shots=cfg.shots,
                                        int8_updates=cfg.int8_updates, update_key=keys[name]))
            progress("connect", i + 1, cfg.devices)
        connect_s = time.perf_counter() - t0
        job = JobConfig(cfg.task, cfg.task, cfg.algorithm, cfg.rounds, fraction=cfg.per_round / cfg.devices,
                        min_participants=cfg.per_round, deadline_s=cfg.deadline_s, inner_steps=cfg.k,
                        inner_lr=cfg.inner_lr, shots=cfg.shots, seed=cfg.seed, robust=cfg.robust)
        init = new_learner(cfg.task, cfg.inner_lr, seed=cfg.seed).get_weights()
        agg = Aggregator(connect(url, topics, "aggregator", loop=agg_loop), job, init,
                         Path(state_dir or tmp.name), devices=sorted(keys),  # type: ignore[union-attr]
                         device_keys=keys)
        unseen = [task(10_000_000 + i) for i in range(cfg.eval_devices)]
        evaluation = [few_shot_score(cfg.task, init, unseen, cfg.shots)]
        final = agg.drive(lambda n, weights: progress("round", n, cfg.rounds))
        wall = time.perf_counter() - t0
        evaluation.append(few_shot_score(cfg.task, final, unseen, cfg.shots))
        device_bytes = sum(c.ch.sent_bytes + c.ch.received_bytes for c in clients)
        rounds = agg.metrics()
        return {
            "config": asdict(cfg), "broker": BrokerConfig(url).redacted(), "connect_s": connect_s, "wall_s": wall,
            "rounds": rounds,
            "round_wall_s": {"median": float(np.median([r["wall_s"] for r in rounds])),
                             "max": float(np.max([r["wall_s"] for r in rounds]))},
            "bytes_per_round": {"aggregator": float(np.mean([r["bytes_in"] + r["bytes_out"] for r in rounds])),
                                "devices": device_bytes / max(1, len(rounds))},
            "evaluation": {"metric": "mse" if cfg.task == "sine" else "accuracy", "unseen_devices": cfg.eval_devices,
                           "shots": cfg.shots, "initial": evaluation[0], "final": evaluation[-1]},
            "final_weights": final,
        }
    finally:
        device_loop.stop()
        agg_loop.stop()
        if broker is not None:
            broker.stop()
        if tmp is not None:
            tmp.cleanup()
