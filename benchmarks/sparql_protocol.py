"""Conformance: the W3C SPARQL 1.1 Protocol tests against the registry's endpoint and `oxigraph serve`.

The tests are the W3C's own (benchmarks/data/sparql11-protocol/manifest.ttl, from w3c/rdf-tests):
each is one or more HTTP requests with the status class, the result format and the boolean the
answer must have. Both endpoints run as servers on loopback, each on an empty store; before each
test its graph data is loaded through the endpoint's own SPARQL Update (``DROP ALL`` then
``INSERT DATA``), so both are driven the same way. The manifest's ``/sparql/`` path becomes
``/sparql`` on the registry and ``/query`` or ``/update`` on Oxigraph (its two endpoints).

    python benchmarks/sparql_protocol.py [--endpoints edgebert,oxigraph] [--out FILE]

Prints one line per test and endpoint, a table, and writes JSON.
"""

from __future__ import annotations

import argparse
import base64
import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import finish, free_port, serve

MANIFEST = Path(__file__).parent / "data" / "sparql11-protocol" / "manifest.ttl"
BASE = "http://www.w3.org/2009/sparql/docs/tests/data-sparql11/protocol/"
MF = "http://www.w3.org/2001/sw/DataAccess/tests/test-manifest#"
HT = "http://www.w3.org/2011/http#"
CNT = "http://www.w3.org/2011/content#"
UT = "http://www.w3.org/2009/sparql/tests/test-update#"
RESULT_TYPES = {
    "boolean": ("application/sparql-results+xml", "application/sparql-results+json"),
    "tabular": ("application/sparql-results+xml", "application/sparql-results+json", "text/csv",
                "text/tab-separated-values"),
    "RDF": ("application/rdf+xml", "text/turtle", "application/n-triples", "text/plain", "application/xhtml+xml"),
}


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: tuple[tuple[str, str], ...]
    body: bytes | None
    statuses: tuple[str, ...]  # "2xx", "3xx", "4xx"…
    format: str | None
    boolean: bool | None


@dataclass(frozen=True)
class Case:
    name: str
    title: str
    graphs: tuple[tuple[str, str], ...]  # (graph IRI, N-Triples)
    requests: tuple[Request, ...] = field(default_factory=tuple)


def load_cases(manifest: Path = MANIFEST) -> list[Case]:
    import rdflib
    from rdflib.collection import Collection

    g = rdflib.Graph().parse(manifest, format="turtle", publicID=BASE + "manifest.ttl")
    u = rdflib.URIRef

    def one(s: Any, p: str) -> Any:  # noqa: ANN401 - rdflib terms
        return g.value(s, u(p))

    man = next(g.subjects(u(str(rdflib.RDF.type)), u(MF + "Manifest")))
    cases = []
    for entry in Collection(g, one(man, MF + "entries")):
        graphs = []
        for data in g.objects(entry, u(UT + "graphData")):
            local = manifest.parent / str(one(data, UT + "graph")).rsplit("/", 1)[-1]
            graphs.append((str(one(data, str(rdflib.RDFS.label))), local.read_text(encoding="utf-8")))
        requests = []
        for r in Collection(g, one(one(entry, MF + "action"), HT + "requests")):
            hs = one(r, HT + "headers")
            headers = tuple((str(one(h, HT + "fieldName")), str(one(h, HT + "fieldValue")))
                            for h in (Collection(g, hs) if hs else []))
            body_node, body = one(r, HT + "body"), None
            if body_node is not None:
                chars, raw = one(body_node, CNT + "chars"), one(body_node, CNT + "bytes")
                encoding = str(one(body_node, CNT + "characterEncoding") or "UTF-8")
                body = base64.b64decode(str(raw)) if raw is not None else str(chars).encode(encoding)
            resp = one(r, HT + "resp")
            statuses = tuple(sorted(str(s).rsplit("StatusCode", 1)[-1] for s in g.objects(resp, u(MF + "expectedStatus"))))
            fmt, boolean = one(resp, MF + "expectedFormat"), one(resp, MF + "expectedBoolean")
            requests.append(Request(str(one(r, HT + "methodName")), str(one(r, HT + "absolutePath")), headers, body,
                                    statuses, str(fmt) if fmt is not None else None,
                                    bool(boolean.toPython()) if boolean is not None else None))
        cases.append(Case(str(entry).rsplit("#", 1)[-1], str(one(entry, MF + "name")), tuple(graphs), tuple(requests)))
    return cases


@dataclass(frozen=True)
class Endpoint:
    name: str
    base: str
    query_path: str
    update_path: str

    def path_for(self, req: Request) -> str:
        ctype = dict((k.lower(), v) for k, v in req.headers).get("content-type", "")
        is_update = ("sparql-update" in ctype or (req.body or b"").startswith(b"update=")
                     or "?update=" in req.path or "using-graph-uri" in req.path or "using-named-graph-uri" in req.path)
        path = self.update_path if is_update else self.query_path
        return req.path.replace("/sparql/", path, 1)


