"""Every valid TD 1.1 is accepted over HTTP and exports back to the same RDF; every invalid one is
refused with validationErrors naming the field. The TDs are the W3C TD 1.1 Recommendation's complete
examples and the Eclipse Thingweb playground's valid and invalid sets (tests/registry/data/tds/SOURCES).
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pyoxigraph as ox
import pytest
import rdflib
from rdflib.compare import isomorphic

from registry.describe import graph_for
from registry.registration import DISCOVERY, DISCOVERY_CONTEXT
from registry.registry import Registry, open_registry

from .serving import call, running

TDS = Path(__file__).parent / "data" / "tds"
VALID = sorted((TDS / "spec").glob("*.json")) + sorted((TDS / "valid").glob("*.json"))
INVALID = sorted((TDS / "invalid").glob("*.json"))
TD_DOCUMENT = "https://w3id.org/edgebert/ns#tdDocument"


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[str, Registry]]:
    reg = open_registry("memory")
    with running(reg) as url:
        yield url, reg


@pytest.fixture(scope="module")
def refusing() -> Iterator[str]:
    """A directory only invalid TDs are sent to (some share an id with a valid one)."""
    with running(open_registry("memory")) as url:
        yield url


def _thing_graph(reg: Registry, thing: str) -> rdflib.Graph:
    """The Thing's RDF as the directory holds it, without what the directory adds (its registration
    and the stored JSON)."""
    quads = list(reg.store._store.quads_for_pattern(None, None, None, ox.NamedNode(graph_for(thing))))  # type: ignore[attr-defined]
    registration = {q.object for q in quads if q.predicate.value == DISCOVERY + "hasRegistrationInformation"}
    kept = [q for q in quads if q.subject not in registration and q.predicate.value != TD_DOCUMENT
            and q.predicate.value != DISCOVERY + "hasRegistrationInformation"]
    return rdflib.Graph().parse(data="".join(f"{q.subject} {q.predicate} {_nt(q.object)} .\n" for q in kept), format="nt")


def _nt(term: ox.NamedNode | ox.BlankNode | ox.Literal) -> str:
    """N-Triples rdflib reads: a base direction (RDF 1.2, ``@ar--rtl``) kept as a private language subtag."""
    text = str(term)
    if isinstance(term, ox.Literal) and term.language and not text.endswith(f"@{term.language}"):
        return str(ox.Literal(term.value, language=f"{term.language}-x-{text.rsplit('--', 1)[1]}"))
    return text


def _register(url: str, td: dict) -> tuple[int, str | None, bytes]:
    if "id" in td:
        status, _, body = call("PUT", f"{url}/things/{urllib.parse.quote(td['id'], safe=':/')}", td)
        return status, td["id"], body
    status, headers, body = call("POST", f"{url}/things", td)
    return status, headers.get("location"), body


def test_the_corpus_is_what_the_target_names() -> None:
    with_events = [p for p in VALID if "events" in json.loads(p.read_text())]
    assert len(VALID) == 63 and len(INVALID) == 23 and len(with_events) >= 10
    assert not any("eb:" in p.read_text() for p in VALID)  # none carries the toolkit's own fields


@pytest.mark.parametrize("path", VALID, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_a_valid_td_is_accepted_and_exports_to_the_same_rdf(served: tuple[str, Registry], path: Path) -> None:
    url, reg = served
    td = json.loads(path.read_text())
    status, thing, body = _register(url, td)
    assert status in (201, 204), body[:300]
    assert thing is not None and (thing == td.get("id") or thing.startswith("urn:uuid:"))

    status, headers, got = call("GET", f"{url}/things/{urllib.parse.quote(thing, safe=':/')}")
    exported = json.loads(got)
    assert status == 200 and headers["content-type"].startswith("application/td+json")
    assert exported["id"] == thing and DISCOVERY_CONTEXT in exported["@context"] and "created" in exported["registration"]

    again = open_registry("memory")
    again.add_tds([exported], shacl=False)  # what a client does with what it retrieved
    assert isomorphic(_thing_graph(reg, thing), _thing_graph(again, thing))
    assert len(_thing_graph(reg, thing)) > 5


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_an_invalid_td_is_refused_naming_the_field(refusing: str, path: Path) -> None:
    url = refusing
    raw = path.read_bytes()
    td = json.loads(raw)  # (duplicate members: the last wins here, but the server reads the bytes)
    target = f"{url}/things/{urllib.parse.quote(td['id'], safe=':/')}" if "id" in td else f"{url}/things"
    status, headers, body = call("PUT" if "id" in td else "POST", target, raw)
    problem = json.loads(body)
    assert status == 400 and headers["content-type"] == "application/problem+json"
    assert problem["validationErrors"] and all(e["field"] and e["description"] for e in problem["validationErrors"])
    if "id" in td:
        assert call("GET", target)[0] == 404  # nothing half-written


def test_the_fast_schema_check_agrees_with_jsonschema_on_every_td() -> None:
    """The compiled schema answers for valid TDs; it must refuse exactly what jsonschema refuses."""
    import fastjsonschema

    from registry.describe import _td_fast_validator, _td_validator

    for path in VALID + INVALID:
        td = json.loads(path.read_text())
        broken = [td, {**td, "title": 5}, {**td, "securityDefinitions": {}}, {k: v for k, v in td.items() if k != "@context"}]
        for doc in broken:
            try:
                _td_fast_validator()(doc)
                fast = True
            except fastjsonschema.JsonSchemaException:
                fast = False
            assert fast == _td_validator().is_valid(doc), path.name
