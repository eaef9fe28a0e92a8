"""Provisioning through the real Mosquitto (127.0.0.1:1883): the registry's best artifact onto each
device, signed and verified, recorded once; updates keep the previous artifact; re-runs are no-ops."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from edgebert.errors import InputError
from edgebert.fleet.provision import ProvisionConfig, Provisioner, device_name, plan, table
from edgebert.messaging.mqtt import BrokerConfig, MqttTransport
from edgebert.messaging.transport import Channel
from registry.registry import open_registry

from ..fleetkit import Fleet, make_td
from ..net import port_open, wait_until

MOSQUITTO = "mqtt://127.0.0.1:1883"
pytestmark = pytest.mark.skipif(not port_open(1883), reason="Mosquitto is not running on 127.0.0.1:1883 (.ci/run starts it)")


def provision(reg, fleet: Fleet, wait: float = 20.0):  # noqa: ANN001, ANN201
    rows = plan(reg, fleet.key, fleet.public_key, "lab")
    transport = MqttTransport(BrokerConfig(MOSQUITTO), f"{fleet.topics.fleet}-provisioner-{time.monotonic_ns()}",
                              fleet.loop)
    try:
        prov = Provisioner(reg, Channel(transport, fleet.topics, "provisioner"), rows,
                           ProvisionConfig("lab", wait_s=wait, reoffer_s=1.0), fleet.key)
        return prov.run(), prov.recorded
    finally:
        transport.close()


def test_device_name_is_the_last_part_of_the_iri() -> None:
    assert [device_name(i) for i in ("urn:dev:pi-007", "https://x.org/things/m4-1", "https://x.org/t#gw")] == \
        ["pi-007", "m4-1", "gw"]


def test_every_device_gets_its_best_artifact_once_and_a_rerun_changes_nothing(fleet: Fleet) -> None:
    reg = open_registry("memory")
    reg.add_artifact(fleet.bert)
    reg.add_artifact(fleet.digits)
    names = ["m4-1", "m4-2", "pi-1", "gw-1"]
    reg.add_tds([make_td(n, fleet.bert_family) for n in names] + [make_td("pi-9", fleet.bert_family, fleet="other")])
    agents = {n: fleet.agent(n, MOSQUITTO) for n in names if n != "m4-2"}
    late = threading.Timer(1.5, lambda: agents.setdefault("m4-2", fleet.agent("m4-2", MOSQUITTO)))  # offline at first
    late.start()

    rows, recorded = provision(reg, fleet)

    late.join()
    by_name = {r.name: r for r in rows}
    assert set(by_name) == set(names)  # pi-9 is in another fleet
    assert recorded == 4 and all(r.result == "active" for r in rows), table(rows)
    for n, agent in agents.items():
        best = reg.match(f"urn:dev:{n}")[0]
        assert agent.engine is not None and agent.engine.manifest.artifact_id == best.id
        assert agent.engine.manifest.artifact_id == (fleet.digits_id if n.startswith("m4") else fleet.bert_id)
    assert agents["pi-1"].predict("a sentence").shape == (1, 128)
    deps = reg.deployments()
    assert sorted(d["device"] for d in deps) == sorted(f"urn:dev:{n}" for n in names)
    assert all(d["status"] == "active" and d["previous"] is None for d in deps)

    rows2, recorded2 = provision(reg, fleet)  # idempotent

    assert recorded2 == 0 and {r.result for r in rows2} == {"up to date"} and all(r.bytes_sent == 0 for r in rows2)
    assert len(reg.deployments()) == 4


def test_an_update_keeps_the_previous_artifact_and_the_registry_says_so(fleet: Fleet, tmp_path: Path) -> None:
    import edgebert
    from edgebert.model.tinyml import train

    reg = open_registry("memory")
    reg.add_artifact(fleet.digits)
    reg.add_tds([make_td("m4-1")])
    agent = fleet.agent("m4-1", MOSQUITTO)
    rows, _ = provision(reg, fleet)
    assert rows[0].result == "active"
    model = train("digits", tmp_path / "v2" / "digits", seed=1, steps=60)[0]
    v2 = edgebert.convert(model, tmp_path / "artifacts-v2" / "digits-v2", "int8", model / "calibration.npy",
                          measure=False)
    reg.delete_thing(f"urn:edgebert:artifact:{fleet.digits_id}")  # v1 withdrawn: v2 is the only match
    reg.add_artifact(v2.path)

    rows, recorded = provision(reg, fleet)

    assert recorded == 1 and rows[0].result == "active" and rows[0].previous == fleet.digits_id
    assert agent.engine is not None and agent.engine.manifest.artifact_id == v2.manifest.artifact_id
    pointer = agent.slots.pointer()
    assert pointer.previous == fleet.digits_id and (agent.slots.artifacts / fleet.digits_id).is_dir()
    latest = [d for d in reg.deployments("urn:dev:m4-1") if d["status"] == "active"]
    assert len(latest) == 1 and latest[0]["previous"] == f"urn:edgebert:artifact:{fleet.digits_id}"
    assert wait_until(lambda: agent.status()["artifact"] == v2.manifest.artifact_id, 1)


def test_a_device_iri_that_is_not_topic_safe_is_refused_and_never_stops_a_fleet_run(fleet: Fleet) -> None:
    """Issue 11: `add-device` accepted urn:dev:x+y and urn:dev:a#b, and provision then stopped for
    the whole fleet with a paho ValueError."""
    from registry.vocab import PREFIXES

    reg = open_registry("memory")
    reg.add_artifact(fleet.digits)
    for bad in ("urn:dev:x+y", "urn:dev:a#b", "urn:dev:a%2Fb"):
        td = make_td("m4-1")
        td["id"] = bad
        with pytest.raises(InputError, match="MQTT id"):
            reg.add_tds([td])
    reg.add_tds([make_td("m4-1")])
    reg.store.update(PREFIXES + """INSERT DATA { GRAPH <urn:g:old> {  # written before the check existed
        <urn:dev:m4+x> a eb:Device ; eb:ramBytes 256000 ; eb:flashBytes 1000000 ; eb:supportsRuntime eb:onnxruntime ;
                       eb:supportsPrecision eb:int8 ; eb:memberOf <urn:fleet:lab> } }""")
    agent = fleet.agent("m4-1", MOSQUITTO)

    rows, recorded = provision(reg, fleet)

    by_iri = {r.iri: r for r in rows}
    assert by_iri["urn:dev:m4+x"].result == "error" and "MQTT id" in by_iri["urn:dev:m4+x"].note
    assert by_iri["urn:dev:m4-1"].result == "active" and recorded == 1 and agent.engine is not None


def test_the_devices_report_decides_and_repairs_the_registry(fleet: Fleet) -> None:
    """Issue 11: a registry saying "v2" made provision report a device running v1 "up to date"."""
    reg = open_registry("memory")
    reg.add_artifact(fleet.digits)
    reg.add_artifact(fleet.bert)
    reg.add_tds([make_td("m4-1"), make_td("m4-2")])
    target = f"urn:edgebert:artifact:{fleet.digits_id}"
    reg.record_deployment("urn:dev:m4-1", target)  # the registry claims m4-1 runs it; it runs nothing
    agents = [fleet.agent(n, MOSQUITTO) for n in ("m4-1", "m4-2")]

    rows, recorded = provision(reg, fleet)

    assert [r.result for r in rows] == ["active", "active"] and all(a.engine is not None for a in agents), table(rows)
    reg.record_deployment("urn:dev:m4-1", f"urn:edgebert:artifact:{fleet.bert_id}")  # the registry drifts

    rows, recorded = provision(reg, fleet)

    assert [r.result for r in rows] == ["active", "up to date"] and recorded == 1, table(rows)
    assert "repaired" in rows[0].note and reg.active_artifact("urn:dev:m4-1") == target
    rows, recorded = provision(reg, fleet)
    assert [r.result for r in rows] == ["up to date", "up to date"] and recorded == 0


def test_a_hostile_device_report_never_stops_the_run(fleet: Fleet) -> None:
    from edgebert.messaging.protocol import Message

    reg = open_registry("memory")
    reg.add_artifact(fleet.digits)
    reg.add_tds([make_td("m4-1"), make_td("m4-2")])
    agent = fleet.agent("m4-1", MOSQUITTO)
    liar = Channel(MqttTransport(BrokerConfig(MOSQUITTO), f"{fleet.topics.fleet}-liar", fleet.loop), fleet.topics, "m4-2")
    bad = {"state": "active", "artifact": fleet.digits_id, "outcome": {"artifact": fleet.digits_id, "status": "active",
                                                                        "key": "k", "at": "not a time"}}
    liar.send(fleet.topics.artifact_status("m4-2"), Message("status", "m4-2", info=bad), retain=True)

    rows, _ = provision(reg, fleet, wait=5)

    by_name = {r.name: r for r in rows}
    assert by_name["m4-1"].result == "active" and agent.engine is not None
    assert by_name["m4-2"].result == "error" and "expected ISO 8601" in by_name["m4-2"].note, table(rows)
