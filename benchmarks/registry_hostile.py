"""Does the registry server keep answering while a hostile request is being processed?

Our server (`edgebert registry serve`, a real process) holds 1,000 device TDs plus 400 extra
triples that make a 3-way cross join of 64 million rows. A client measures `GET /things?limit=20`
latency (median / max of 20 requests) with nothing else going on, then while each hostile request
runs in parallel: the cross join, a 4.3 MB TD with 60,000 properties, a SERVICE call to the
server's own port, a 100,000-deep JSON body. The peer is `oxigraph serve` (Oxigraph's own
multi-threaded SPARQL server) with the same quads: the latency of a 20-row SELECT while the same
cross join runs on it.

Target (issue 11): GET /things within 1 s while a hostile query or TD is processed; no request
makes the server send a request elsewhere.

    python benchmarks/registry_hostile.py
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
from common import finish

CROSS = "SELECT (COUNT(*) AS ?n) WHERE { ?a <urn:p> ?x . ?b <urn:p> ?y . ?c <urn:p> ?z }"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"port {port} never opened")


def request(method: str, url: str, body: bytes | None = None, ctype: str = "application/td+json",
            timeout: float = 120) -> tuple[int, float]:
    t = time.perf_counter()
    req = urllib.request.Request(url, data=body, method=method, headers={"Content-Type": ctype})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            r.read()
            code = r.status
    except urllib.error.HTTPError as e:
        code = e.code
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        code = -1
    return code, time.perf_counter() - t


def td(i: int) -> dict:
    return {"@context": ["https://www.w3.org/2022/wot/td/v1.1"], "id": f"urn:dev:b{i}", "title": f"b{i}",
            "securityDefinitions": {"nosec_sc": {"scheme": "nosec"}}, "security": "nosec_sc",
            "eb:ramBytes": 256_000, "eb:flashBytes": 1_000_000, "eb:supportsRuntime": [{"@id": "eb:onnxruntime"}],
            "eb:supportsPrecision": [{"@id": "eb:int8"}]}


def probe(url: str, n: int = 20, gap: float = 0.05) -> list[float]:
    times = []
    for _ in range(n):
        code, dt = request("GET", url, timeout=30)
        times.append(dt if code == 200 else float("inf"))
        time.sleep(gap)
    return times


def under(attack, url: str) -> tuple[list[float], int]:  # noqa: ANN001
    box: dict[str, int] = {}
    worker = threading.Thread(target=lambda: box.__setitem__("code", attack()))
    worker.start()
    time.sleep(0.3)
    times = probe(url)
    worker.join(180)
    return times, box.get("code", -1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="benchmarks/results/registry_hostile.json")
    args = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from registry.registry import open_registry

    work = Path(tempfile.mkdtemp(prefix="registry-hostile-"))
    procs: list[subprocess.Popen] = []
    try:
        reg = open_registry(str(work / "store"))
        reg.add_tds([td(i) for i in range(1000)], shacl=False)
        reg.store.update("INSERT DATA { GRAPH <urn:g:x> { " + " ".join(f"<urn:s{i}> <urn:p> {i} ." for i in range(400))
                         + " } }")
        reg.dump(work / "all.nq")
        reg.close()
        port = free_port()
        procs.append(subprocess.Popen([sys.executable, "-m", "edgebert", "registry", "--store", str(work / "store"),
                                       "serve", "--port", str(port)], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL))
        wait_port(port)
        base = f"http://127.0.0.1:{port}"
        things = f"{base}/things?limit=20"
        many = td(99_999)
        many["properties"] = {f"p{i}": {"type": "number", "forms": [{"href": f"http://x/{i}"}]} for i in range(60_000)}
        huge = json.dumps(many).encode()
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        listener.settimeout(0.01)
        sink = listener.getsockname()[1]
        attacks = {
            "none": None,
            "3-way cross join (64M rows)": lambda: request("GET", f"{base}/search/sparql?query="
                                                          + urllib.parse.quote(CROSS))[0],
            f"{len(huge) / 1e6:.1f} MB TD, 60k properties": lambda: request("PUT", f"{base}/things/urn:dev:b99999",
                                                                           huge)[0],
            "SERVICE to its own port": lambda: request("GET", f"{base}/search/sparql?query=" + urllib.parse.quote(
                f"SELECT * WHERE {{ SERVICE <{base}/search/sparql> {{ ?s ?p ?o }} }}"))[0],
            "SERVICE to another host": lambda: request("GET", f"{base}/search/sparql?query=" + urllib.parse.quote(
                f"SELECT * WHERE {{ SERVICE <http://127.0.0.1:{sink}/sparql> {{ ?s ?p ?o }} }}"))[0],
            "100,000-deep JSON": lambda: request("PUT", f"{base}/things/urn:dev:deep",
                                                 b"[" * 100_000 + b"]" * 100_000)[0],
        }
        rows = []
        for name, attack in attacks.items():
            times, code = (probe(things), 0) if attack is None else under(attack, things)
            rows.append({"attack": name, "median_ms": 1e3 * float(np.median(times)), "max_ms": 1e3 * float(max(times)),
                         "attack_status": code})
        outbound = 0
        try:
            while True:
                listener.accept()
                outbound += 1
        except TimeoutError:
            pass
        listener.close()

        # the peer: oxigraph serve with the same quads, a 20-row SELECT while the cross join runs on it
        exe = shutil.which("oxigraph")
        peer = None
        if exe:
            subprocess.run([exe, "load", "--location", str(work / "oxi"), "--file", str(work / "all.nq")],
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            oport = free_port()
            procs.append(subprocess.Popen([exe, "serve", "--location", str(work / "oxi"), "--bind",
                                           f"127.0.0.1:{oport}", "--union-default-graph"],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            wait_port(oport)
            q = f"http://127.0.0.1:{oport}/query?query=" + urllib.parse.quote("SELECT * WHERE { ?s ?p ?o } LIMIT 20")
            quiet = probe(q)
            loaded, _ = under(lambda: request("GET", f"http://127.0.0.1:{oport}/query?query="
                                              + urllib.parse.quote(CROSS), timeout=60)[0], q)
            peer = {"none_median_ms": 1e3 * float(np.median(quiet)), "cross_median_ms": 1e3 * float(np.median(loaded)),
                    "cross_max_ms": 1e3 * float(max(loaded))}
    finally:
        for p in procs:
            p.terminate()
            p.wait(30)
        shutil.rmtree(work, ignore_errors=True)

    print(f"GET /things?limit=20 on `edgebert registry serve` (1,000 TDs), 20 requests during each attack; "
          f"{os.cpu_count()} cores")
    print(f"{'attack':<34} {'median ms':>10} {'max ms':>9} {'attack answered':>16}")
    for r in rows:
        print(f"{r['attack']:<34} {r['median_ms']:>10.1f} {r['max_ms']:>9.1f} {r['attack_status']:>16}")
    if peer:
        print(f"peer: oxigraph serve, 20-row SELECT: {peer['none_median_ms']:.1f} ms quiet, "
              f"{peer['cross_median_ms']:.1f} ms median / {peer['cross_max_ms']:.1f} ms max during the cross join")
    print(f"outbound connections the server made: {outbound}")
    worst = max(r["max_ms"] for r in rows)
    return finish({"GET /things < 1 s during every attack": worst < 1000.0, "no outbound request": outbound == 0},
                  {"rows": rows, "peer": peer, "outbound": outbound}, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
