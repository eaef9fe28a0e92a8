"""Hierarchical rounds through a real 3-node broker cluster (NATS speaking MQTT), with the root and
three edges as `edgebert federate serve` processes: a node killed mid-round, the round still
closes, and the next one has (nearly) every device back."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest

from edgebert.federated.auth import update_key
from edgebert.federated.client import DeviceClient
from edgebert.federated.tasks import DeviceTask, new_learner
from edgebert.messaging.client import connect
from edgebert.messaging.cluster import NatsCluster
from edgebert.messaging.mqtt import MqttLoop
from edgebert.messaging.protocol import Topics

from ..net import wait_until

pytestmark = pytest.mark.skipif(shutil.which("nats-server") is None, reason="needs nats-server (install-tools.sh)")

DEVICES, EDGES, ROUNDS = 45, 3, 4


def serve(url: str, fleet: str, role: str, state: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "edgebert", "federate", "serve", "--broker", url, "--fleet", fleet,
           "--job", "sine", "--algorithm", "fedavg", "--robust", "none", "--rounds", str(ROUNDS), "--fraction", "1",
           "--deadline", "10", "--subscribe-qos", "0", "--role", role, "--edges", str(EDGES), "--state", str(state), *extra]
    log = (state.parent / f"{state.name}.log").open("w")
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def test_a_node_killed_mid_round_the_round_closes_and_the_devices_come_back(tmp_path: Path) -> None:
    with NatsCluster(tmp_path / "cluster", nodes=3) as cluster:
        fleet = f"h{uuid.uuid4().hex[:6]}"
        topics = Topics("edgebert", fleet)
        loop = MqttLoop()
        passwords = {f"dev{i:03d}": f"device-password-{i}" for i in range(DEVICES)}
        credentials = tmp_path / "credentials.json"  # devices sign updates, edges their partials (aggregator's key)
        credentials.write_text(json.dumps({**passwords, "aggregator": "operator-password"}))
        devices = [DeviceClient(connect(cluster.url, topics, name, device=True, loop=loop, retry=True,
                                        subscribe_qos=0),
                                "sine", new_learner("sine", 0.01, seed=i), DeviceTask("sine", i).round_data,
                                inner_steps=1, edges=EDGES, update_key=update_key(passwords[name]))
                   for i, name in enumerate(passwords)]
        procs: list[subprocess.Popen] = []
        try:
            assert wait_until(lambda: all(d.ch.transport.connected.is_set() for d in devices), 30)
            for e in range(EDGES):
                procs.append(serve(cluster.url, fleet, "edge", tmp_path / f"edge{e}", "--edge", str(e),
                                   "--credentials", str(credentials)))
            procs.append(serve(cluster.url, fleet, "root", tmp_path / "root", "--credentials", str(credentials), "--metrics",
                               str(tmp_path / "metrics.json"), "--model-out", str(tmp_path / "final.safetensors")))

            assert wait_until(lambda: any(1 in d.rounds_done for d in devices), 60)  # round 1 under way
            nodes = [d.ch.transport.node % 3 for d in devices]
            busiest = max(range(3), key=nodes.count)
            cluster.kill(busiest)

            assert procs[-1].wait(120) == 0, (tmp_path / "root.log").read_text()[-3000:]
            for p in procs[:-1]:
                assert p.wait(30) == 0
        finally:
            for p in procs:
                p.kill()
            loop.stop()

    rounds = json.loads((tmp_path / "metrics.json").read_text())["rounds"]
    assert [r["round"] for r in rounds] == list(range(ROUNDS))  # no round lost
    assert not any("unauthenticated" in r["rejected"] for r in rounds)  # every partial verified with its edge's key
    assert rounds[1]["closed_by"] in ("quorum", "deadline") and rounds[1]["devices_accepted"] > 0
    assert rounds[2]["devices_accepted"] >= 0.95 * DEVICES, rounds  # the next round: the fleet is back
    assert nodes.count(busiest) >= DEVICES // 3  # (the node killed held a third of the fleet or more)
    final = [d.final for d in devices if d.final is not None]
    assert len(final) >= 0.95 * DEVICES and all(np.isfinite(v).all() for f in final for v in f.values())
