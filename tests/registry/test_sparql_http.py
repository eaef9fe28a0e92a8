"""The SPARQL 1.1 Protocol endpoint over real HTTP: results in every negotiated format, graphs for
CONSTRUCT/DESCRIBE, the protocol's dataset, strict request checks, updates for admins only, and the
W3C protocol tests (benchmarks/sparql_protocol.py) all passing."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import urllib.parse
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pyoxigraph as ox
import pytest

from registry.access import Access
from registry.describe import graph_for
from registry.registry import open_registry
from registry.server import ServerConfig

from .conftest import make_td
from .serving import call, running

SELECT = "SELECT ?d ?ram WHERE { ?d <https://w3id.org/edgebert/ns#ramBytes> ?ram } ORDER BY ?d"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    reg = open_registry("memory")
    reg.add_tds([make_td("s1", 1000, 2000), make_td("s2", 3000, 4000)])
    with running(reg) as base:
        yield base


def get(url: str, query: str, accept: str | None = None, path: str = "/search/sparql", **params: str):
    qs = urllib.parse.urlencode({"query": query, **params})
    return call("GET", f"{url}{path}?{qs}", headers={"Accept": accept} if accept else None)


@pytest.mark.parametrize(("path", "media"), [("/search/sparql", "application/json"),
                                             ("/sparql", "application/sparql-results+json")])
def test_select_default_media_type_per_endpoint(url: str, path: str, media: str) -> None:
    status, headers, body = get(url, SELECT, path=path)
    rows = json.loads(body)["results"]["bindings"]
    assert status == 200 and headers["content-type"] == media
    assert [(r["d"]["value"], r["ram"]["value"]) for r in rows] == [("urn:dev:s1", "1000"), ("urn:dev:s2", "3000")]


def test_select_as_xml_csv_tsv(url: str) -> None:
    _, h_xml, xml_body = get(url, SELECT, "application/sparql-results+xml")
    _, h_csv, csv_body = get(url, SELECT, "text/csv")
    _, h_tsv, tsv_body = get(url, SELECT, "text/tab-separated-values")
    ns = {"r": "http://www.w3.org/2005/sparql-results#"}
    uris = [u.text for u in ET.fromstring(xml_body).findall(".//r:binding[@name='d']/r:uri", ns)]
    table = list(csv.reader(io.StringIO(csv_body.decode())))
    assert h_xml["content-type"] == "application/sparql-results+xml" and uris == ["urn:dev:s1", "urn:dev:s2"]
    assert h_csv["content-type"].split(";")[0] == "text/csv"
    assert table == [["d", "ram"], ["urn:dev:s1", "1000"], ["urn:dev:s2", "3000"]]
    assert h_tsv["content-type"].split(";")[0] == "text/tab-separated-values"
    assert tsv_body.decode().splitlines()[1].split("\t")[0] == "<urn:dev:s1>"


def test_q_values_choose(url: str) -> None:
    _, headers, _ = get(url, SELECT, "application/sparql-results+json;q=0.5, text/csv;q=0.9")
    assert headers["content-type"] == "text/csv; charset=utf-8"


def test_ask_as_xml_and_not_as_csv(url: str) -> None:
    status, headers, body = get(url, "ASK { <urn:dev:s1> ?p ?o }", "application/sparql-results+xml")
    assert status == 200 and b"<boolean>true</boolean>" in body
    status, headers, body = get(url, "ASK {}", "text/csv")
    assert status == 406 and headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(("accept", "fmt"), [(None, ox.RdfFormat.JSON_LD), ("text/turtle", ox.RdfFormat.TURTLE),
                                              ("application/n-triples", ox.RdfFormat.N_TRIPLES),
                                              ("application/rdf+xml", ox.RdfFormat.RDF_XML)])
def test_construct_graphs_in_each_format(url: str, accept: str | None, fmt: ox.RdfFormat) -> None:
    query = "CONSTRUCT { ?d <urn:x:ram> ?ram } WHERE { ?d <https://w3id.org/edgebert/ns#ramBytes> ?ram }"
    status, headers, body = get(url, query, accept)
    triples = {(t.subject.value, t.object.value) for t in ox.parse(body, format=fmt)}
    assert status == 200 and headers["content-type"].split(";")[0] == (accept or "application/ld+json")
    assert triples == {("urn:dev:s1", "1000"), ("urn:dev:s2", "3000")}


def test_describe_a_device(url: str) -> None:
    status, headers, body = get(url, "DESCRIBE <urn:dev:s1>", "text/turtle")
    subjects = {t.subject.value for t in ox.parse(body, format=ox.RdfFormat.TURTLE)}
    assert status == 200 and "urn:dev:s1" in subjects


def test_the_protocol_dataset_restricts_the_graphs(url: str) -> None:
    count = "SELECT (COUNT(DISTINCT ?d) AS ?n) WHERE { ?d <https://w3id.org/edgebert/ns#ramBytes> ?r }"
    n = [json.loads(get(url, count, **extra)[2])["results"]["bindings"][0]["n"]["value"] for extra in
         ({}, {"default-graph-uri": graph_for("urn:dev:s1")}, {"named-graph-uri": graph_for("urn:dev:s1")})]
    named = "SELECT ?g WHERE { GRAPH ?g { ?d <https://w3id.org/edgebert/ns#ramBytes> ?r } }"
    graphs = json.loads(get(url, named, **{"named-graph-uri": graph_for("urn:dev:s2")})[2])["results"]["bindings"]
    assert n == ["2", "1", "0"]  # union of all / one graph / an empty default graph
    assert [g["g"]["value"] for g in graphs] == [graph_for("urn:dev:s2")]


@pytest.mark.parametrize(("method", "target", "body", "ctype", "status"), [
    ("GET", "/sparql?query=ASK%7B%7D&query=ASK%7B%7D", None, None, 400),
    ("GET", "/sparql?update=CLEAR%20ALL", None, None, 400),
    ("GET", "/sparql", None, None, 400),
    ("GET", "/sparql?query=ASK%20%7B", None, None, 400),
    ("GET", "/sparql?query=ASK%7B%7D&default-graph-uri=not%20an%20iri", None, None, 400),
    ("POST", "/sparql", b"ASK {}", "text/plain", 415),
    ("POST", "/sparql", "ASK {}".encode("utf-16"), "application/sparql-query", 400),
    ("POST", "/sparql", b"ASK {}", "application/sparql-query; charset=UTF-16", 415),
    ("POST", "/sparql", b"query=ASK%7B%7D&update=CLEAR%20ALL", "application/x-www-form-urlencoded", 400),
    ("POST", "/sparql?query=ASK%7B%7D", b"ASK {}", "application/sparql-query", 400),
    ("PUT", "/sparql?query=ASK%7B%7D", None, None, 405),
])
def test_malformed_requests_are_problems(url: str, method: str, target: str, body: bytes | None, ctype: str | None,
                                         status: int) -> None:
    got, headers, answer = call(method, url + target, body, content_type=ctype)
    assert got == status and headers["content-type"] == "application/problem+json", answer[:200]
    assert json.loads(answer)["detail"]


def test_updates_need_the_admin_scope_and_no_service() -> None:
    tokens = {"w" * 20: "write", "a" * 20: "admin", "r" * 20: "read"}
    reg = open_registry("memory")
    with running(reg, ServerConfig(access=Access(tokens=tokens))) as base:
        def update(token: str | None, text: str) -> int:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            return call("POST", f"{base}/sparql", text.encode(), "application/sparql-update", headers)[0]

        insert = "INSERT DATA { GRAPH <urn:g> { <urn:s> <urn:p> 1 } }"
        assert update(None, insert) == 401 and update("r" * 20, insert) == 403 and update("w" * 20, insert) == 403
        assert update("a" * 20, insert) == 204
        assert update("a" * 20, "INSERT { ?s ?p ?o } WHERE { SERVICE <http://127.0.0.1:1/> { ?s ?p ?o } }") == 403
        assert reg.query("ASK { GRAPH <urn:g> { <urn:s> <urn:p> 1 } }")[0]["ask"]


def test_the_w3c_protocol_tests_all_pass(tmp_path: Path) -> None:
    out = tmp_path / "protocol.json"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "sparql_protocol.py"), "--endpoints", "edgebert",
                           "--out", str(out)], capture_output=True, text=True, timeout=300)
    result = json.loads(out.read_text())["endpoints"]["edgebert"]
    assert done.returncode == 0, done.stderr[-2000:]
    failed = [name for name, r in result["tests"].items() if not r["passed"]]
    assert result["total"] == 34 and not failed, failed
