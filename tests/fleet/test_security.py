"""Per-device credentials and ACLs, enforced by a real Mosquitto started with the generated config."""

from __future__ import annotations

import base64
import json
import shutil
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgebert.errors import InputError
from edgebert.federated.mqtt import BrokerConfig, BrokerError, MqttLoop, MqttTransport
from edgebert.federated.protocol import Topics
from edgebert.federated.transport import wait_until
from edgebert.fleet.security import Credential, mosquitto_hash, write_broker_config

from ..net import free_port, port_open

TOPICS = Topics("edgebert", "lab")


def test_hash_is_mosquittos_pbkdf2_sha512_format() -> None:
    salt = base64.b64decode("4Ad0f00uo2i0r6E0")  # from `mosquitto_passwd -b f alice secret`

    assert mosquitto_hash("secret", salt) == ("$7$101$4Ad0f00uo2i0r6E0$O3y/9xa31bPFXRkqwwrZcYa/kPEWwAWFMIid8tpXOBbyaCs"
                                              "kglG2nluRJXRxYLbJwm3v7jg5YIVBvXDT1x5NjQ==")


def test_secrets_are_private_and_never_in_reprs(tmp_path: Path) -> None:
    paths = write_broker_config(tmp_path, TOPICS, ["dev1"], port=1)

    creds = json.loads(paths["credentials.json"].read_text())
    assert stat.S_IMODE(paths["credentials.json"].stat().st_mode) == 0o600
    assert stat.S_IMODE(paths["passwd"].stat().st_mode) == 0o600
    assert creds["dev1"] not in paths["passwd"].read_text() and creds["dev1"] not in repr(Credential("dev1", creds["dev1"]))
    with pytest.raises(InputError, match="device id"):
        write_broker_config(tmp_path, TOPICS, ["bad/id"])
    with pytest.raises(InputError, match="unique"):
        write_broker_config(tmp_path, TOPICS, ["aggregator"])


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    if shutil.which("mosquitto") is None:
        pytest.skip("mosquitto is not installed")
    port = free_port()
    import getpass

    paths = write_broker_config(tmp_path_factory.mktemp("broker"), TOPICS, ["dev1", "dev2"], port=port,
                                broker_user=getpass.getuser())
    proc = subprocess.Popen(["mosquitto", "-c", str(paths["mosquitto.conf"])], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"mqtt://127.0.0.1:{port}"
    assert wait_until(lambda: port_open(port), 10)
    yield url, json.loads(paths["credentials.json"].read_text())
    proc.terminate()
    proc.wait(10)


def _client(url: str, user: str, password: str, loop: MqttLoop) -> MqttTransport:
    return MqttTransport(BrokerConfig(url, user, password), f"{user}-{time.monotonic_ns()}", loop)


def test_a_device_cannot_publish_as_another_or_read_anothers_artifact(secured) -> None:
    url, creds = secured
    loop = MqttLoop()
    try:
        agg = _client(url, "aggregator", creds["aggregator"], loop)
        prov = _client(url, "provisioner", creds["provisioner"], loop)
        dev1 = _client(url, "dev1", creds["dev1"], loop)
        dev2 = _client(url, "dev2", creds["dev2"], loop)
        updates: list[str] = []
        agg.subscribe(TOPICS.updates("sine"), lambda t, p: updates.append(p.decode()))
        got1: list[bytes] = []
        got2: list[bytes] = []
        dev1.subscribe(f"{TOPICS.root}/artifacts/dev2/#", lambda t, p: got1.append(p))  # denied by the ACL
        dev2.subscribe(f"{TOPICS.root}/artifacts/dev2/#", lambda t, p: got2.append(p))
        time.sleep(0.5)

        dev1.publish(TOPICS.update("sine", "dev2"), b"impostor")  # dev1 pretending to be dev2
        dev1.publish(TOPICS.update("sine", "dev1"), b"honest")
        prov.publish(f"{TOPICS.root}/artifacts/dev2/chunk-0", b"for dev2 only")

        assert wait_until(lambda: "honest" in updates and got2, 10)
        time.sleep(0.5)
        assert updates == ["honest"] and got1 == [] and got2 == [b"for dev2 only"]
    finally:
        loop.stop()


def test_a_wrong_password_is_refused(secured) -> None:
    url, _ = secured
    loop = MqttLoop()
    try:
        with pytest.raises(BrokerError, match="expected the broker to accept"):
            MqttTransport(BrokerConfig(url, "dev1", "wrong"), "dev1-wrong", loop, connect_timeout=3)
    finally:
        loop.stop()
