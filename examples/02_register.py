"""Step 2: register devices (W3C WoT TDs) and an artifact, and ask which artifact fits which device.

Run: python examples/02_register.py [WORK_DIR]
"""

import sys
import tempfile
from pathlib import Path

import edgebert
from edgebert.model.zoo import corpus_path, make_random_bert
from registry import open_registry

work = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp())
artifact = edgebert.convert(make_random_bert(work / "bert-tiny", "bert-tiny"), work / "tiny-int8", "int8",
                            corpus_path(), force=True)


def td(name: str, ram: int, flash: int, runtimes: list[str]) -> dict:
    return {"@context": ["https://www.w3.org/2022/wot/td/v1.1"], "id": f"urn:dev:{name}", "title": name,
            "securityDefinitions": {"nosec_sc": {"scheme": "nosec"}}, "security": "nosec_sc",
            "eb:ramBytes": ram, "eb:flashBytes": flash, "eb:supportsRuntime": [{"@id": f"eb:{r}"} for r in runtimes],
            "eb:supportsPrecision": [{"@id": "eb:int8"}, {"@id": "eb:fp32"}]}


reg = open_registry(str(work / "registry"))
reg.add_tds([td("gateway-1", 4 * 2**30, 32 * 2**30, ["onnxruntime"]), td("m4-1", 256 * 1024, 2**20, ["tflite-micro"])])
artifact_iri = reg.add_artifact(artifact.path)
for device in ("urn:dev:gateway-1", "urn:dev:m4-1"):
    print(device, "->", [m.id for m in reg.match(device)] or "nothing fits")
print("devices that can run it:", [d["id"] for d in reg.devices_for(artifact_iri)])
reg.record_deployment("urn:dev:gateway-1", artifact_iri)
print("what runs where:", [(d["device"], d["artifact"], d["status"]) for d in reg.deployments()])
reg.close()
print("done")
