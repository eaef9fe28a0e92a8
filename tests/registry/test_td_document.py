"""The stored copy of a TD (``registry/td_document.py``): deflated, read back exactly, and refused
when it is corrupt or would inflate without bound."""

from __future__ import annotations

import base64
import json
import random
import zlib
from pathlib import Path

import pyoxigraph as ox
import pytest

from edgebert.errors import DescriptionError
from registry import td_document
from registry.describe import graph_for
from registry.registry import open_registry
from registry.vocab import EB, RDF

from .conftest import make_td

TDS = Path(__file__).parent / "data" / "tds"
VALID = sorted((TDS / "spec").glob("*.json")) + sorted((TDS / "valid").glob("*.json"))


def _stored(reg, thing: str) -> ox.Literal:
    [quad] = reg.store._store.quads_for_pattern(ox.NamedNode(thing), ox.NamedNode(EB + "tdDocument"), None,
                                                 ox.NamedNode(graph_for(thing)))
    return quad.object


@pytest.mark.parametrize("path", VALID, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_valid_corpus_td_comes_back_as_it_was_and_shorter(path: Path) -> None:
    td = json.loads(path.read_text(encoding="utf-8"))
    value, datatype = td_document.encode(td)

    assert td_document.decode(value, datatype) == td
    assert datatype == td_document.DEFLATED_DATATYPE and len(value) < len(td_document.canonical(td))


def test_a_device_td_is_stored_deflated_to_under_a_third_and_read_back_exactly() -> None:
    reg = open_registry("memory")
    td = make_td("sensor-17", 262_144, 1_048_576, runtimes=("tflite-micro", "c99"), precisions=("int8", "binary"),
                 **{"eb:cpuArchitecture": "cortex-m4", "description": "greenhouse 3, north wall"})
    reg.add_tds([td])

    literal = _stored(reg, td["id"])
    assert literal.datatype == ox.NamedNode(td_document.DEFLATED_DATATYPE)
    assert len(literal.value) < len(td_document.canonical(td)) / 3
    assert {k: v for k, v in reg.get_td(td["id"]).items() if k != "@context"} == \
        {k: v for k, v in td.items() if k != "@context"}
    assert reg.get_tds([td["id"]])[td["id"]] == reg.get_td(td["id"])


def test_a_td_that_deflating_does_not_shorten_is_kept_as_json() -> None:
    noise = base64.b85encode(random.Random(0).randbytes(600)).decode()  # no repeats for DEFLATE to find
    td = {"id": "urn:x:z", "title": noise}

    value, datatype = td_document.encode(td)

    assert datatype == td_document.JSON_DATATYPE and value == td_document.canonical(td)
    assert td_document.decode(value, datatype) == td


def test_a_store_written_before_holds_plain_json_and_still_reads() -> None:
    reg = open_registry("memory")
    td = make_td("old", 1_000, 1_000)
    reg.add_tds([td])
    s, g = ox.NamedNode(td["id"]), ox.NamedNode(graph_for(td["id"]))
    reg.store._store.remove(ox.Quad(s, ox.NamedNode(EB + "tdDocument"), _stored(reg, td["id"]), g))
    reg.store._store.add(ox.Quad(s, ox.NamedNode(EB + "tdDocument"),
                                 ox.Literal(json.dumps({**td, "title": "as stored before"}, sort_keys=True),
                                            datatype=ox.NamedNode(RDF + "JSON")), g))

    assert reg.get_td(td["id"])["title"] == "as stored before"
    assert reg.get_tds([td["id"]])[td["id"]]["title"] == "as stored before"


def _deflated(raw: bytes) -> str:
    packer = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, zdict=td_document.DICTIONARY_1)
    return base64.b85encode(packer.compress(raw) + packer.flush()).decode()


@pytest.mark.parametrize(("value", "datatype", "says"), [
    ("not base85 ~~~ \x7f", td_document.DEFLATED_DATATYPE, "does not inflate"),
    (base64.b85encode(b"\xff\x00 not deflate").decode(), td_document.DEFLATED_DATATYPE, "does not inflate"),
    (_deflated(b'{"id": "urn:x"}')[:-5], td_document.DEFLATED_DATATYPE, "does not inflate"),
    (_deflated(b"[1, 2]"), td_document.DEFLATED_DATATYPE, "expected a JSON object"),
    (_deflated(b"\xff\xfe"), td_document.DEFLATED_DATATYPE, "does not inflate"),
    ('{"id": ', td_document.JSON_DATATYPE, "expected JSON"),
    ('{"id": "urn:x"}', "http://www.w3.org/2001/XMLSchema#string", "expected a literal of rdf:JSON"),
])
def test_a_corrupt_stored_td_is_one_clear_error(value: str, datatype: str, says: str) -> None:
    with pytest.raises(DescriptionError, match=says):
        td_document.decode(value, datatype)


def test_a_deflate_bomb_is_refused_without_inflating_it() -> None:
    bomb = _deflated(b'{"title": "' + b"a" * (td_document.MAX_DOCUMENT_BYTES + 1) + b'"}')
    assert len(bomb) < 100_000  # 16 MiB of one letter deflates to a few tens of kB

    with pytest.raises(DescriptionError, match="larger than 16 MiB"):
        td_document.decode(bomb, td_document.DEFLATED_DATATYPE)
