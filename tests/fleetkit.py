"""A small fleet for provisioning tests (the ``fleet`` fixture in conftest.py): copies of the tiny
BERT and digits artifacts, a fleet key, device TDs of three kinds, and device agents on a broker."""

from __future__ import annotations

import shutil
import time
import uuid
from pathlib import Path

from edgebert.artifact import Manifest
from edgebert.fleet.agent import DeviceAgent
from edgebert.fleet.release import Release
from edgebert.fleet.signing import keygen, read_public_key, sign_bytes
from edgebert.fleet.slots import ArtifactSlots
from edgebert.messaging.mqtt import BrokerConfig, MqttLoop, MqttTransport
from edgebert.messaging.protocol import Topics
from edgebert.messaging.transport import Channel

KINDS = {  # name prefix -> RAM, flash, runtimes, what it is for
    "m4": (256_000, 1_000_000, ("onnxruntime",), "digits"),
    "pi": (4_000_000_000, 32_000_000_000, ("onnxruntime", "litert"), None),
    "gw": (16_000_000_000, 256_000_000_000, ("onnxruntime",), None),
}


def make_td(name: str, text_family: str | None = None, fleet: str = "lab") -> dict:
    ram, flash, runtimes, family = KINDS[name.split("-")[0]]
    family = family or text_family
    td = {"@context": ["https://www.w3.org/2022/wot/td/v1.1"], "id": f"urn:dev:{name}", "title": name,
          "securityDefinitions": {"nosec_sc": {"scheme": "nosec"}}, "security": "nosec_sc",
          "eb:ramBytes": ram, "eb:flashBytes": flash,
          "eb:supportsRuntime": [{"@id": f"eb:{r}"} for r in runtimes],
          "eb:supportsPrecision": [{"@id": "eb:int8"}, {"@id": "eb:fp32"}],
          "eb:memberOf": {"@id": f"urn:fleet:{fleet}"}}
    if family:
        td["eb:wantsFamily"] = family
    return td


def release_info(manifest: bytes, key: Path, devices: tuple[str, ...] = ("dev1",), ttl_s: float = 3600.0,
                 issued: float | None = None, **overrides: object) -> dict[str, str]:
    """The offer fields of a release for ``manifest``, signed with the fleet key (as the provisioner does)."""
    from dataclasses import replace

    parsed = Manifest.from_json(manifest.decode("utf-8", errors="replace"))
    release = Release.for_manifest(manifest, parsed, devices, time.time() if issued is None else issued, ttl_s)
    release = replace(release, **overrides)  # type: ignore[arg-type]
    data = release.to_bytes()
    return {"release": data.hex(), "release_signature": sign_bytes(data, key).hex()}


class Fleet:
    def __init__(self, root: Path, tiny_artifact, digits_artifact) -> None:  # noqa: ANN001
        self.root = root
        self.key, self.pub = keygen(root / "keys")
        self.public_key = read_public_key(self.pub)
        self.bert = shutil.copytree(tiny_artifact.path, root / "artifacts" / tiny_artifact.path.name)
        self.digits = shutil.copytree(digits_artifact.path, root / "artifacts" / digits_artifact.path.name)
        self.bert_family = tiny_artifact.manifest.source["name"]
        self.bert_id, self.digits_id = tiny_artifact.manifest.artifact_id, digits_artifact.manifest.artifact_id
        self.topics = Topics("edgebert-test", f"lab-{uuid.uuid4().hex[:8]}")
        self.loop = MqttLoop()
        self.transports: list[MqttTransport] = []

    def agent(self, name: str, url: str, user: str | None = None, password: str | None = None,
              **kw) -> DeviceAgent:  # noqa: ANN003
        transport = MqttTransport(BrokerConfig(url, user, password), f"{self.topics.fleet}-{name}-{uuid.uuid4().hex[:4]}",
                                  self.loop, retry=True)
        self.transports.append(transport)
        return DeviceAgent(Channel(transport, self.topics, name), ArtifactSlots(self.root / "devices" / name),
                           self.public_key, **kw)

    def close(self) -> None:
        self.loop.stop()
