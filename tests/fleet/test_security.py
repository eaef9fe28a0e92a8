"""Per-device credentials and ACLs, enforced by a real Mosquitto started with the generated config."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import stat
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from edgebert.errors import BrokerError, InputError
from edgebert.fleet.security import Credential, mosquitto_hash, write_broker_config
from edgebert.fleet.slots import Outcome
from edgebert.messaging.mqtt import BrokerConfig, MqttLoop, MqttTransport
from edgebert.messaging.protocol import Message, Topics
from edgebert.messaging.transport import Channel

from ..fleetkit import release_info
from ..net import free_port, port_open, wait_until

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


# ---------------------------------------------------------------- artifacts a device must refuse
def _wait_outcome(agent, before: str | None) -> dict:  # noqa: ANN001
    assert wait_until(lambda: (agent.slots.pointer().outcome or Outcome("", "", "")).key not in ("", before), 20)
    return agent.slots.pointer().outcome


def _resign(art_dir: Path, key: Path) -> None:
    from edgebert.fleet.signing import sign

    (art_dir / "manifest.sig").unlink(missing_ok=True)
    sign(art_dir, key)


def test_tampered_truncated_unsigned_or_failing_artifacts_are_refused_and_the_previous_keeps_running(
        secured, fleet, tmp_path: Path) -> None:  # noqa: ANN001
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    url, creds = secured
    fleet.topics = TOPICS
    for art in (fleet.digits, fleet.bert):
        _resign(art, fleet.key)
    agent = fleet.agent("dev1", url, "dev1", creds["dev1"])
    prov = Channel(_client(url, "provisioner", creds["provisioner"], fleet.loop), TOPICS, "provisioner")

    def offer(art_dir: Path, manifest: bytes | None = None, signature: bytes | None = None) -> str:
        manifest = manifest if manifest is not None else (art_dir / "manifest.json").read_bytes()
        signature = signature if signature is not None else (art_dir / "manifest.sig").read_bytes()
        art_id = json.loads(manifest)["artifact_id"]
        info = {"artifact": art_id, "signature": signature.hex(), **release_info(manifest, fleet.key)}
        prov.send(TOPICS.artifact_offer("dev1"), Message("offer", "provisioner", body=manifest, info=info))
        return art_id

    def send(art_id: str, name: str, data: bytes) -> None:
        prov.send(TOPICS.artifact_files("dev1"), Message("file", "provisioner", body=data,
                                                          info={"artifact": art_id, "name": name}))

    def deliver(art_dir: Path, **files: bytes) -> str:
        art_id = offer(art_dir)
        for name in json.loads((art_dir / "manifest.json").read_text())["files"]:
            if name != "graph.safetensors" or "mlp" in (art_dir / "manifest.json").read_text():
                send(art_id, name, files.get(name.replace(".", "_"), (art_dir / name).read_bytes()))
        return art_id

    first = deliver(fleet.digits)  # the legitimate artifact
    assert _wait_outcome(agent, None).status == "active" and agent.engine.manifest.artifact_id == first
    x = np.linspace(0, 1, 64, dtype=np.float32)
    expected = agent.predict(x)

    onnx = (fleet.bert / "model.onnx").read_bytes()
    foreign = Ed25519PrivateKey.generate().sign((fleet.bert / "manifest.json").read_bytes())
    forged = (fleet.bert / "manifest.json").read_text().replace("int8", "fp32", 1).encode()
    failing = shutil.copytree(fleet.digits, tmp_path / "broken")
    (failing / "model.onnx").write_bytes(b"not an onnx model" * 10)
    raw = json.loads((failing / "manifest.json").read_text())
    raw["artifact_id"] += "-broken"
    raw["created"] = datetime.now(timezone.utc).isoformat(timespec="microseconds")  # a newer version
    raw["files"]["model.onnx"] = {"bytes": 170, "sha256": hashlib.sha256(b"not an onnx model" * 10).hexdigest()}
    (failing / "manifest.json").write_text(json.dumps(raw))
    _resign(failing, fleet.key)
    attempts = [
        ("unsigned", lambda: offer(fleet.bert, signature=b""), "refused", "no signature"),
        ("foreign key", lambda: offer(fleet.bert, signature=foreign), "refused", "does not match"),
        ("altered manifest", lambda: offer(fleet.bert, manifest=forged), "refused", "does not match"),
        ("tampered file", lambda: deliver(fleet.bert, model_onnx=onnx[:100] + bytes([onnx[100] ^ 1]) + onnx[101:]),
         "refused", "tampered"),
        ("truncated file", lambda: deliver(fleet.bert, model_onnx=onnx[:-10]), "refused", "truncated"),
        ("self-test fails", lambda: deliver(failing), "rolled-back", "self-test"),
    ]
    for what, attempt, status, reason in attempts:
        before = agent.slots.pointer().outcome.key
        attempt()
        outcome = _wait_outcome(agent, before)
        assert (outcome.status, reason in outcome.reason) == (status, True), (what, outcome)
        assert agent.engine.manifest.artifact_id == first and agent.slots.pointer().current == first, what
        np.testing.assert_array_equal(agent.predict(x), expected)
    assert sorted(p.name for p in agent.slots.artifacts.iterdir()) == [first]  # nothing bad was kept


def _version(src: Path, dst: Path, key: Path, suffix: str) -> Path:
    """A newer version of the artifact at ``src`` (same family, later creation time), signed."""
    out = shutil.copytree(src, dst)
    raw = json.loads((out / "manifest.json").read_text())
    raw["artifact_id"] += suffix
    raw["created"] = datetime.now(timezone.utc).isoformat(timespec="microseconds")
    (out / "manifest.json").write_text(json.dumps(raw))
    _resign(out, key)
    return out


@pytest.fixture(params=["mosquitto-acl", "mosquitto-open", "embedded"])
def any_broker(request: pytest.FixtureRequest, fleet) -> Iterator[tuple[str, dict[str, str | None]]]:  # noqa: ANN001
    """The generated-ACL Mosquitto, the plain Mosquitto on 1883 and the embedded broker: the
    device-side checks hold whoever can publish on the device's offer topic."""
    if request.param == "mosquitto-acl":
        url, creds = request.getfixturevalue("secured")
        fleet.topics = TOPICS
        yield url, {"dev1": creds["dev1"], "provisioner": creds["provisioner"]}
    elif request.param == "mosquitto-open":
        if not port_open(1883):
            pytest.skip("Mosquitto is not running on 127.0.0.1:1883")
        yield "mqtt://127.0.0.1:1883", {"dev1": None, "provisioner": None}
    else:
        from edgebert.messaging.broker import EmbeddedBroker

        with EmbeddedBroker() as broker:
            yield broker.url, {"dev1": None, "provisioner": None}


