"""Hierarchical rounds (root + edge aggregators + devices) over the in-memory bus: the flat
aggregator's model, an edge that dies and one that resumes, hostile partials."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from edgebert.federated.aggregator import Aggregator, JobConfig
from edgebert.federated.client import DeviceClient
from edgebert.federated.edge import EdgeAggregator
from edgebert.federated.hierarchy import edge_of
from edgebert.federated.root import RootAggregator
from edgebert.federated.tasks import DeviceTask, new_learner
from edgebert.messaging.protocol import Message, Topics
from edgebert.messaging.transport import Channel, InMemoryBus
from tests.federated.test_hierarchy import tolerance

TOPICS = Topics("t", "f")
DEVICES = [f"dev{i}" for i in range(9)]


def devices(bus: InMemoryBus, edges: int, names: list[str] = DEVICES) -> list[DeviceClient]:
    out = []
    for name in names:
        i = int(name[3:])
        out.append(DeviceClient(Channel(bus.client(name), TOPICS, name), "sine", new_learner("sine", 0.02, seed=i),
                                DeviceTask("sine", device_seed=i).round_data, inner_steps=5, edges=edges))
    return out


def edge(bus: InMemoryBus, cfg: JobConfig, index: int, edges: int, state: Path, **kw: object) -> EdgeAggregator:
    name = f"edge{index}"
    return EdgeAggregator(Channel(bus.client(f"{name}-{state.name}"), TOPICS, name), cfg, index, edges, state,
                          devices=DEVICES, **kw)  # type: ignore[arg-type]


def root(bus: InMemoryBus, cfg: JobConfig, edges: int, state: Path, **kw: object) -> RootAggregator:
    return RootAggregator(Channel(bus.client("root"), TOPICS, "root"), cfg, new_learner("sine", 0.02).get_weights(),
                          state, edges, **kw)  # type: ignore[arg-type]


def flat(tmp: Path, cfg: JobConfig) -> dict[str, np.ndarray]:
    bus = InMemoryBus()
    devices(bus, 0)
    agg = Aggregator(Channel(bus.client("agg"), TOPICS, "agg"), cfg, new_learner("sine", 0.02).get_weights(), tmp,
                     devices=DEVICES)
    return agg.drive()


def run(thread_target: object) -> threading.Thread:
    t = threading.Thread(target=thread_target, daemon=True)  # type: ignore[arg-type]
    t.start()
    return t


@pytest.mark.parametrize(("algorithm", "step"), [("fedavg", 1.0), ("reptile", 0.5)])
def test_hierarchical_rounds_give_the_flat_aggregators_model(tmp_path: Path, algorithm: str, step: float) -> None:
    cfg = JobConfig("sine", "sine", algorithm, rounds=1, fraction=1.0, robust="none", server_step=step)
    expected = flat(tmp_path / "flat", cfg)

    bus = InMemoryBus()
    devices(bus, 3)
    edges = [edge(bus, cfg, i, 3, tmp_path / f"e{i}") for i in range(3)]
    top = root(bus, cfg, 3, tmp_path / "root")
    got = top.drive()

    theta = new_learner("sine", 0.02).get_weights()
    tol = tolerance(theta, expected, step, 3)
    for k in theta:
        assert np.all(np.abs(got[k] - expected[k]) <= tol[k]), (k, np.abs(got[k] - expected[k]).max())
    log = top.metrics()[0]
    assert (log["selected"], log["accepted"], log["devices_selected"], log["devices_accepted"]) == (3, 3, 9, 9)
    assert sorted(d for e in edges for d in e.known) == DEVICES  # each device known by its own edge only
    assert all(edge_of(d, 3) == e.edge for e in edges for d in e.known)
    assert log["bytes_in"] < 4 * sum(v.nbytes for v in theta.values())  # three partials, not nine updates


def test_an_edge_that_dies_is_not_waited_for_and_a_restarted_one_resumes(tmp_path: Path) -> None:
    cfg = JobConfig("sine", "sine", "fedavg", rounds=2, fraction=1.0, robust="none", deadline_s=30)
    bus = InMemoryBus()
    clients = devices(bus, 3)
    assert sum(edge_of(c.me, 3) == "edge1" for c in clients) >= 2
    edges = [edge(bus, cfg, i, 3, tmp_path / f"e{i}") for i in range(3)]
    replacement: list[EdgeAggregator] = []
    dead: list[bool] = []

    def events(topic: str, payload: bytes) -> bool:
        if topic.startswith(TOPICS.edge_update("sine", "edge1", "")) and not dead and edges[1].accepted:
            dead.append(True)
            edges[1].ch.transport.close()  # edge1 dies after its first accepted update
            bus._publish(TOPICS.edge_status("sine", "edge1"),  # what the broker does with its last will
                         Message("status", "edge1", info={"status": "offline"}).to_bytes(), True)
            return True
        if topic == TOPICS.model("sine") and not replacement and Message.from_bytes(payload).round == 1:
            # as round 1 opens, edge1 is restarted on its state directory (it says "online" again)
            replacement.append(edge(bus, cfg, 1, 3, tmp_path / "e1"))
        return False

    bus.drop = events
    top = root(bus, cfg, 3, tmp_path / "root")
    top.drive()

    first, second = top.metrics()
    served_by_1 = sum(edge_of(d, 3) == "edge1" for d in DEVICES)
    assert first["accepted"] == 2 and first["devices_accepted"] == 9 - served_by_1 and first["closed_by"] == "quorum"
    assert first["wall_s"] < cfg.deadline_s / 2  # not the deadline: the dead edge was not waited for
    assert replacement and replacement[0].known == edges[1].known  # what the dead one had committed
    assert second["accepted"] == 3 and second["devices_accepted"] == 9  # its devices are back in round 1
    assert top.done.is_set() and all(c.final is not None for c in clients)


def test_an_edge_killed_mid_round_resumes_from_disk_and_the_run_ends_identically(tmp_path: Path) -> None:
    cfg = JobConfig("sine", "sine", "reptile", rounds=2, fraction=1.0, robust="none", deadline_s=60)
    bus = InMemoryBus()
    devices(bus, 3)
    for i in range(3):
        edge(bus, cfg, i, 3, tmp_path / f"a{i}")
    uninterrupted = root(bus, cfg, 3, tmp_path / "a").drive()

    bus = InMemoryBus()
    devices(bus, 3)
    edges = [edge(bus, cfg, i, 3, tmp_path / f"b{i}") for i in range(3)]

    def crash(topic: str, payload: bytes) -> bool:  # edge1 "dies" (no last will yet) after one update
        return topic.startswith(TOPICS.edge_update("sine", "edge1", "")) and bool(edges[1].accepted)

    bus.drop = crash
    top = root(bus, cfg, 3, tmp_path / "b")
    driver = run(top.drive)
    with top.round_closed:
        assert not top.round_closed.wait_for(lambda: top.round >= 1, 0.5)  # the root waits for edge1
    edges[1].ch.transport.close()
    bus.drop = lambda topic, payload: False
    replacement = edge(bus, cfg, 1, 3, tmp_path / "b1")  # from disk: round 0, one update accepted
    driver.join(20)

    assert top.done.is_set() and [m["devices_accepted"] for m in top.metrics()] == [9, 9]
    assert replacement.logs and replacement.logs[0].round == 0
    for k, v in uninterrupted.items():
        np.testing.assert_array_equal(top.weights[k], v)


def test_hostile_partials_are_refused_and_the_round_still_closes(tmp_path: Path) -> None:
    cfg = JobConfig("sine", "sine", "fedavg", rounds=2, fraction=1.0, robust="none")
    bus = InMemoryBus()
    devices(bus, 2)
    evil = bus.client("evil")
    theta = new_learner("sine", 0.02).get_weights()
    attacked: set[int] = set()

    def attack(topic: str, payload: bytes) -> bool:
        if topic == TOPICS.model("sine") and payload[:4] == b"EBF1":
            msg = Message.from_bytes(payload)
            if msg.kind == "model" and msg.info.get("participants") and msg.round not in attacked:
                r = msg.round
                attacked.add(r)
                nan = {k: np.full_like(v, np.nan) for k, v in theta.items()}
                for sender, topic_edge, info, tensors, round_ in [
                        ("edge0", "edge0", {"weight": 10.0, "devices": 1}, nan, r),              # NaN mean
                        ("edge0", "edge0", {"weight": 1e30, "devices": 1}, theta, r),            # absurd weight
                        ("mallory", "edge0", {"weight": 10.0, "devices": 1}, theta, r),          # not the topic's edge
                        ("edge5", "edge5", {"weight": 10.0, "devices": 1}, theta, r),            # no such edge
                        ("edge1", "edge1", {"weight": 10.0, "devices": 1}, theta, r + 3),         # wrong round
                        ("edge1", "edge1", {"weight": "lots"}, theta, r),                        # bad info
                        ("edge1", "edge1", {"weight": 10.0, "devices": 1}, {"x": theta["layers.0.bias"]}, r)]:
                    evil.publish(TOPICS.partial("sine", topic_edge),
                                 Message("partial", sender, job="sine", round=round_, info=info,
                                         tensors=tensors).to_bytes())
                evil.publish(TOPICS.partial("sine", "edge1"), b"EBF1\xff\xff\xff\xffgarbage")
        return False

    bus.drop = attack
    for i in range(2):
        edge(bus, cfg, i, 2, tmp_path / f"e{i}")
    top = root(bus, cfg, 2, tmp_path / "root")
    final = top.drive()

    assert top.done.is_set() and all(np.isfinite(v).all() for v in final.values())
    assert [m["devices_accepted"] for m in top.metrics()] == [9, 9]
    for log in top.metrics():
        assert log["rejected"] == {"invalid": 4, "unauthenticated": 1, "not selected": 1, "stale": 1}
    assert top.ch.rejected == {"header": 2}  # the garbage, once a round


def test_partials_must_carry_their_edges_tag_when_the_root_holds_keys(tmp_path: Path) -> None:
    cfg = JobConfig("sine", "sine", "fedavg", rounds=1, fraction=1.0, robust="none", deadline_s=1.0)
    bus = InMemoryBus()
    devices(bus, 2)
    keys = {"edge0": b"k" * 32, "edge1": b"j" * 32}
    edge(bus, cfg, 0, 2, tmp_path / "e0", edge_key=keys["edge0"])
    edge(bus, cfg, 1, 2, tmp_path / "e1", edge_key=b"wrong" * 7)
    top = root(bus, cfg, 2, tmp_path / "root", edge_keys=keys)
    top.drive()

    log = top.metrics()[0]
    # refused when sent, and again when the root's second call (nudge) made edge1 resend it
    assert log["accepted"] == 1 and log["closed_by"] == "deadline" and log["rejected"] == {"unauthenticated": 2}


def test_an_edge_without_devices_answers_at_once_with_an_empty_partial(tmp_path: Path) -> None:
    cfg = JobConfig("sine", "sine", "fedavg", rounds=1, fraction=1.0, robust="none", deadline_s=30)
    bus = InMemoryBus()
    mine = [d for d in DEVICES if edge_of(d, 2) == "edge0"]
    devices(bus, 2, mine)
    e0 = EdgeAggregator(Channel(bus.client("e0"), TOPICS, "edge0"), cfg, 0, 2, tmp_path / "e0")
    EdgeAggregator(Channel(bus.client("e1"), TOPICS, "edge1"), cfg, 1, 2, tmp_path / "e1")  # nobody online
    top = root(bus, cfg, 2, tmp_path / "root")
    top.drive()

    log = top.metrics()[0]
    assert log["closed_by"] == "quorum" and log["devices_accepted"] == len(mine) == len(e0.known)


def test_edge_keys_come_from_the_aggregator_password_and_a_device_cannot_sign_a_partial(tmp_path: Path) -> None:
    import json

    from edgebert.errors import InputError
    from edgebert.federated.auth import update_key
    from edgebert.fleet.security import device_update_keys, edge_update_keys

    creds = tmp_path / "credentials.json"
    creds.write_text(json.dumps({"aggregator": "operator-secret", "provisioner": "p", "dev-a": "device-secret"}))
    keys = edge_update_keys(creds, 2)
    assert set(keys) == {"edge0", "edge1"} and keys["edge0"] != keys["edge1"]
    assert len(keys["edge0"]) == 32 and update_key("operator-secret") not in keys.values()

    cfg = JobConfig("sine", "sine", "fedavg", rounds=1, fraction=1.0, robust="none", deadline_s=1.0)
    bus = InMemoryBus()
    devices(bus, 2)
    edge(bus, cfg, 0, 2, tmp_path / "e0", edge_key=keys["edge0"])
    edge(bus, cfg, 1, 2, tmp_path / "e1", edge_key=device_update_keys(creds)["dev-a"])  # a device posing as edge1
    top = root(bus, cfg, 2, tmp_path / "root", edge_keys=keys)
    top.drive()
    assert top.metrics()[0]["accepted"] == 1 and top.metrics()[0]["rejected"] == {"unauthenticated": 2}

    creds.write_text(json.dumps({"dev-a": "device-secret"}))
    with pytest.raises(InputError, match="'aggregator' service user"):
        edge_update_keys(creds, 2)
