"""Description builders: WoT Thing Descriptions, artifact manifests and S3N files -> RDF quads.

Pure translation, no store: each builder returns pyoxigraph quads in the thing's own named
graph (``graph_for``), so that replacing or deleting a thing replaces or drops its graph.
"""

from __future__ import annotations

import hashlib
import json
from functools import cache
from pathlib import Path
from typing import Any

import pyoxigraph as ox

from edgebert.artifact import Artifact
from edgebert.errors import DescriptionError
from registry import td_document, td_rules, td_templates
from registry.vocab import (
    DCAT,
    EB,
    PROV,
    RDF,
    RDFS,
    SCHEMA,
    TD,
    TD_CONTEXT_URLS,
    datetime_lit,
    iri,
    is_iri,
    lit,
    td_context,
    td_schema,
)


def graph_for(thing_iri: str) -> str:
    return f"urn:edgebert:graph:{thing_iri}"


def artifact_iri(artifact_id: str) -> str:
    return f"urn:edgebert:artifact:{artifact_id}"


def model_iri(sha256: str) -> str:
    return f"urn:edgebert:model:{sha256}"


@cache
def _td_validator() -> Any:
    import jsonschema

    schema = td_schema()
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


@cache
def _td_fast_validator() -> Any:
    """The same schema compiled to Python by fastjsonschema (13x faster on fleet TDs): it answers
    for a valid TD; a TD it refuses goes to jsonschema, which lists every fault and has the last word."""
    import fastjsonschema

    return fastjsonschema.compile(td_schema())


MAX_VALIDATION_ERRORS = 20  # listed in a refusal; a hostile TD could otherwise fail in thousands of places


def validate_td_json(td: Any, where: str = "TD") -> None:
    """Validate against the official TD 1.1 JSON Schema; the message names the offending field."""
    if not isinstance(td, dict):
        raise DescriptionError(f"{where}: expected a JSON object (a Thing Description), found {type(td).__name__}")
    import fastjsonschema

    try:
        _td_fast_validator()(td)
        errors = []
    except fastjsonschema.JsonSchemaException:
        errors = sorted(_td_validator().iter_errors(td), key=lambda e: (len(e.absolute_path), str(e.absolute_path)))
    if errors:
        err = min(errors, key=lambda e: len(e.absolute_path))
        field = "/".join(str(p) for p in err.absolute_path) or "(top level)"
        fields = tuple(("/".join(str(p) for p in e.absolute_path) or "(top level)", e.message[:200])
                       for e in errors[:MAX_VALIDATION_ERRORS])
        raise DescriptionError(f"{where}: invalid Thing Description at '{field}': {err.message[:200]}", fields)
    broken = td_rules.faults(td)
    if broken:
        field, description = broken[0]
        raise DescriptionError(f"{where}: invalid Thing Description at '{field}': {description}",
                               tuple(broken[:MAX_VALIDATION_ERRORS]))
    if "id" not in td:
        raise DescriptionError(f"{where}: expected an 'id' (the device's URI), found none")
    if not isinstance(td["id"], str) or not is_iri(td["id"]):
        raise DescriptionError(f"{where}: expected 'id' an absolute IRI, found {td['id']!r}")
    for key in ("eb:ramBytes", "eb:flashBytes"):  # optional: a device without them is stored, not matched
        if key in td and (not isinstance(td[key], int) or isinstance(td[key], bool) or td[key] <= 0):
            raise DescriptionError(f"{where}: expected '{key}' a positive integer of bytes, found {td[key]!r}")


def _offline_context(td: dict) -> Any:
    """The TD's @context with the TD context URL replaced by the vendored context (no network)."""
    ctx = td.get("@context")
    items = ctx if isinstance(ctx, list) else [ctx]
    out: list[Any] = []
    for item in items:
        if isinstance(item, str):
            if item not in TD_CONTEXT_URLS:
                raise DescriptionError(f"TD {td.get('id')}: expected only the TD context URL or inline contexts in "
                                       f"@context, found remote context {item!r} (nothing is fetched)")
            out.append(td_context())
        else:
            out.append(item)
    out.append({"eb": EB})
    return out