def test_replayed_foreign_expired_and_mismatched_offers_cannot_downgrade_or_cross_install(
        any_broker, fleet, tmp_path: Path) -> None:  # noqa: ANN001
    """Issue 11: a captured, validly signed offer of v1 replayed to a device on v2 installed v1; an
    artifact for other devices was installed anywhere. Now only a signed pin goes down."""
    url, creds = any_broker
    topics = fleet.topics
    _resign(fleet.digits, fleet.key)
    v1 = fleet.digits
    time.sleep(0.01)
    v2 = _version(v1, tmp_path / "v2", fleet.key, "-v2")
    agent = fleet.agent("dev1", url, "dev1" if creds["dev1"] else None, creds["dev1"])
    prov_transport = MqttTransport(BrokerConfig(url, "provisioner" if creds["provisioner"] else None,
                                                creds["provisioner"]), f"prov-{time.monotonic_ns()}", fleet.loop)
    prov = Channel(prov_transport, topics, "provisioner")
    id1, id2 = (json.loads((d / "manifest.json").read_text())["artifact_id"] for d in (v1, v2))

    def offer(art_dir: Path, **release: object) -> dict:
        manifest = (art_dir / "manifest.json").read_bytes()
        art_id = json.loads(manifest)["artifact_id"]
        info = {"artifact": art_id, "signature": (art_dir / "manifest.sig").read_bytes().hex(),
                **release_info(manifest, fleet.key, **release)}  # type: ignore[arg-type]
        return info

    def send(art_dir: Path, info: dict) -> Outcome:
        before = (agent.slots.pointer().outcome or Outcome("", "", "")).key
        prov.send(topics.artifact_offer("dev1"), Message("offer", "provisioner", info=info,
                                                          body=(art_dir / "manifest.json").read_bytes()))
        for name in json.loads((art_dir / "manifest.json").read_text())["files"]:
            prov.send(topics.artifact_files("dev1"), Message("file", "provisioner", body=(art_dir / name).read_bytes(),
                                                              info={"artifact": info["artifact"], "name": name}))
        return _wait_outcome(agent, before or None)

    captured_v1 = offer(v1)  # an attacker records v1's offer while it is current
    assert send(v1, captured_v1).status == "active"
    assert send(v2, offer(v2)).status == "active" and agent.slots.pointer().current == id2
    floor = agent.slots.pointer().floors["digits"]
    stale_release = dict(captured_v1)
    stale_release["release"] = captured_v1["release"][:-4] + "0000"  # altered: signature no longer matches
    attacks = [
        ("replayed v1 offer", v1, captured_v1, "downgrade needs a signed pin"),
        ("for another device", v2, offer(v2, devices=("dev2",)), "meant for device 'dev1'"),
        ("expired", v1, offer(v1, ttl_s=60, issued=time.time() - 3600), "expired"),
        ("release of another manifest", v1, {**offer(v2), "artifact": captured_v1["artifact"]}, "expected"),
        ("altered release", v1, stale_release, "does not match"),
        ("no release", v1, {k: v for k, v in captured_v1.items() if not k.startswith("release")}, "signed release"),
    ]
    for what, art, info, reason in attacks:
        outcome = send(art, info)
        assert outcome.status == "refused" and reason in outcome.reason, (what, outcome)
        assert agent.slots.pointer().current == id2 and agent.engine.manifest.artifact_id == id2, what
        assert agent.slots.pointer().floors["digits"] == floor, what

    assert send(v1, offer(v1, pin=True)).status == "active"  # a signed pin is the way down on purpose
    assert agent.slots.pointer().current == id1 and agent.slots.pointer().floors["digits"] < floor