def http(method: str, url: str, headers: dict[str, str], body: bytes | None) -> tuple[int, str, bytes]:
    """One request with exactly these headers (urllib would add a form Content-Type to a bare POST)."""
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.request(method, parts.path + (f"?{parts.query}" if parts.query else ""), body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.getheader("Content-Type", ""), resp.read()
    finally:
        conn.close()


def _reset(ep: Endpoint, graphs: tuple[tuple[str, str], ...]) -> None:
    update = "DROP ALL"
    if graphs:
        update += " ;\nINSERT DATA {\n" + "\n".join(f"GRAPH <{g}> {{\n{nt}}}" for g, nt in graphs) + "\n}"
    status, _, body = http("POST", ep.base + ep.update_path, {"Content-Type": "application/sparql-update"},
                           update.encode())
    if status >= 300:
        raise RuntimeError(f"{ep.name}: loading the test data failed: HTTP {status}: {body[:200]!r}")


def _boolean(ctype: str, body: bytes) -> bool | None:
    try:
        if "json" in ctype:
            return bool(json.loads(body)["boolean"])
        if "xml" in ctype:
            text = body.decode()
            return True if "<boolean>true</boolean>" in text else False if "<boolean>false</boolean>" in text else None
    except (ValueError, KeyError):
        return None
    return None


def check(ep: Endpoint, case: Case) -> tuple[bool, str]:
    """(passed, why not) for one test on one endpoint."""
    _reset(ep, case.graphs)
    for n, req in enumerate(case.requests, 1):
        status, ctype, body = http(req.method, ep.base + ep.path_for(req), dict(req.headers), req.body)
        where = f"request {n}" if len(case.requests) > 1 else "request"
        if f"{status // 100}xx" not in req.statuses:
            return False, f"{where}: expected status {'/'.join(req.statuses)}, found {status}: {body[:120]!r}"
        media = ctype.split(";", 1)[0].strip().lower()
        if req.format and media not in RESULT_TYPES[req.format]:
            return False, f"{where}: expected a {req.format} result ({', '.join(RESULT_TYPES[req.format])}), found {media!r}"
        if req.boolean is not None and _boolean(media, body) != req.boolean:
            return False, f"{where}: expected boolean {str(req.boolean).lower()}, found {body[:120]!r}"
    return True, ""


def start(name: str, work: Path) -> tuple[Endpoint, subprocess.Popen]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    if name == "edgebert":
        cmd = [shutil.which("edgebert") or "edgebert", "registry", "--store", str(work / "edgebert"), "serve",
               "--port", str(port)]
        ep = Endpoint("edgebert registry", base, "/sparql", "/sparql")
    elif name == "oxigraph":
        exe = shutil.which("oxigraph")
        if exe is None:
            raise RuntimeError("oxigraph: expected the `oxigraph` server (pip install oxigraph), found none")
        cmd = [exe, "serve", "--location", str(work / "oxigraph"), "--bind", f"127.0.0.1:{port}"]
        ep = Endpoint("oxigraph serve", base, "/query", "/update")
    else:
        raise ValueError(f"endpoint: expected edgebert or oxigraph, found {name!r}")
    return ep, serve(cmd, base + ep.query_path + "?query=ASK%7B%7D")


def run(names: list[str], cases: list[Case]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            ep, proc = start(name, Path(tmp))
            try:
                results = {}
                for case in cases:
                    ok, why = check(ep, case)
                    results[case.name] = {"passed": ok, "why": why}
                    print(f"{ep.name:18s} {'pass' if ok else 'FAIL'}  {case.name}" + (f"  ({why})" if why else ""))
                out[name] = {"endpoint": ep.name, "passed": sum(r["passed"] for r in results.values()),
                             "total": len(results), "tests": results}
            finally:
                proc.terminate()
                proc.wait(timeout=20)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--endpoints", default="edgebert,oxigraph", help="comma-separated: edgebert, oxigraph")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "sparql_protocol.json"))
    args = parser.parse_args()
    cases = load_cases()
    names = [n.strip() for n in args.endpoints.split(",") if n.strip()]
    results = run(names, cases)
    print(f"\n| test | {' | '.join(results[n]['endpoint'] for n in names)} |")
    print("|---|" + "---|" * len(names))
    for case in cases:
        print(f"| {case.name} | " + " | ".join("pass" if results[n]["tests"][case.name]["passed"] else "FAIL"
                                             for n in names) + " |")
    print("| **passed** | " + " | ".join(f"**{results[n]['passed']}/{results[n]['total']}**" for n in names) + " |")
    targets = {}
    if "edgebert" in results and "oxigraph" in results:
        targets["registry passes at least as many as oxigraph serve"] = (
            results["edgebert"]["passed"] >= results["oxigraph"]["passed"])
    return finish(targets, {"suite": "W3C SPARQL 1.1 Protocol (w3c/rdf-tests)", "endpoints": results}, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
