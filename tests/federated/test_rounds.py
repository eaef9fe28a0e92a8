"""Aggregator + device clients over the in-memory bus: rounds, bad actors, int8 updates, resume."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgebert.federated.aggregator import Aggregator, JobConfig
from edgebert.federated.client import DeviceClient
from edgebert.federated.tasks import DeviceTask, new_learner
from edgebert.messaging.protocol import Message, Topics
from edgebert.messaging.transport import Channel, InMemoryBus


def fleet(bus: InMemoryBus, topics: Topics, n: int, job: str = "sine", int8: bool = False) -> list[DeviceClient]:
    clients = []
    for i in range(n):
        task = DeviceTask("sine", device_seed=i)
        clients.append(DeviceClient(Channel(bus.client(f"dev{i}"), topics, f"dev{i}"), job,
                                    new_learner("sine", 0.02, seed=i), task.round_data, inner_steps=5,
                                    int8_updates=int8))
    return clients


def run_job(tmp: Path, cfg: JobConfig, n: int = 6, int8: bool = False, bus: InMemoryBus | None = None):
    bus = bus or InMemoryBus()
    topics = Topics("t", "f")
    clients = fleet(bus, topics, n, int8=int8)
    agg = Aggregator(Channel(bus.client("agg"), topics, "agg"), cfg, new_learner("sine", 0.02).get_weights(), tmp)
    return agg, clients, agg.run(timeout=30, wait_for_devices=1)


def test_rounds_run_to_the_end_with_quorum(tmp_path: Path) -> None:
    cfg = JobConfig("sine", "sine", rounds=4, fraction=0.5, min_participants=2)

    agg, clients, final = run_job(tmp_path, cfg)

    assert agg.done.is_set() and agg.round == 4 and [x["accepted"] for x in agg.metrics()] == [3, 3, 3, 3]
    assert all(c.final is not None and np.array_equal(c.final["layers.0.weight"], final["layers.0.weight"])
               for c in clients)
    assert sum(len(c.rounds_done) for c in clients) == 12
    announcement = Message.from_bytes(agg.ch.transport.bus.retained[agg.ch.topics.job("sine")])
    assert announcement.kind == "job" and announcement.info["status"] == "done" and announcement.info["config"]["rounds"] == 4


def test_int8_updates_with_error_feedback_are_accepted(tmp_path: Path) -> None:
    cfg = JobConfig("sine", "sine", rounds=2, fraction=1.0)

    agg, _, _ = run_job(tmp_path, cfg, n=4, int8=True)

    assert [x["accepted"] for x in agg.metrics()] == [4, 4]


def test_garbage_nan_stale_and_impostor_updates_never_stop_a_round(tmp_path: Path) -> None:
    bus = InMemoryBus()
    topics = Topics("t", "f")
    evil = bus.client("evil")
    shapes = new_learner("sine", 0.02).get_weights()

    def attack(topic: str, payload: bytes) -> bool:
        if topic.endswith("/model"):
            msg = Message.from_bytes(payload) if payload[:4] == b"EBF1" else None
            if msg is not None and msg.kind == "model" and msg.info.get("participants"):
                r, target = msg.round, msg.info["participants"][0]
                evil.publish(topics.update("sine", target), b"\x00garbage" * 100)
                nan = {k: np.full_like(v, np.nan) for k, v in shapes.items()}
                evil.publish(topics.update("sine", target), Message("update", target, job="sine", round=r,
                                                                    samples=10, tensors=nan).to_bytes())
                evil.publish(topics.update("sine", "dev1"), Message("update", "mallory", job="sine", round=r,
                                                                    samples=10, tensors=shapes).to_bytes())
                evil.publish(topics.update("sine", target), Message("update", target, job="sine", round=r + 5,
                                                                    samples=10, tensors=shapes).to_bytes())
        return False

    bus.drop = attack
    cfg = JobConfig("sine", "sine", rounds=3, fraction=1.0)

    agg, _, _ = run_job(tmp_path, cfg, n=4, bus=bus)

    logs = agg.metrics()
    assert [x["accepted"] for x in logs] == [4, 4, 4]
    assert all({"invalid", "unauthenticated", "stale"} <= set(x["rejected"]) for x in logs)
    assert agg.ch.rejected  # the garbage was counted by the channel, never handled


def test_a_killed_aggregator_resumes_mid_round_and_ends_identically(tmp_path: Path) -> None:
    cfg = JobConfig("sine", "sine", rounds=3, fraction=1.0, deadline_s=60)
    _, _, uninterrupted = run_job(tmp_path / "a", cfg, n=4)

    bus = InMemoryBus()
    topics = Topics("t", "f")
    fleet(bus, topics, 4)
    state = tmp_path / "b"
    first = Aggregator(Channel(bus.client("agg"), topics, "agg"), cfg, new_learner("sine", 0.02).get_weights(), state)
    cut = {"n": 0}

    def crash_after_two_updates(topic: str, payload: bytes) -> bool:  # the aggregator "dies" in round 1
        if "/updates/" in topic and first.round == 1:
            cut["n"] += 1
            return cut["n"] > 2
        return False

    bus.drop = crash_after_two_updates
    first.run(timeout=2, wait_for_devices=1)
    assert first.round == 1 and len(first.accepted) == 2 and not first.done.is_set()
    first.ch.transport.close()
    bus.drop = lambda topic, payload: False

    second = Aggregator(Channel(bus.client("agg2"), topics, "agg"), cfg, {}, state)  # from disk only
    resumed = second.run(timeout=30, wait_for_devices=1)

    assert second.done.is_set() and second.round == 3
    for k, v in uninterrupted.items():
        np.testing.assert_array_equal(resumed[k], v)


def test_job_config_validation() -> None:
    with pytest.raises(Exception, match="--algorithm"):
        JobConfig("j", "sine", algorithm="fedsgd")


def test_fedprox_keeps_a_device_near_the_global_model() -> None:
    from edgebert.federated.aggregate import global_norm

    global_w = new_learner("sine", 0.02).get_weights()
    msg = Message("model", "agg", job="sine", round=0, info={"participants": ["d"]}, tensors=global_w)
    moved = {}
    for mu in (0.0, 5.0):
        client = DeviceClient(Channel(InMemoryBus().client("d"), Topics("t", "f"), "d"), "sine",
                              new_learner("sine", 0.02), DeviceTask("sine", device_seed=1).round_data, inner_steps=20,
                              fedprox_mu=mu)

        update = client._train(msg)

        moved[mu] = global_norm({k: update.tensors[k] - global_w[k] for k in global_w})
    assert 0 < moved[5.0] < 0.8 * moved[0.0]  # the proximal term pulls every step back towards the global model