# ---------------------------------------------------------------- TLS
def _cert(tmp: Path, name: str, issuer_key=None, issuer_name=None, ca: bool = False):  # noqa: ANN001, ANN202
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer_name or subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                                        critical=False)
    cert = builder.sign(issuer_key or key, hashes.SHA256())
    (tmp / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp / f"{name}.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                        serialization.NoEncryption()))
    return key, subject


def test_the_generated_tls_listener_accepts_devices_that_trust_the_fleet_ca_only(tmp_path: Path) -> None:
    import getpass

    from edgebert.fleet.security import TlsFiles

    if shutil.which("mosquitto") is None:
        pytest.skip("mosquitto is not installed")
    ca_key, ca_name = _cert(tmp_path, "ca", ca=True)
    _cert(tmp_path, "server", ca_key, ca_name)
    _cert(tmp_path, "other-ca", ca=True)
    plain, secure = free_port(), free_port()
    tls = TlsFiles(tmp_path / "server.pem", tmp_path / "server.key", tmp_path / "ca.pem", secure, "127.0.0.1")
    paths = write_broker_config(tmp_path / "broker", TOPICS, ["dev1"], plain, broker_user=getpass.getuser(), tls=tls)
    creds = json.loads(paths["credentials.json"].read_text())
    proc = subprocess.Popen(["mosquitto", "-c", str(paths["mosquitto.conf"])], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    loop = MqttLoop()
    try:
        assert wait_until(lambda: port_open(secure), 10)
        ok = MqttTransport(BrokerConfig(f"mqtts://127.0.0.1:{secure}", "dev1", creds["dev1"], str(tmp_path / "ca.pem")),
                           "dev1-tls", loop)
        assert ok.connected.is_set()
        with pytest.raises(BrokerError, match="reachable"):
            MqttTransport(BrokerConfig(f"mqtts://127.0.0.1:{secure}", "dev1", creds["dev1"],
                                       str(tmp_path / "other-ca.pem")), "dev1-mitm", loop, connect_timeout=3)
        with pytest.raises(InputError, match="no such file"):
            TlsFiles(tmp_path / "missing.pem", tmp_path / "server.key", tmp_path / "ca.pem")
    finally:
        loop.stop()
        proc.terminate()
        proc.wait(10)
