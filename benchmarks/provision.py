"""Benchmark: fleet provisioning through Mosquitto, and the whole `edgebert demo`.

(a) Provision N TinyML devices (digits net) and M text devices (all-MiniLM-L6-v2 int8 when its
    package is installed, else the random BERT-Tiny) through Mosquitto (127.0.0.1:1883): wall
    time until every device has verified, self-tested and activated its artifact and the registry
    has recorded it. Peer in the same run: the same bytes published raw (paho, QoS 1, one message
    per file, chunked the same way) to the same devices' topics with no signature, hash check,
    staging, self-test or registry — the floor any MQTT delivery pays. Ratio = ours / raw.
(b) `edgebert demo` with its defaults, timed (target: under 5 minutes on 2 cores).

    python benchmarks/provision.py [--tinyml 40] [--text 8] [--skip-demo] [--out benchmarks/results/provision.json]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from common import finish  # noqa: E402 - before this folder leaves the import path

# benchmarks/registry.py is named like the registry package: keep this folder off the import path
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/net.py

import edgebert  # noqa: E402
from edgebert.artifact import Artifact  # noqa: E402
from edgebert.fleet.agent import DeviceAgent  # noqa: E402
from edgebert.fleet.provision import ProvisionConfig, Provisioner, plan  # noqa: E402
from edgebert.fleet.signing import keygen, read_public_key  # noqa: E402
from edgebert.fleet.slots import ArtifactSlots  # noqa: E402
from edgebert.messaging.mqtt import BrokerConfig, MqttLoop, MqttTransport  # noqa: E402
from edgebert.messaging.protocol import Message, Topics  # noqa: E402
from edgebert.messaging.transport import Channel  # noqa: E402
from edgebert.model.tinyml import train  # noqa: E402
from edgebert.model.zoo import corpus_path, find_minilm, make_random_bert  # noqa: E402
from registry.registry import open_registry  # noqa: E402
from tests.net import wait_until  # noqa: E402

MOSQUITTO = "mqtt://127.0.0.1:1883"


def td(name: str, ram: int, family: str) -> dict:
    return {"@context": ["https://www.w3.org/2022/wot/td/v1.1"], "id": f"urn:bench:{name}", "title": name,
            "securityDefinitions": {"nosec_sc": {"scheme": "nosec"}}, "security": "nosec_sc",
            "eb:ramBytes": ram, "eb:flashBytes": 64 * ram, "eb:supportsRuntime": [{"@id": "eb:onnxruntime"}],
            "eb:supportsPrecision": [{"@id": "eb:int8"}], "eb:wantsFamily": family}


def ours(work: Path, names: list[str], key: Path, pub: Path, reg) -> tuple[float, int]:  # noqa: ANN001
    topics = Topics("edgebert-bench", uuid.uuid4().hex[:8])
    loop = MqttLoop()
    try:
        agents = [DeviceAgent(Channel(MqttTransport(BrokerConfig(MOSQUITTO), f"{topics.fleet}-{n}", loop), topics, n),
                              ArtifactSlots(work / "devices" / n), read_public_key(pub)) for n in names]
        rows = plan(reg, key, read_public_key(pub))
        transport = MqttTransport(BrokerConfig(MOSQUITTO), f"{topics.fleet}-provisioner")
        t0 = time.perf_counter()
        rows = Provisioner(reg, Channel(transport, topics, "provisioner"), rows, ProvisionConfig(wait_s=600),
                           key).run()
        wall = time.perf_counter() - t0
        transport.close()
        assert all(r.result == "active" for r in rows), [r.result for r in rows]
        assert all(a.engine is not None for a in agents)
        return wall, sum(r.bytes_sent for r in rows)
    finally:
        loop.stop()


def raw(targets: dict[str, Path]) -> float:
    """The same files, published raw (chunked like ours) and counted at each device; no checks."""
    topics = Topics("edgebert-bench-raw", uuid.uuid4().hex[:8])
    loop = MqttLoop()
    try:
        expected, got = {}, {}
        files = {name: [art / f for f in Artifact.load(art).manifest.device_files()] for name, art in targets.items()}
        for name in targets:
            expected[name] = len(files[name])
            got[name] = 0
            ch = Channel(MqttTransport(BrokerConfig(MOSQUITTO), f"{topics.fleet}-{name}", loop), topics, name)
            ch.subscribe(topics.artifact_files(name), lambda t, m, n=name: got.__setitem__(n, got[n] + 1))
        sender = Channel(MqttTransport(BrokerConfig(MOSQUITTO), f"{topics.fleet}-sender"), topics, "sender")
        time.sleep(0.5)
        t0 = time.perf_counter()
        for name in targets:
            for f in files[name]:
                sender.send(topics.artifact_files(name), Message("file", "sender", info={"name": f.name},
                                                                  body=f.read_bytes()))
        assert wait_until(lambda: all(got[n] >= expected[n] for n in targets), 600)
        return time.perf_counter() - t0
    finally:
        loop.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tinyml", type=int, default=40)
    ap.add_argument("--text", type=int, default=8)
    ap.add_argument("--skip-demo", action="store_true")
    ap.add_argument("--out", default="benchmarks/results/provision.json")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="edgebert-bench-prov-"))
    try:
        mdir, _ = train("digits", work / "digits", steps=300)
        digits = edgebert.convert(mdir, work / "digits-int8", "int8", mdir / "calibration.npy", measure=False)
        ckpt = find_minilm() or make_random_bert(work / "bert-tiny", "bert-tiny")
        name = "all-MiniLM-L6-v2" if find_minilm() else "bert-tiny-random"
        text = edgebert.convert(ckpt, work / "text-int8", "int8", corpus_path(), name=name, measure=False)
        key, pub = keygen(work / "keys")
        reg = open_registry("memory")
        reg.add_artifact(digits.path)
        reg.add_artifact(text.path)
        names = [f"m4-{i:03d}" for i in range(args.tinyml)] + [f"pi-{i:03d}" for i in range(args.text)]
        reg.add_tds([td(n, 256_000 if n.startswith("m4") else 2_000_000_000,
                        "digits" if n.startswith("m4") else name) for n in names])
        wall, sent = ours(work, names, key, pub, reg)
        raw_s = raw({n: digits.path if n.startswith("m4") else text.path for n in names})
        print(f"\n(a) provisioning {args.tinyml} TinyML + {args.text} {name} devices through Mosquitto")
        print(f"{'':<52}{'wall s':>9}{'MB sent':>10}{'MB/s':>8}")
        print(f"{'edgebert fleet provision (verify, activate, record)':<52}{wall:>9.2f}{sent / 1e6:>10.1f}"
              f"{sent / 1e6 / wall:>8.1f}")
        print(f"{'raw QoS1 publish of the same files (no checks)':<52}{raw_s:>9.2f}{sent / 1e6:>10.1f}"
              f"{sent / 1e6 / raw_s:>8.1f}")
        print(f"ratio ours / raw: {wall / raw_s:.2f}x")
        result = {"devices": {"tinyml": args.tinyml, "text": args.text, "text_model": name}, "provision_s": wall,
                  "raw_s": raw_s, "bytes": sent, "ratio": wall / raw_s}
        targets = {}
        if not args.skip_demo:
            t0 = time.perf_counter()
            out = work / "demo"
            proc = subprocess.run([sys.executable, "-m", "edgebert", "demo", "--out", str(out), "--quiet"],
                                  capture_output=True, text=True)
            demo_s = time.perf_counter() - t0
            print(f"\n(b) edgebert demo (defaults): exit {proc.returncode}, {demo_s:.1f} s wall")
            print("\n".join(proc.stdout.strip().splitlines()[-6:]))
            result["demo_s"], result["demo_exit"] = demo_s, proc.returncode
            targets["edgebert demo < 300 s"] = proc.returncode == 0 and demo_s < 300
        return finish(targets, result, args.out)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
