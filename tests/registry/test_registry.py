"""Registry behaviour on the embedded Oxigraph store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgebert.errors import ArtifactError, DescriptionError, InputError, QueryError, StoreError
from registry import queries
from registry.describe import validate_td_json
from registry.registry import open_registry
from registry.vocab import PREFIXES

from .conftest import SELOC, make_td


def test_seloc_ml_examples_import_as_is_and_the_arduino_gets_the_models_it_can_hold(reg) -> None:
    reg.import_file(SELOC / "example_tflite_models.ttl")
    [arduino] = reg.add_device_file(SELOC / "example_arduino_nano_ble_33_td.ttl")

    matches = reg.match(arduino)
    needs = reg.query("""PREFIX eb: <https://w3id.org/edgebert/ns#> PREFIX schema: <https://schema.org/>
        SELECT ?id ?r ?f WHERE { ?a eb:requiresRamBytes ?r ; eb:requiresFlashBytes ?f ; schema:identifier ?id }""")

    fitting = {n["id"] for n in needs if n["r"] <= 172_000 and n["f"] <= 628_000}  # 172 kB RAM, 628 kB flash
    assert {m.id for m in matches} == fitting
    assert len(fitting) == 22 and len(needs) == 23  # one model needs 207 kB of RAM
    assert all(m.runtime == "tflite-micro" for m in matches)


def test_match_ranks_by_fidelity_then_size_and_filters_memory_precision_and_ops(reg, artifact_factory) -> None:
    reg.add_tds([make_td("pi", ram=4_000, flash=4_000, precisions=("int8",))])
    for name, kw in {"best": dict(fidelity=0.999, size=900), "small": dict(fidelity=0.99, size=100),
                     "big": dict(fidelity=0.99, size=800), "too-much-ram": dict(ram=5_000, fidelity=1.0),
                     "fp32-only": dict(precision="fp32", fidelity=1.0),
                     "odd-op": dict(ops=("MatMul", "NoSuchOp"), fidelity=1.0)}.items():
        reg.add_artifact(artifact_factory(name, **kw))

    ids = [m.id for m in reg.match("pi")]

    assert ids == ["best", "small", "big"]


def test_devices_for_an_artifact(reg, artifact_factory) -> None:
    reg.add_tds([make_td("a", 10_000, 10_000), make_td("b", 500, 10_000), make_td("c", 10_000, 10_000,
                                                                                 runtimes=("tflite-micro",))])
    reg.add_artifact(artifact_factory("art", ram=1_000, flash=1_000))

    assert [r["id"] for r in reg.devices_for("art")] == ["a"]


def test_deployments_outdated_and_lineage(reg, artifact_factory) -> None:
    reg.add_tds([make_td("d1", 10_000, 10_000), make_td("d2", 10_000, 10_000), make_td("tiny", 1_500, 10_000)])
    reg.add_artifact(artifact_factory("v1", ram=1_000, created="2026-01-01T00:00:00+00:00"))
    reg.add_artifact(artifact_factory("v2", ram=2_000, created="2026-02-01T00:00:00+00:00"))
    reg.add_artifact(artifact_factory("other", family="digits", created="2026-03-01T00:00:00+00:00",
                                      weights_sha="b" * 64))
    for device in ("d1", "tiny"):
        reg.record_deployment(device, "v1")
    reg.record_deployment("d2", "v1")
    reg.record_deployment("d2", "v2")  # supersedes v1 on d2

    outdated = {r["device"]: r["newer"] for r in reg.outdated()}
    d2 = reg.deployments("d2")

    assert outdated == {"urn:dev:d1": "urn:edgebert:artifact:v2"}  # tiny cannot hold v2; d2 already has it
    assert [(r["artifact"].rsplit(":", 1)[-1], r["status"]) for r in d2] == [("v2", "active"), ("v1", "superseded")]
    assert d2[0]["previous"] == "urn:edgebert:artifact:v1"
    lineage = reg.lineage("v2")
    assert [r["depth"] for r in lineage] == [0, 1] and lineage[1]["name"] == "minilm"


def test_real_converted_artifact_registers_with_its_ops_and_memory(reg, tiny_artifact) -> None:
    reg.add_tds([make_td("gw", 64_000_000, 64_000_000), make_td("m4", 256_000, 1_000_000, runtimes=("tflite-micro",))])

    iri = reg.add_artifact(tiny_artifact.path)

    assert [r["id"] for r in reg.devices_for(iri)] == ["gw"]
    ops = reg.query(f"SELECT ?op WHERE {{ <{iri}> <https://w3id.org/edgebert/ns#usesOp> ?op }}")
    assert "com.microsoft.MatMulIntegerToFloat" in {r["op"] for r in ops}


@pytest.mark.parametrize("change, match", [
    (lambda td: td.pop("title"), "'title' is a required property"),
    (lambda td: td.update({"eb:ramBytes": "64 kB"}), "eb:ramBytes' a positive integer"),
    (lambda td: td.update({"eb:flashBytes": -1}), "eb:flashBytes' a positive integer"),
    (lambda td: td.update({"security": "basic_sc"}), "securityDefinitions"),
    (lambda td: td.update({"eb:supportsPrecision": [{"@id": "eb:int4"}]}), "supportsPrecision among"),
    (lambda td: td.update({"properties": {"t": {"forms": "not-a-list"}}}), "properties/t/forms"),
])
def test_invalid_tds_are_refused_and_the_store_is_unchanged(reg, change, match: str) -> None:
    reg.add_tds([make_td("ok", 1000, 1000)])
    before = reg.store.count()
    td = make_td("bad", 1000, 1000)
    change(td)

    with pytest.raises(DescriptionError, match=match):
        reg.add_tds([make_td("fine", 1000, 1000), td])  # one bad TD: nothing of the batch lands

    assert reg.store.count() == before


def test_manifest_with_a_wrong_sha256_is_refused(reg, artifact_factory) -> None:
    path = artifact_factory("tampered")
    (path / "model.onnx").write_bytes(b"y" * 500)
    before = reg.store.count()

    with pytest.raises(ArtifactError, match="sha256"):
        reg.add_artifact(path)
    assert reg.store.count() == before


def test_malformed_sparql_and_unknown_things(reg) -> None:
    with pytest.raises(QueryError, match="malformed SPARQL"):
        reg.query("SELEC ?x WHERE {}")
    with pytest.raises(InputError, match="nosuch: expected a device or artifact"):
        reg.match("nosuch")


def test_exported_td_passes_the_official_schema_for_an_imported_turtle_device(reg) -> None:
    [arduino] = reg.add_device_file(SELOC / "example_arduino_nano_ble_33_td.ttl")

    td = reg.get_td(arduino)

    validate_td_json(td)  # raises if invalid
    assert td["eb:ramBytes"] == 172_000 and "accelerometer" in td["eb:sensor"] and "Temperature" in td["properties"]


@pytest.mark.parametrize("suffix", [".nq", ".trig"])
def test_dump_restore_round_trip_and_persistence(tmp_path: Path, suffix: str) -> None:
    store_dir = tmp_path / "store"
    reg = open_registry(str(store_dir))
    reg.add_tds([make_td("keep", 1000, 2000)])
    reg.dump(tmp_path / f"dump{suffix}")
    reg.add_tds([make_td("later", 1000, 2000)])
    (tmp_path / "bad.nq").write_text("this is not n-quads\n")

    with pytest.raises(StoreError, match="syntax error"):
        reg.restore(tmp_path / "bad.nq")
    assert reg.count_devices() == 2  # a bad dump does not clear the store
    reg.restore(tmp_path / f"dump{suffix}")
    assert reg.list_devices() == ["urn:dev:keep"]
    del reg
    assert open_registry(str(store_dir)).list_devices() == ["urn:dev:keep"]


def test_td_with_a_remote_context_is_refused_offline(reg) -> None:
    td = make_td("x", 1, 1)
    td["@context"] = ["https://www.w3.org/2022/wot/td/v1.1", "https://example.org/context.jsonld"]

    with pytest.raises(DescriptionError, match="remote context"):
        reg.add_tds([td], validate=False)


def test_td_json_file_round_trips(reg, tmp_path: Path) -> None:
    path = tmp_path / "devices.json"
    path.write_text(json.dumps([make_td("f1", 10, 10), make_td("f2", 10, 10)]))

    assert reg.add_device_file(path) == ["urn:dev:f1", "urn:dev:f2"]
    assert reg.get_td("f1")["id"] == "urn:dev:f1"


def test_rdflib_api_sees_the_same_store(reg) -> None:
    reg.add_tds([make_td("via-rdflib", 1234, 5678)])

    ds = reg.rdflib_dataset()
    rows = list(ds.query("SELECT ?ram WHERE { <urn:dev:via-rdflib> <https://w3id.org/edgebert/ns#ramBytes> ?ram }"))

    assert [int(r[0]) for r in rows] == [1234]


def test_bulk_deployments_supersede_previous_ones(reg, artifact_factory) -> None:
    reg.add_tds([make_td("b1", 10_000, 10_000), make_td("b2", 10_000, 10_000)])
    a1 = reg.add_artifact(artifact_factory("a1"))
    a2 = reg.add_artifact(artifact_factory("a2"))

    reg.record_deployments([("urn:dev:b1", a1), ("urn:dev:b2", a1)])
    reg.record_deployments([("urn:dev:b1", a2)])

    active = {(r["device"], r["artifact"]) for r in reg.deployments() if r["status"] == "active"}
    assert active == {("urn:dev:b1", a2), ("urn:dev:b2", a1)}


@pytest.mark.parametrize("ref", ["urn:dev:x> } ; DROP ALL ; <a:b", 'urn:dev:"x"', "x y"])
def test_refs_that_are_not_iris_cannot_reach_the_sparql_text(reg, ref: str) -> None:
    reg.add_tds([make_td("safe", 1000, 1000)])

    with pytest.raises(InputError, match="expected a device or artifact"):
        reg.match(ref)
    assert reg.list_devices() == ["urn:dev:safe"]


def test_outdated_agrees_with_match(reg, artifact_factory) -> None:
    reg.add_tds([make_td("small", 3_000, 3_000, precisions=("int8",)), make_td("large", 10**6, 10**6),
                 make_td("mcu", 10**6, 10**6, runtimes=("tflite-micro",))])
    specs = [("v1", 1_000, "int8", ("MatMul",)), ("v2", 2_000, "int8", ("MatMul",)),
             ("v3", 5_000, "int8", ("MatMul",)), ("v4", 1_000, "fp32", ("MatMul",)),
             ("v5", 1_000, "int8", ("NoSuchOp",))]
    for month, (name, ram, precision, ops) in enumerate(specs, start=1):
        reg.add_artifact(artifact_factory(name, ram=ram, precision=precision, ops=ops,
                                          created=f"2026-0{month}-01T00:00:00+00:00"))
    reg.record_deployments([("urn:dev:small", "urn:edgebert:artifact:v1"),
                            ("urn:dev:large", "urn:edgebert:artifact:v1")])

    newest = {r["device"]: r["newer"].rsplit(":", 1)[-1] for r in reg.outdated()}

    assert newest == {"urn:dev:small": "v2", "urn:dev:large": "v4"}  # v5's op runs nowhere; v3 too big for small
    for device, name in newest.items():
        assert name in {m.id for m in reg.match(device)}


def test_match_prefers_artifacts_whose_memory_was_measured(reg, artifact_factory) -> None:
    """A firmware export's flash/RAM were measured on a build (eb:memoryMeasured): it ranks before an
    estimated artifact even when the estimated one claims a better fidelity."""
    import json

    from tests.registry.conftest import make_td

    estimated = artifact_factory("estimated", family="digits", fidelity=0.999)
    measured = artifact_factory("measured", family="digits", fidelity=0.95, created="2026-01-02T00:00:00+00:00")
    manifest = json.loads((measured / "manifest.json").read_text())
    manifest["memory"]["measured"] = True
    (measured / "manifest.json").write_text(json.dumps(manifest))
    for path in (estimated, measured):
        reg.add_artifact(path)
    reg.add_tds([make_td("both", 10**6, 10**7)])
    assert [m.id for m in reg.match("urn:dev:both")] == ["measured", "estimated"]
    ask = reg.store.query("PREFIX eb: <https://w3id.org/edgebert/ns#> SELECT ?a WHERE { ?a eb:memoryMeasured true }")
    assert len(ask) == 1


def test_a_td_with_an_event_and_its_data_schema_passes_the_official_shapes(reg) -> None:
    # the TD shapes before upstream's 2024-02-02 fix wanted a data schema's rdf:type as a string
    # literal, so every TD with a typed event (W3C's own examples) was refused
    td = make_td("ev", 1000, 1000)
    td["events"] = {"overheating": {"data": {"type": "string"}, "forms": [{"href": "https://dev.example/oh"}]}}
    td["properties"] = {"temperature": {"type": "number", "readOnly": True, "forms": [{"href": "https://dev.example/t"}]}}

    assert reg.add_tds([td]) == ["urn:dev:ev"]
    assert reg.get_td("ev")["events"]["overheating"]["data"]["type"] == "string"


def test_the_vendored_w3c_files_are_the_ones_sources_names() -> None:
    import hashlib

    from registry.vocab import data_path

    rows = [line.split() for line in data_path("SOURCES").read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.startswith("#")]
    assert {r[0] for r in rows} == {"td-validation.ttl", "td-json-schema-validation.json", "td-context-1.1.jsonld"}
    for name, _path, commit, _date, sha in rows:
        assert len(commit) == 40
        assert hashlib.sha256(data_path(name).read_bytes()).hexdigest() == sha, name


def test_a_td_without_the_toolkits_capabilities_is_stored_and_cannot_be_matched(reg, artifact_factory) -> None:
    # a plain TD 1.1 (the W3C's examples have no eb: fields): a directory accepts it; matching says why not
    td = make_td("plain", 1000, 1000)
    for key in ("eb:ramBytes", "eb:flashBytes", "eb:supportsRuntime", "eb:supportsPrecision"):
        td.pop(key)
    partial = make_td("partial", 10_000, 10_000)
    partial.pop("eb:supportsPrecision")
    reg.add_tds([td, partial, make_td("full", 10_000, 10_000)])
    reg.add_artifact(artifact_factory("art", ram=1_000, flash=1_000))

    assert reg.list_devices() == ["urn:dev:full", "urn:dev:partial", "urn:dev:plain"]
    assert reg.get_td("plain")["title"] == "plain"
    assert reg.match("plain") == [] and reg.match("partial") == [] and [m.id for m in reg.match("full")] == ["art"]
    assert reg.unknown_capabilities("plain") == ["eb:ramBytes", "eb:flashBytes", "eb:supportsRuntime",
                                                 "eb:supportsPrecision"]
    assert reg.unknown_capabilities("partial") == ["eb:supportsPrecision"] and reg.unknown_capabilities("full") == []
    assert [r["id"] for r in reg.devices_for("art")] == ["full"]
    assert [r["device"] for r in reg.unmatchable_devices()] == ["urn:dev:partial", "urn:dev:plain"]


def test_a_td_with_a_base_direction_is_validated_not_refused_by_the_parser(reg) -> None:
    # "@direction" (TD 1.1 for right-to-left text) makes RDF 1.2 literals ("..."@ar--rtl), which the
    # SHACL engine's N-Triples parser refused as a syntax error
    td = make_td("rtl", 1000, 1000)
    td["@context"] = ["https://www.w3.org/2022/wot/td/v1.1", {"@language": "ar", "@direction": "rtl"}]
    td["properties"]["temperature"]["title"] = "درجة الحرارة"

    assert reg.add_tds([td]) == ["urn:dev:rtl"]
    assert reg.get_td("rtl")["properties"]["temperature"]["title"] == "درجة الحرارة"


def test_an_exported_td_declares_eb_and_means_the_same_rdf_to_any_json_ld_processor(reg) -> None:
    import pyoxigraph as ox

    from registry.vocab import EB, td_context

    td = make_td("ctx", 1000, 2000)  # uses eb: terms without declaring the prefix, as users write them
    assert not any(isinstance(c, dict) for c in td["@context"])
    reg.add_tds([td])
    exported = reg.get_td("ctx")

    assert {"eb": EB} in exported["@context"]
    offline = {**exported, "@context": [td_context() if c == exported["@context"][0] else c
                                       for c in exported["@context"]]}
    triples = {(str(q.predicate), str(q.object)) for q in ox.parse(json.dumps(offline), format=ox.RdfFormat.JSON_LD)
               if str(q.subject) == "<urn:dev:ctx>"}
    assert (f"<{EB}ramBytes>", '"1000"^^<http://www.w3.org/2001/XMLSchema#integer>') in triples
    assert (f"<{EB}supportsRuntime>", f"<{EB}onnxruntime>") in triples
    reg.add_tds([exported])  # and it imports again as is
    assert reg.get_td("ctx") == exported


def test_a_td_faulty_in_thousands_of_places_lists_at_most_twenty() -> None:
    from registry.describe import MAX_VALIDATION_ERRORS

    td = make_td("many", 10, 10)
    td["properties"] = {f"p{i}": {"type": "number", "forms": "not-a-list"} for i in range(2000)}

    with pytest.raises(DescriptionError) as refused:
        validate_td_json(td)

    assert len(refused.value.fields) == MAX_VALIDATION_ERRORS == 20
    assert all(field.startswith("properties/p") for field, _ in refused.value.fields)


def test_two_step_match_answers_as_the_single_match_query(reg, artifact_factory) -> None:
    """``match`` asks for candidates, then their facts (no scan of the fleet's identifiers): the same
    rows in the same order as ``queries.MATCH`` in one query."""
    import random

    from registry import queries

    rng = random.Random(7)
    reg.import_file(SELOC / "example_tflite_models.ttl")
    for i in range(25):
        reg.add_artifact(artifact_factory(f"a{i}", family=f"f{i % 4}", ram=rng.randint(100, 5000),
                                          flash=rng.randint(100, 5000), fidelity=rng.choice([0.9, 0.95, 0.99]),
                                          size=rng.randint(10, 900), created=f"2026-0{1 + i % 9}-01T00:00:00+00:00"))
    devices = [make_td(f"m{i}", rng.randint(500, 6000), rng.randint(500, 6000)) for i in range(8)]
    reg.add_tds(devices)
    [arduino] = reg.add_device_file(SELOC / "example_arduino_nano_ble_33_td.ttl")
    for device in [d["id"] for d in devices] + [arduino]:
        single = reg.query(queries.MATCH % {"device": device})
        two_step = reg.match(device)
        assert [m.artifact for m in two_step] == [r["artifact"] for r in single], device
        assert [(m.id, m.size_bytes, m.fidelity) for m in two_step] == [(r["id"], r["size"], r["fidelity"]) for r in single]
    assert sum(len(reg.match(d["id"])) for d in devices) > 20  # the comparison compared something


def test_the_artifact_table_behind_match_follows_every_write(reg, artifact_factory) -> None:
    """``match`` answers from an in-memory table of the artifacts: a write of devices keeps it, any
    write that can change an artifact (a new artifact, a SPARQL update) has it read again."""
    reg.add_tds([make_td("pi", ram=4_000, flash=4_000)])
    reg.add_artifact(artifact_factory("small", ram=100, flash=100))
    assert [m.id for m in reg.match("urn:dev:pi")] == ["small"]
    table = reg._table

    reg.add_tds([make_td("pi2", ram=4_000, flash=4_000)])  # devices only: the same table
    assert [m.id for m in reg.match("urn:dev:pi2")] == ["small"] and reg._table is table

    reg.add_artifact(artifact_factory("big", ram=3_000, flash=3_000, fidelity=0.999))
    assert [m.id for m in reg.match("urn:dev:pi")] == ["big", "small"] and reg._table is not table

    big = next(m.artifact for m in reg.match("urn:dev:pi") if m.id == "big")
    reg.store.update(PREFIXES + f"INSERT DATA {{ <{big}> eb:usesOp eb:NoRuntimeHasThisOp }}")  # an admin update
    assert [m.id for m in reg.match("urn:dev:pi")] == ["small"]
    assert [r["id"] for r in reg.query(queries.MATCH % {"device": "urn:dev:pi"})] == ["small"]

    reg.add_tds([{**make_td("sneaky", ram=4_000, flash=4_000), "eb:requiresRamBytes": 1,
                  "eb:requiresFlashBytes": 1, "eb:runtime": {"@id": "eb:onnxruntime"}}])
    table = reg._table
    reg.match("urn:dev:pi")  # a TD that states artifact facts is read into the table like the SPARQL reads it
    assert reg._table is not table and "urn:dev:sneaky" in reg._table.artifacts


def test_bulk_ingest_writes_whole_chunks_and_says_how_far_it_got(reg) -> None:
    fleet = [make_td(f"b{i:03d}", 1000, 1000) for i in range(250)]
    assert reg.bulk_add_tds(fleet, chunk=100) == [td["id"] for td in fleet]
    assert reg.count_devices() == 250 and reg.get_td("urn:dev:b249")["title"] == "b249"
    assert len(reg.match("urn:dev:b000")) == 0 and reg.registrations(["urn:dev:b007"])  # registered like add_tds

    broken = [make_td(f"c{i:03d}", 1000, 1000) for i in range(250)]
    broken[120] = {k: v for k, v in broken[120].items() if k != "security"}  # not a TD
    with pytest.raises(DescriptionError):
        reg.bulk_add_tds(broken, chunk=100)
    assert reg.count_devices() == 250  # checked before anything was written

    with pytest.raises(DescriptionError, match="each id once"):
        reg.bulk_add_tds([make_td("d1", 1, 1), make_td("d1", 2, 2)])

    bad_runtime = [make_td(f"e{i:03d}", 1000, 1000) for i in range(250)]
    bad_runtime[160] = make_td("e160", 1000, 1000, runtimes=("cobol",))  # a valid TD the device checks refuse
    with pytest.raises(DescriptionError, match=r"in TDs 101-200; the 100 before them are written"):
        reg.bulk_add_tds(bad_runtime, chunk=100)
    assert reg.count_devices() == 350  # the first chunk, whole; nothing of the second


def test_a_bulk_import_on_disk_goes_in_as_table_files_and_survives_reopening(tmp_path, monkeypatch) -> None:
    from registry import store as store_module

    bulk_calls: list[int] = []
    monkeypatch.setattr(store_module, "BULK_QUADS", 500)  # a chunk of 100 TDs is about 2,400 quads
    monkeypatch.setattr(store_module.OxigraphStore, "_bulk_extend",
                        lambda self, quads: (bulk_calls.append(len(quads)), self._store.bulk_extend(quads)),
                        raising=False)
    reg = open_registry(str(tmp_path / "store"))
    fleet = [make_td(f"f{i:03d}", 1000, 1000) for i in range(250)]
    reg.bulk_add_tds(fleet, chunk=100)
    reg.add_tds([make_td("one", 1000, 1000)])  # a small write: one extend
    reg.add_tds([make_td("f001", 2000, 2000)])  # a replacement: one SPARQL update
    reg.close()

    again = open_registry(str(tmp_path / "store"))
    assert len(bulk_calls) == 3 and all(n >= 500 for n in bulk_calls)
    assert again.count_devices() == 251
    assert again.get_td("urn:dev:f249")["title"] == "f249" and again.get_td("urn:dev:f001")["eb:ramBytes"] == 2000
    assert again.query(PREFIXES + "SELECT (COUNT(*) AS ?n) WHERE { GRAPH <urn:edgebert:graph:urn:dev:f001> "
                                  "{ <urn:dev:f001> eb:ramBytes ?r } }")[0]["n"] == 1  # replaced, not added to


def test_registration_stores_date_modified_only_once_the_td_changed(reg) -> None:
    disc = "https://www.w3.org/2021/wot/discovery#"
    reg.add_tds([make_td("m1", 1000, 1000)])
    first = reg.registrations(["urn:dev:m1"])["urn:dev:m1"]
    stored = PREFIXES + f"SELECT ?p WHERE {{ <urn:dev:m1> <{disc}hasRegistrationInformation> ?r . ?r ?p ?o }}"
    assert {r["p"] for r in reg.query(stored)} == {disc + "dateCreated"}
    assert first.modified == first.created
    version = reg.collection_version()

    reg.add_tds([make_td("m1", 2000, 2000)])
    second = reg.registrations(["urn:dev:m1"])["urn:dev:m1"]
    assert {r["p"] for r in reg.query(stored)} == {disc + "dateCreated", disc + "dateModified"}
    assert second.created == first.created and second.modified > first.created
    assert reg.collection_version() != version


def test_table_files_a_crash_left_behind_are_removed_when_the_store_opens(tmp_path) -> None:
    reg = open_registry(str(tmp_path / "store"))
    reg.add_tds([make_td("kept", 1000, 1000)])
    reg.close()
    leftover = tmp_path / "store" / "bulk-123456789.sst"
    leftover.write_bytes(b"half a table file")  # a bulk write killed before RocksDB ingested its files

    again = open_registry(str(tmp_path / "store"))
    assert not leftover.exists() and again.count_devices() == 1


def test_a_bulk_import_killed_midway_leaves_whole_chunks_and_no_stray_files(tmp_path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    store = tmp_path / "store"
    script = f"""
import sys
sys.path.insert(0, {str(Path(__file__).parent.parent.parent)!r})
from registry import store
from registry.registry import open_registry
from tests.registry.conftest import make_td
store.BULK_QUADS = 50  # every chunk of 20 TDs goes in as table files
reg = open_registry({str(store)!r})
print("open", flush=True)
reg.bulk_add_tds([make_td(f"k{{i:05d}}", 1000, 1000) for i in range(20_000)], chunk=20)
"""
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "open"
    deadline = time.monotonic() + 60
    while sum(f.stat().st_size for f in store.rglob("*") if f.is_file()) < 3_000_000 and time.monotonic() < deadline:
        time.sleep(0.05)  # until chunks are being written (validation of all 20,000 TDs comes first)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)

    reg = open_registry(str(store))
    written = reg.count_devices()
    assert 0 < written < 20_000 and written % 20 == 0  # killed mid-import: whole chunks only
    assert not list(store.glob("bulk-*.sst"))
    last = reg.list_devices(offset=written - 1, limit=1)[0]
    assert reg.get_td(last)["eb:ramBytes"] == 1000  # its graph whole