TEMPLATES = td_templates.TemplateCache()  # the JSON-LD of TDs by shape (td_templates)


def tds_to_quads(tds: list[dict], templates: bool = True) -> list[ox.Quad]:
    """The TDs' quads, each TD in its own named graph. A TD whose shape was seen before is filled in
    from its template (``td_templates``: 10x faster than the JSON-LD parser); the others go to
    the parser together, in one JSON-LD document (the TD context is processed once)."""
    if not tds:
        return []
    quads: list[ox.Quad] = []
    rest = []
    contexts: dict[str, list[Any]] = {}
    for td in tds:
        key = json.dumps(td.get("@context"), sort_keys=True)
        ctx = contexts.get(key)
        if ctx is None:
            ctx = contexts[key] = _offline_context(td)
        node = {k: v for k, v in td.items() if k != "@context"}
        filled = TEMPLATES.quads(node, ctx, key, ox.NamedNode(graph_for(td["id"]))) if templates else None
        if filled is None:
            rest.append((td, node, ctx))
        else:
            quads += filled
    if rest:
        common = rest[0][2]
        nodes = [{"@id": graph_for(td["id"]), "@graph": [node if ctx == common else {**node, "@context": ctx}]}
                 for td, node, ctx in rest]
        try:
            quads += ox.parse(json.dumps({"@context": common, "@graph": nodes}), format=ox.RdfFormat.JSON_LD)
        except SyntaxError as exc:
            raise DescriptionError(f"TD: expected valid JSON-LD, found: {exc}") from None
    extra = []
    for td in tds:
        g, s = ox.NamedNode(graph_for(td["id"])), ox.NamedNode(td["id"])
        document, datatype = td_document.encode(td)  # the TD as given, deflated (td_document)
        extra += [ox.Quad(s, ox.NamedNode(RDF + "type"), ox.NamedNode(TD + "Thing"), g),
                  ox.Quad(s, ox.NamedNode(RDF + "type"), ox.NamedNode(EB + "Device"), g),
                  ox.Quad(s, ox.NamedNode(EB + "tdDocument"), ox.Literal(document, datatype=ox.NamedNode(datatype)), g)]
    return quads + extra


def read_td_file(path: Path) -> tuple[list[dict], list[ox.Quad]]:
    """A TD JSON(-LD) file (one TD or a list) or an RDF file (Turtle etc.) describing devices."""
    if not path.is_file():
        raise DescriptionError(f"{path}: expected a device description file, found no such file")
    if path.suffix.lower() in (".json", ".jsonld", ".td"):
        raw = td_rules.load_json(path.read_bytes(), str(path))
        tds = raw if isinstance(raw, list) else [raw]
        for i, td in enumerate(tds):
            validate_td_json(td, f"{path}" + (f"[{i}]" if isinstance(raw, list) else ""))
        return tds, []
    return [], rdf_file_quads(path)


def rdf_file_quads(path: Path) -> list[ox.Quad]:
    """Any RDF file, as is, into a graph named after its content's sha256."""
    if not path.is_file():
        raise DescriptionError(f"{path}: expected an RDF file, found no such file")
    data = path.read_bytes()
    try:
        fmt = ox.RdfFormat.from_extension(path.suffix.lstrip(".").lower())
    except ValueError:
        fmt = None
    if fmt is None:
        raise DescriptionError(f"{path}: expected an RDF file (.ttl, .nt, .nq, .trig, .rdf, .jsonld), "
                               f"found suffix {path.suffix!r}")
    graph = ox.NamedNode(f"urn:edgebert:graph:import:{hashlib.sha256(data).hexdigest()}")
    try:
        triples = list(ox.parse(data, format=fmt, base_iri=path.resolve().as_uri()))
    except SyntaxError as exc:
        raise DescriptionError(f"{path}: expected valid {fmt.name}, found a syntax error: {exc}") from None
    return [ox.Quad(q.subject, q.predicate, q.object, graph if isinstance(q.graph_name, ox.DefaultGraph)
                    else q.graph_name) for q in triples]


