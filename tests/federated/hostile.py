"""A compromised device for the attack tests and benchmarks/robust_aggregation.py: it trains like
the others, holds its own valid key, and sends the worst thing each attack allows."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from edgebert.errors import InputError
from edgebert.federated.aggregator import Aggregator, JobConfig
from edgebert.federated.auth import sign_update
from edgebert.federated.client import DeviceClient
from edgebert.federated.tasks import DeviceTask, few_shot_score, new_learner
from edgebert.messaging.protocol import Message, Topics
from edgebert.messaging.transport import Channel, InMemoryBus

ATTACKS = ("huge_norm", "inflated_samples", "nan", "replay", "impersonation", "overflow_samples", "empty_scale")


class HostileClient(DeviceClient):
    """A device that trains like the others, then sends the worst thing ``attack`` allows."""

    def __init__(self, *args: object, attack: str, keys: dict[str, bytes], **kw: object) -> None:
        self.attack, self.keys, self.sent_before = attack, keys, []
        super().__init__(*args, **kw)  # type: ignore[arg-type]

    def _on_model(self, topic: str, msg: Message) -> None:
        if msg.kind != "model" or msg.info.get("final") or self.me not in msg.info.get("participants", []):
            return super()._on_model(topic, msg)
        honest = self._train(msg)
        evil = self._evil(honest, msg)
        for target, update in evil:
            self.ch.send(self.ch.topics.update(self.job, target), update)
        self.sent_before.append(sign_update(honest, self.key))  # type: ignore[arg-type]

    def _evil(self, honest: Message, msg: Message) -> list[tuple[str, Message]]:
        g = msg.tensors
        key = self.key
        assert key is not None
        signed = lambda m: sign_update(m, key)  # noqa: E731
        if self.attack == "huge_norm":
            return [(self.me, signed(replace(honest, tensors={k: g[k] - 1e6 * (v - g[k]) - 1e3
                                                             for k, v in honest.tensors.items()})))]
        if self.attack == "inflated_samples":  # a plausible but reversed update claiming a billion samples
            return [(self.me, signed(replace(honest, samples=10**9, tensors={k: g[k] - 5 * (v - g[k])
                                                                            for k, v in honest.tensors.items()})))]
        if self.attack == "nan":
            return [(self.me, signed(replace(honest, tensors={k: np.full_like(v, np.nan)
                                                             for k, v in honest.tensors.items()})))]
        if self.attack == "replay":  # last round's (validly signed) update again, then an honest one
            return [(self.me, u) for u in self.sent_before[-1:]] + [(self.me, signed(honest))]
        if self.attack == "impersonation":  # as every other participant, signed with its own key
            forged = [(d, signed(replace(honest, sender=d, tensors={k: g[k] + 1e3 for k in g})))
                      for d in msg.info["participants"] if d != self.me]
            return forged + [(self.me, signed(honest))]
        if self.attack == "overflow_samples":
            return [(self.me, signed(replace(honest, samples=10**400)))]
        if self.attack == "empty_scale":
            tensors = {**{k: np.zeros(v.shape, np.int8) for k, v in g.items()},
                       **{f"{k}.scale": np.zeros(0, np.float32) for k in g}}
            return [(self.me, signed(replace(honest, tensors=tensors, info={"encoding": "int8-delta"})))]
        raise AssertionError(self.attack)


@dataclass(frozen=True)
class Workload:
    """A sine meta-learning job; every tenth device (index 3, 13, 23, …) is the hostile one."""

    devices: int = 10
    per_round: int = 5
    rounds: int = 8
    inner_steps: int = 10
    inner_lr: float = 0.02
    deadline_s: float = 1.0


SMALL = Workload()  # the tests: fast, enough to show what a rule lets one device do
LEARNING = Workload(devices=300, per_round=30, rounds=60, inner_steps=32, inner_lr=0.01, deadline_s=0.5)  # learns


def run(tmp: Path, attack: str | None, robust: str = "clipped_mean", seed: int = 1, work: Workload = SMALL
        ) -> tuple[float, Aggregator]:
    bus, topics = InMemoryBus(), Topics("t", "f")
    names = [f"dev{i}" for i in range(work.devices)]
    keys = {n: secrets.token_bytes(32) for n in names}
    for i, n in enumerate(names):
        args = (Channel(bus.client(n), topics, n), "sine", new_learner("sine", work.inner_lr, seed=i),
                DeviceTask("sine", device_seed=i).round_data)
        kw = {"inner_steps": work.inner_steps, "update_key": keys[n]}
        if attack and i % 10 == 3:
            HostileClient(*args, attack=attack, keys=keys, **kw)  # type: ignore[arg-type]
        else:
            DeviceClient(*args, **kw)  # type: ignore[arg-type]
    cfg = JobConfig("sine", "sine", rounds=work.rounds, fraction=work.per_round / work.devices,
                    min_participants=work.per_round, deadline_s=work.deadline_s, robust=robust, seed=seed)
    init = new_learner("sine", work.inner_lr).get_weights()
    agg = Aggregator(Channel(bus.client("agg"), topics, "agg"), cfg, init, tmp, devices=names, device_keys=keys)
    final = agg.run(timeout=600, wait_for_devices=1)
    unseen = [DeviceTask("sine", 10_000_000 + i) for i in range(30)]
    try:
        return few_shot_score("sine", final, unseen, 10), agg
    except InputError:  # the global model is so far off that adapting to it overflows
        return float("inf"), agg
