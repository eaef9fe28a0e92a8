"""The registry on a real SPARQL 1.1 server: `oxigraph serve`, started by the test."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgebert.errors import DescriptionError, StoreError
from registry.registry import open_registry

from ..net import free_port, port_open, wait_until
from .conftest import SELOC, make_td


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    exe = shutil.which("oxigraph")
    assert exe, "the oxigraph server (PyPI package 'oxigraph') is a test dependency"
    port = free_port()
    proc = subprocess.Popen([exe, "serve", "--location", str(tmp_path_factory.mktemp("oxi")), "--bind",
                             f"127.0.0.1:{port}", "--union-default-graph"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_until(lambda: port_open(port), 30, poll=0.1)
    yield f"http://127.0.0.1:{port}/query"
    proc.terminate()
    proc.wait(timeout=10)


def test_matching_on_a_remote_endpoint(endpoint: str) -> None:
    reg = open_registry(endpoint)
    reg.import_file(SELOC / "example_tflite_models.ttl")
    [arduino] = reg.add_device_file(SELOC / "example_arduino_nano_ble_33_td.ttl")

    assert len(reg.match(arduino)) == 22


def test_failed_remote_write_leaves_the_store_as_it_was(endpoint: str) -> None:
    reg = open_registry(endpoint)
    reg.add_tds([make_td("remote-ok", 1000, 1000)])
    before = reg.store.count()
    bad = make_td("remote-bad", 1000, 1000)
    bad["eb:supportsRuntime"] = [{"@id": "eb:nope"}]

    with pytest.raises(DescriptionError):
        reg.add_tds([make_td("remote-also", 1000, 1000), bad])
    assert reg.store.count() == before


def test_remote_dump_and_restore(endpoint: str, tmp_path: Path) -> None:
    reg = open_registry(endpoint)
    reg.add_tds([make_td("remote-dumped", 1000, 1000)])
    reg.dump(tmp_path / "remote.nq")
    reg.add_tds([make_td("remote-after", 1000, 1000)])

    reg.restore(tmp_path / "remote.nq")

    devices = reg.list_devices(limit=1000)
    assert "urn:dev:remote-dumped" in devices and "urn:dev:remote-after" not in devices


def test_unreachable_endpoint_is_one_clear_error() -> None:
    with pytest.raises(StoreError, match="expected a reachable SPARQL endpoint"):
        open_registry(f"http://127.0.0.1:{free_port()}/query")


def test_the_directory_over_a_remote_endpoint(endpoint: str) -> None:
    """The HTTP directory on a registry kept in `oxigraph serve`: registration info, SPARQL results
    in another format, a CONSTRUCT graph and the protocol's dataset all pass through."""
    import json
    import urllib.parse

    import pyoxigraph as ox

    from registry.describe import graph_for

    from .serving import call, running

    reg = open_registry(endpoint)
    with running(reg) as url:
        assert call("PUT", f"{url}/things/urn:dev:remote-http", make_td("remote-http", 1000, 2000))[0] in (201, 204)
        stored = json.loads(call("GET", f"{url}/things/urn:dev:remote-http")[2])
        select = urllib.parse.quote("SELECT ?ram WHERE { <urn:dev:remote-http> <https://w3id.org/edgebert/ns#ramBytes> ?ram }")
        status, headers, body = call("GET", f"{url}/sparql?query={select}", headers={"Accept": "text/csv"})
        construct = urllib.parse.quote("CONSTRUCT { ?d <urn:x:ram> ?r } WHERE { ?d <https://w3id.org/edgebert/ns#ramBytes> ?r }")
        _, _, graph = call("GET", f"{url}/sparql?query={construct}&default-graph-uri="
                                  f"{urllib.parse.quote(graph_for('urn:dev:remote-http'))}",
                           headers={"Accept": "application/n-triples"})
    assert "created" in stored["registration"]
    assert status == 200 and headers["content-type"].startswith("text/csv") and body.decode().split() == ["ram", "1000"]
    assert [t.subject.value for t in ox.parse(graph, format=ox.RdfFormat.N_TRIPLES)] == ["urn:dev:remote-http"]


def test_match_on_a_shared_endpoint_sees_its_own_writes_at_once_and_others_once_its_table_expires(
        endpoint: str, artifact_factory, monkeypatch: pytest.MonkeyPatch) -> None:
    from registry import registry as registry_module

    monkeypatch.setattr(registry_module, "SHARED_TABLE_TTL_S", 3600.0)
    mine, other = open_registry(endpoint), open_registry(endpoint)
    mine.add_tds([make_td("shared-dev", 10_000, 10_000)])
    before = {m.id for m in mine.match("urn:dev:shared-dev")}

    other.add_artifact(artifact_factory("shared-theirs", ram=1_000))
    assert {m.id for m in mine.match("urn:dev:shared-dev")} == before  # its table is younger than the TTL
    mine.add_artifact(artifact_factory("shared-mine", ram=1_000))
    assert {m.id for m in mine.match("urn:dev:shared-dev")} == before | {"shared-mine", "shared-theirs"}  # read again

    other.add_artifact(artifact_factory("shared-later", ram=1_000))
    monkeypatch.setattr(registry_module, "SHARED_TABLE_TTL_S", 0.0)
    assert "shared-later" in {m.id for m in mine.match("urn:dev:shared-dev")}


def test_a_bulk_import_goes_to_the_endpoints_store_as_n_quads_and_falls_back_to_sparql(
        endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from registry import store as store_module

    monkeypatch.setattr(store_module, "BULK_QUADS", 50)  # a chunk of 10 TDs is about 240 quads
    posted: list[int] = []
    real_urlopen = store_module.urllib.request.urlopen

    def counting(request, *args, **kwargs):  # noqa: ANN001, ANN202
        if request.full_url.endswith("?no_transaction"):
            posted.append(len(request.data))
        return real_urlopen(request, *args, **kwargs)

    monkeypatch.setattr(store_module.urllib.request, "urlopen", counting)
    reg = open_registry(endpoint)
    assert reg.store.store_url == endpoint.removesuffix("/query") + "/store"
    reg.bulk_add_tds([make_td(f"bulk-{i:02d}", 1000, 1000) for i in range(30)], chunk=10)
    assert len(posted) == 3 and reg.get_td("urn:dev:bulk-29")["title"] == "bulk-29"
    reg.bulk_add_tds([make_td(f"bulk-{i:02d}", 2000, 2000) for i in range(10)], chunk=10)  # they exist: SPARQL
    assert len(posted) == 3 and reg.get_td("urn:dev:bulk-05")["eb:ramBytes"] == 2000
    assert reg.query("PREFIX eb: <https://w3id.org/edgebert/ns#> SELECT (COUNT(*) AS ?n) WHERE "
                     "{ <urn:dev:bulk-05> eb:ramBytes ?r }")[0]["n"] == 1  # replaced, not added to

    elsewhere = open_registry(endpoint)
    elsewhere.store.store_url = endpoint.removesuffix("/query") + "/no-such-service"  # answers 404
    elsewhere.bulk_add_tds([make_td(f"fallback-{i:02d}", 1000, 1000) for i in range(10)], chunk=10)
    assert elsewhere.store.store_url is None and elsewhere.count_devices() >= 40
    assert elsewhere.get_td("urn:dev:fallback-09")["title"] == "fallback-09"
