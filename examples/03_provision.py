"""Step 3: provision devices over MQTT — each gets the registry's best artifact, signed, chunked,
verified and self-tested on the device, and the registry records what runs where.

Uses the embedded broker (no setup); pass a second argument mqtt://host:port to use a real one.
Run: python examples/03_provision.py [WORK_DIR] [BROKER_URL]
"""

import sys
import tempfile
from pathlib import Path

import edgebert
from edgebert.fleet.agent import DeviceAgent
from edgebert.fleet.provision import ProvisionConfig, Provisioner, plan, table
from edgebert.fleet.signing import keygen, read_public_key
from edgebert.fleet.slots import ArtifactSlots
from edgebert.messaging.broker import EmbeddedBroker
from edgebert.messaging.client import connect
from edgebert.messaging.protocol import Topics
from edgebert.model.tinyml import train
from registry import open_registry

work = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp())
model, _ = train("digits", work / "digits", steps=200)  # a TinyML net, trained on the host
artifact = edgebert.convert(model, work / "digits-int8", "int8", model / "calibration.npy", force=True)

reg = open_registry("memory")
reg.add_artifact(artifact.path)  # records where its files are (dcat:downloadURL)
reg.add_tds([{"@context": ["https://www.w3.org/2022/wot/td/v1.1"], "id": f"urn:dev:{name}", "title": name,
              "securityDefinitions": {"nosec_sc": {"scheme": "nosec"}}, "security": "nosec_sc",
              "eb:ramBytes": 256_000, "eb:flashBytes": 1_000_000, "eb:supportsRuntime": [{"@id": "eb:onnxruntime"}],
              "eb:supportsPrecision": [{"@id": "eb:int8"}]} for name in ("m4-1", "m4-2")])

key, pub = keygen(work / "keys")  # the fleet's Ed25519 key; devices get only fleet.pub
broker = None if len(sys.argv) > 2 else EmbeddedBroker().start()
url = sys.argv[2] if len(sys.argv) > 2 else broker.url
topics = Topics("edgebert-example", "default")

# the devices: each an MQTT connection, a state directory and the fleet's public key
agents = [DeviceAgent(connect(url, topics, name, device=True), ArtifactSlots(work / "devices" / name),
                      read_public_key(pub)) for name in ("m4-1", "m4-2")]

# the provisioner (what `edgebert fleet provision --registry … --broker … --key fleet.key` runs)
rows = plan(reg, key, read_public_key(pub))
provisioner = connect(url, topics, "provisioner")
rows = Provisioner(reg, provisioner, rows, ProvisionConfig(wait_s=30), key).run()
print(table(rows))
for d in reg.deployments():
    print("registry:", d["device"], "runs", d["artifact"], d["status"])
print("m4-1 predicts:", int(agents[0].predict([0.5] * 64).argmax()))

provisioner.transport.close()
if broker is not None:
    broker.stop()
print("done")
