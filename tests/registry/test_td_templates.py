"""TD templates (``registry/td_templates.py``) give exactly what pyoxigraph's JSON-LD parser gives:
on every corpus TD, on a fleet, and on TDs made to trip a template (values that expand, values a
placeholder could be taken for, type-scoped contexts, key order)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pyoxigraph as ox
import pytest
import rdflib
from rdflib.compare import isomorphic

from registry import describe, td_templates

from .conftest import make_td

TDS = Path(__file__).parent / "data" / "tds"
VALID = sorted((TDS / "spec").glob("*.json")) + sorted((TDS / "valid").glob("*.json"))


def _nt(term: ox.NamedNode | ox.BlankNode | ox.Literal) -> str:
    """N-Triples rdflib reads: a base direction (RDF 1.2) kept as a private language subtag."""
    text = str(term)
    if isinstance(term, ox.Literal) and term.language and not text.endswith(f"@{term.language}"):
        return str(ox.Literal(term.value, language=f"{term.language}-x-{text.rsplit('--', 1)[1]}"))
    return text


def _graphs(quads: list[ox.Quad]) -> dict[str, rdflib.Graph]:
    by_graph: dict[str, list[str]] = {}
    for q in quads:
        by_graph.setdefault(str(q.graph_name), []).append(f"{q.subject} {q.predicate} {_nt(q.object)} .\n")
    return {g: rdflib.Graph().parse(data="".join(lines), format="nt") for g, lines in by_graph.items()}


def _same_as_the_parser(tds: list[dict]) -> tuple[int, int]:
    """Asserts the templates' quads equal the parser's, graph by graph; returns (filled, parsed)."""
    cache = describe.TEMPLATES = td_templates.TemplateCache()
    expected = _graphs(describe.tds_to_quads(copy.deepcopy(tds), templates=False))
    describe.tds_to_quads(copy.deepcopy(tds))  # learns the shapes
    got = _graphs(describe.tds_to_quads(copy.deepcopy(tds)))  # fills them in
    assert expected.keys() == got.keys()
    for g in expected:
        assert isomorphic(expected[g], got[g]), g
    filled = 0
    for td in tds:
        ctx = describe._offline_context(td)
        node = {k: v for k, v in td.items() if k != "@context"}
        filled += cache.quads(node, ctx, json.dumps(td.get("@context"), sort_keys=True), ox.NamedNode("urn:g")) is not None
    return filled, cache.parsed


@pytest.fixture(autouse=True)
def _own_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(describe, "TEMPLATES", td_templates.TemplateCache())


def test_every_corpus_td_is_filled_in_exactly() -> None:
    tds = []
    for path in VALID:
        td = json.loads(path.read_text(encoding="utf-8"))
        tds.append({"id": f"urn:uuid:{path.stem}", **td})  # anonymous ones get the id a directory gives them

    filled, _ = _same_as_the_parser(tds)

    assert filled == len(tds) == 63


def test_a_fleet_is_parsed_once_per_shape() -> None:
    kinds = [dict(ram=32_768 * (k + 1), flash=262_144, runtimes=("c99", "tflite-micro")[: 1 + k % 2]) for k in range(5)]
    fleet = [make_td(f"fleet-{i:04d}", **kinds[i % 5], title=f"sensor #{i}", description=f"row {i // 40}")
             for i in range(400)]

    filled, parsed = _same_as_the_parser(fleet)

    assert filled == 400
    assert parsed <= 2 * 5  # each kind: its skeleton, then with the values that shape it (the security scheme)


TRICKY = {
    # an id JSON-LD reads as a compact IRI (td: is a term of the TD context)
    "compact id": make_td("x", 1, 1, id="td:sensor-1"),
    "eb compact id": make_td("x", 1, 1, id="eb:sensor-2"),
    # a relative and an absolute IRI where the TD context types values @id (support)
    "relative support": make_td("x", 1, 1, support="help/desk"),
    "absolute support": make_td("x", 1, 1, support="mailto:ops@example.org"),
    # values a placeholder could be taken for
    "leaf-like title": make_td("x", 1, 1, title="urn:x-edgebert-leaf:0"),
    "int-like title": make_td("x", 1, 1, title="900000000000000000"),
    "placeholder integer": make_td("x", 900_000_000_000_000_001, 1),
    "big integer": make_td("x", 10**20, 1),
    # floats, booleans, negative integers, text with quotes and newlines, other scripts
    "numbers": make_td("x", 1, 1, properties={"t": {"type": "number", "minimum": -40, "maximum": 125.5,
                                                    "readOnly": True, "forms": [{"href": "http://h/t"}]}}),
    "text": make_td("x", 1, 1, title='say "hi"\nthen ¿qué? 温度', description="\\u0000 not an escape"),
    # a type-scoped context: the security scheme's own terms (in, name) change with its value
    "apikey": make_td("x", 1, 1, securityDefinitions={"k": {"scheme": "apikey", "in": "header", "name": "X-Key"}},
                      security="k"),
    "bearer": make_td("x", 1, 1, securityDefinitions={"b": {"scheme": "bearer", "format": "jwt", "alg": "ES256",
                                                            "authorization": "https://auth.example/token"}},
                      security="b"),
    # the TD's own context: a default language, a prefix, a semantic type
    "own context": {**make_td("x", 1, 1), "@context": ["https://www.w3.org/2022/wot/td/v1.1",
                                                       {"saref": "https://saref.etsi.org/core/", "@language": "de"}],
                    "@type": ["saref:Sensor"], "saref:hasModel": "SR-1"},
    # an integer a context types as a double: JSON-LD writes it anew (5 -> "5.0E0")
    "typed number": {**make_td("x", 1, 1), "@context": ["https://www.w3.org/2022/wot/td/v1.1", {
        "ex": "http://example.org/", "xsd": "http://www.w3.org/2001/XMLSchema#",
        "reading": {"@id": "ex:reading", "@type": "xsd:double"}}], "reading": 5},
    "multilanguage": make_td("x", 1, 1, titles={"en": "Lamp", "de": "Lampe"}, descriptions={"ar": "مصباح"}),
    "links": make_td("x", 1, 1, links=[{"rel": "type", "href": "https://example.org/tm", "type": "application/tm+json"},
                                       {"href": "relative/manual.pdf"}]),
    "events and actions": make_td("x", 1, 1, events={"alarm": {"data": {"type": "string"},
                                                               "forms": [{"href": "mqtt://b/alarm", "op": "subscribeevent"}]}},
                                  actions={"reset": {"safe": False, "idempotent": True, "forms": [{"href": "coap://h/r"}]}}),
}


@pytest.mark.parametrize("name", TRICKY)
def test_a_td_made_to_trip_a_template_gets_the_parsers_quads(name: str) -> None:
    td = TRICKY[name]
    twin = {**td, "id": td["id"] + "-twin", "title": td.get("title", "") + " twin"}  # same shape, other values
    _same_as_the_parser([td, twin])


def test_key_order_does_not_change_which_value_goes_where() -> None:
    td = make_td("a", 1_000, 2_000, description="first")
    reordered = dict(reversed(list(make_td("b", 3_000, 4_000, description="second").items())))

    _same_as_the_parser([td, reordered])


def test_a_value_a_placeholder_could_be_taken_for_goes_to_the_parser() -> None:
    cache = td_templates.TemplateCache()
    for td in (TRICKY["leaf-like title"], TRICKY["int-like title"], TRICKY["placeholder integer"],
               {**make_td("x", 1, 1), "@type": "urn:x-edgebert-leaf:3"}):
        node = {k: v for k, v in td.items() if k != "@context"}
        assert cache.quads(node, describe._offline_context(td), "k", ox.NamedNode("urn:g")) is None