def manifest_ntriples(art: Artifact) -> str:
    """N-Quads of an artifact and the model it was derived from (PROV-O lineage)."""
    m = art.manifest
    a, mdl = iri(artifact_iri(m.artifact_id)), iri(model_iri(m.source["weights_sha256"]))
    g = iri(graph_for(artifact_iri(m.artifact_id)))
    memory = m.memory or {}
    flash = int(memory.get("flash_bytes") or sum(f.bytes for n, f in m.files.items() if n != "graph.safetensors"))
    ram = int(memory.get("peak_ram_bytes") or flash)
    fid = m.metrics.get("fidelity", {})
    lat = m.metrics.get("latency", {})
    model_file = m.files.get("model.onnx") or m.files["graph.safetensors"]  # a binarized artifact has no ONNX
    facts = [
        (a, iri(RDF + "type"), iri(EB + "Artifact")), (a, iri(RDF + "type"), iri(PROV + "Entity")),
        (a, iri(SCHEMA + "identifier"), lit(m.artifact_id)), (a, iri(SCHEMA + "name"), lit(m.artifact_id)),
        (a, iri(PROV + "wasDerivedFrom"), mdl), (a, iri(EB + "family"), lit(m.source["name"])),
        (a, iri(EB + "precision"), iri(EB + m.precision)), (a, iri(EB + "runtime"), iri(EB + m.runtime)),
        (a, iri(EB + "sizeBytes"), lit(int(memory["flash_bytes"]) if m.firmware else int(model_file.bytes))),
        (a, iri(EB + "requiresFlashBytes"), lit(flash)), (a, iri(EB + "requiresRamBytes"), lit(ram)),
        (a, iri(EB + "sha256"), lit(model_file.sha256)),
        (a, iri(SCHEMA + "dateCreated"), datetime_lit(m.created or "1970-01-01T00:00:00+00:00")),
        (a, iri(SCHEMA + "softwareVersion"), lit(m.toolkit_version)),
        (mdl, iri(RDF + "type"), iri(EB + "Model")), (mdl, iri(RDF + "type"), iri(PROV + "Entity")),
        (mdl, iri(SCHEMA + "name"), lit(m.source["name"])), (mdl, iri(EB + "sha256"), lit(m.source["weights_sha256"])),
        (mdl, iri(RDFS + "label"), lit(f"{m.source['name']} ({m.architecture.get('type')})")),
    ]
    ops = m.firmware.get("ops", []) if m.firmware else m.onnx.get("ops", [])  # what the artifact's runtime runs
    facts += [(a, iri(EB + "usesOp"), lit(op)) for op in ops]
    if memory.get("measured"):  # flash/RAM measured on a build, not estimated: matching prefers these
        facts.append((a, iri(EB + "memoryMeasured"), lit(True)))
    facts.append((a, iri(DCAT + "downloadURL"), iri(Path(art.path).resolve().as_uri())))  # where provisioning reads it
    if "mean" in fid:
        facts += [(a, iri(EB + "fidelityMean"), lit(float(fid["mean"]))),
                  (a, iri(EB + "fidelityWorst"), lit(float(fid["worst"])))]
    if "median_ms" in lat:
        facts.append((a, iri(EB + "latencyMs"), lit(float(lat["median_ms"]))))
    return "".join(f"{s} {p} {o} {g} .\n" for s, p, o in facts)


def manifest_quads(art: Artifact) -> list[ox.Quad]:
    return list(ox.parse(manifest_ntriples(art), format=ox.RdfFormat.N_QUADS))


