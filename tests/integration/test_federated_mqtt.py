"""Federated learning through real brokers: Mosquitto (127.0.0.1:1883, or one started by the test)
and the embedded amqtt broker."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import paho.mqtt.client as paho
import pytest

from edgebert.federated.auth import sign_update, update_key
from edgebert.federated.client import DeviceClient
from edgebert.federated.simulate import SimConfig, simulate
from edgebert.federated.tasks import DeviceTask, new_learner
from edgebert.messaging.broker import EmbeddedBroker
from edgebert.messaging.mqtt import BrokerConfig, MqttLoop, MqttTransport
from edgebert.messaging.protocol import Message, Topics
from edgebert.messaging.transport import Channel

from ..net import free_port, port_open, wait_until

MOSQUITTO = "mqtt://127.0.0.1:1883"


def mosquitto_up() -> bool:
    return port_open(1883)


needs_mosquitto = pytest.mark.skipif(not mosquitto_up(), reason="Mosquitto is not running on 127.0.0.1:1883 "
                                                                 "(.ci/run starts it)")


@pytest.fixture(scope="module")
def embedded() -> Iterator[str]:
    with EmbeddedBroker() as broker:
        yield broker.url


@pytest.mark.parametrize("which", ["mosquitto", "embedded"])
def test_simulation_runs_every_round_through_a_real_broker(which: str, embedded: str) -> None:
    if which == "mosquitto" and not mosquitto_up():
        pytest.skip("Mosquitto is not running")
    url = MOSQUITTO if which == "mosquitto" else embedded

    result = simulate(SimConfig(devices=30, per_round=6, rounds=3, broker=url, eval_devices=5, int8_updates=True))

    assert [r["accepted"] for r in result["rounds"]] == [6, 6, 6]
    assert all(r["closed_by"] == "quorum" for r in result["rounds"])
    assert result["bytes_per_round"]["aggregator"] > 0 and np.isfinite(result["evaluation"]["final"])


def devices(url: str, topics: Topics, n: int, loop: MqttLoop, job: str = "sine",
            passwords: dict[str, str] | None = None) -> list[DeviceClient]:
    out = []
    for i in range(n):
        name = f"dev{i}"
        ch = Channel(MqttTransport(BrokerConfig(url), f"{topics.fleet}-{name}", loop), topics, name)
        key = update_key(passwords[name]) if passwords else None
        out.append(DeviceClient(ch, job, new_learner("sine", seed=i), DeviceTask("sine", i).round_data, inner_steps=5,
                                update_key=key))
    return out


def serve(url: str, topics: Topics, state: Path, model_out: Path, rounds: int = 4, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "edgebert", "federate", "serve", "--broker", url, "--prefix",
                             topics.prefix, "--fleet", topics.fleet, "--job", "sine", "--rounds", str(rounds),
                             "--fraction", "1.0", "--min-participants", "4", "--deadline", "60", "--state", str(state),
                             "--model-out", str(model_out), "--wait", "30", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@needs_mosquitto
def test_a_killed_aggregator_process_resumes_and_finishes_identically(tmp_path: Path) -> None:
    loop = MqttLoop()
    try:
        # uninterrupted reference run
        ref_topics = Topics("edgebert-test", f"ref-{uuid.uuid4().hex[:6]}")
        devices(MOSQUITTO, ref_topics, 4, loop)
        ref = serve(MOSQUITTO, ref_topics, tmp_path / "ref", tmp_path / "ref.safetensors")
        assert ref.wait(120) == 0, ref.stderr.read()

        topics = Topics("edgebert-test", f"kill-{uuid.uuid4().hex[:6]}")
        devices(MOSQUITTO, topics, 4, loop)
        state = tmp_path / "state"
        first = serve(MOSQUITTO, topics, state, tmp_path / "out.safetensors")
        assert wait_until(lambda: len(list((state / "updates").glob("r2-*"))) >= 2, 60, poll=0.001)
        first.send_signal(signal.SIGKILL)  # mid-round 2, with accepted updates on disk
        first.wait(10)
        assert not (tmp_path / "out.safetensors").exists()

        second = serve(MOSQUITTO, topics, state, tmp_path / "out.safetensors")
        assert second.wait(120) == 0, second.stderr.read()
    finally:
        loop.stop()
    from safetensors.numpy import load_file

    want, got = load_file(str(tmp_path / "ref.safetensors")), load_file(str(tmp_path / "out.safetensors"))
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])


@needs_mosquitto
def test_garbage_oversized_and_nan_messages_never_stop_a_round(tmp_path: Path) -> None:
    loop = MqttLoop()
    topics = Topics("edgebert-test", f"evil-{uuid.uuid4().hex[:6]}")
    evil = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"evil-{uuid.uuid4().hex[:6]}")
    evil.connect("127.0.0.1", 1883)
    evil.loop_start()
    try:
        devices(MOSQUITTO, topics, 4, loop)
        agg = serve(MOSQUITTO, topics, tmp_path / "state", tmp_path / "out.safetensors", rounds=3)
        shapes = new_learner("sine").get_weights()
        deadline = time.monotonic() + 60
        while agg.poll() is None and time.monotonic() < deadline:
            for r in range(3):
                evil.publish(topics.update("sine", "dev0"), os.urandom(2000), qos=1)
                evil.publish(topics.update("sine", "dev1"), b"EBF1" + b"\x00\x00\x00\x05" + b"{bad}", qos=1)
                evil.publish(topics.update("sine", "dev2"), b"x" * (70 * 1024 * 1024), qos=0)  # oversized
                nan = {k: np.full_like(v, np.nan) for k, v in shapes.items()}
                evil.publish(topics.update("sine", "dev3"),
                             Message("update", "dev3", job="sine", round=r, samples=10, tensors=nan).to_bytes(), qos=1)
            time.sleep(0.05)
        assert agg.wait(30) == 0, agg.stderr.read()
    finally:
        evil.loop_stop()
        loop.stop()
    assert (tmp_path / "out.safetensors").is_file()


@pytest.mark.parametrize("which", ["mosquitto", "embedded"])
def test_impersonation_and_job_killing_updates_fail_on_a_broker_without_acls(which: str, embedded: str,
                                                                             tmp_path: Path) -> None:
    """Issue 11: a client publishing as dev0 (sender and topic dev0) used to get its update accepted
    and the real dev0 refused; a 10**400 sample count stopped the aggregator for good; an int8
    update with an empty scale killed the MQTT thread. With --credentials all three are refused
    and every round closes by quorum with the four real devices."""
    if which == "mosquitto" and not mosquitto_up():
        pytest.skip("Mosquitto is not running")
    url = MOSQUITTO if which == "mosquitto" else embedded
    loop = MqttLoop()
    topics = Topics("edgebert-test", f"auth-{uuid.uuid4().hex[:6]}")
    passwords = {f"dev{i}": uuid.uuid4().hex for i in range(4)}
    (tmp_path / "credentials.json").write_text(json.dumps({"aggregator": "x", **passwords}))
    shapes = new_learner("sine").get_weights()
    forged_key = update_key("not dev0's password")
    evil = Channel(MqttTransport(BrokerConfig(url), f"{topics.fleet}-evil", loop), topics, "dev0")
    try:
        def attack(topic: str, msg: Message) -> None:
            if msg.kind != "model" or msg.info.get("final"):
                return
            r = msg.round
            forged = {k: v + 1e3 for k, v in shapes.items()}
            evil.send(topics.update("sine", "dev0"), sign_update(Message("update", "dev0", job="sine", round=r,
                                                                         samples=10, tensors=forged), forged_key))
            evil.send(topics.update("sine", "dev1"), Message("update", "dev1", job="sine", round=r,
                                                             samples=10**400, tensors=shapes))
            empty = {**{k: np.zeros(v.shape, np.int8) for k, v in shapes.items()},
                     **{f"{k}.scale": np.zeros(0, np.float32) for k in shapes}}
            evil.send(topics.update("sine", "dev2"), Message("update", "dev2", job="sine", round=r, samples=10,
                                                             info={"encoding": "int8-delta"}, tensors=empty))

        evil.subscribe(topics.model("sine"), attack)
        agg = serve(url, topics, tmp_path / "state", tmp_path / "out.safetensors", 3,
                    "--credentials", str(tmp_path / "credentials.json"), "--metrics", str(tmp_path / "m.json"))
        time.sleep(0.5)
        devices(url, topics, 4, loop, passwords=passwords)
        assert agg.wait(90) == 0, agg.stderr.read()
    finally:
        loop.stop()
    rounds = json.loads((tmp_path / "m.json").read_text())["rounds"]
    assert [r["accepted"] for r in rounds] == [4, 4, 4] and all(r["closed_by"] == "quorum" for r in rounds)
    assert sum(r["rejected"].get("unauthenticated", 0) for r in rounds) >= 3


@pytest.mark.skipif(shutil.which("mosquitto") is None, reason="mosquitto is not installed")
def test_a_23_mb_payload_passes_a_broker_limited_to_1_mb(tmp_path: Path) -> None:
    port = free_port()
    conf = tmp_path / "m.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\nmax_packet_size 1048576\npersistence false\n")
    proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    loop = MqttLoop()
    try:
        assert wait_until(lambda: port_open(port), 10)
        url = f"mqtt://127.0.0.1:{port}"
        topics = Topics("edgebert-test", "big")
        sender = Channel(MqttTransport(BrokerConfig(url), "big-sender", loop), topics, "aggregator",
                         max_message_bytes=1_000_000)
        receiver = Channel(MqttTransport(BrokerConfig(url), "big-receiver", loop), topics, "dev")
        got: list[Message] = []
        receiver.subscribe(topics.model("big"), lambda t, m: got.append(m))
        time.sleep(0.3)
        weights = {"w": np.random.default_rng(0).normal(0, 1, 23 * 1024 * 1024 // 4).astype(np.float32)}

        sender.send(topics.model("big"), Message("model", "aggregator", job="big", tensors=weights))

        assert wait_until(lambda: bool(got), 60)
        assert np.array_equal(got[0].tensors["w"], weights["w"])
    finally:
        loop.stop()
        proc.terminate()
        proc.wait(10)


def test_a_device_keeps_learning_while_the_broker_is_down_and_connects_when_it_comes_up() -> None:
    port = free_port()
    loop = MqttLoop()
    try:
        transport = MqttTransport(BrokerConfig(f"mqtt://127.0.0.1:{port}"), "patient", loop, retry=True)
        client = DeviceClient(Channel(transport, Topics("edgebert-test", "offline"), "patient"), "sine",
                              new_learner("sine"), DeviceTask("sine", 1).round_data)
        x, y = DeviceTask("sine", 1).round_data(0, 50)
        losses = [client.learn_local(x[i], y[i]) for i in range(50)]
        assert not transport.connected.is_set() and len(losses) == 50

        with EmbeddedBroker(port):
            assert wait_until(transport.connected.is_set, 30)
            transport.close()
    finally:
        loop.stop()


@needs_mosquitto
def test_a_device_that_drops_off_is_marked_offline_by_its_last_will() -> None:
    loop = MqttLoop()
    topics = Topics("edgebert-test", f"will-{uuid.uuid4().hex[:6]}")
    statuses: dict[str, str] = {}
    try:
        watcher = Channel(MqttTransport(BrokerConfig(MOSQUITTO), f"{topics.fleet}-watcher", loop), topics, "watcher")
        watcher.subscribe(topics.statuses(), lambda t, m: statuses.__setitem__(m.sender, m.info["status"]))
        will = (topics.status("dev9"), Message("status", "dev9", info={"status": "offline"}).to_bytes())
        transport = MqttTransport(BrokerConfig(MOSQUITTO), f"{topics.fleet}-dev9", loop, will=will)
        DeviceClient(Channel(transport, topics, "dev9"), "sine", new_learner("sine"), DeviceTask("sine", 9).round_data)
        assert wait_until(lambda: statuses.get("dev9") == "online", 10)

        loop.call_wait(lambda: transport.paho.socket().close())  # the device vanishes: no DISCONNECT sent
        transport._want = False

        assert wait_until(lambda: statuses.get("dev9") == "offline", 60)
    finally:
        loop.stop()
