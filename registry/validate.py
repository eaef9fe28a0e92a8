"""SHACL validation of what is about to be written: our shapes (devices, models, artifacts,
deployments) and, for Thing Descriptions, the official W3C TD SHACL shapes (offline copies).

The official shapes are applied without their ``sh:datatype`` constraints (``relaxed_td_shapes``):
they disagree with the official TD 1.1 JSON-LD context on which RDF datatype a JSON value becomes
(``base`` and ``authorization`` become IRIs or plain strings where the shapes want
``xsd:anyURI`` literals; ``minItems`` an ``xsd:integer`` where they want ``xsd:unsignedInt``; a
string under a TD's default language an ``rdf:langString`` where they want ``xsd:string``; a
``minimum`` the integer it is where one shape wants ``xsd:double``), so that 18 of the 44 valid
TDs of the Eclipse Thingweb playground and 2 of the TD 1.1 specification's examples failed them.
Every value's JSON type is checked by the official TD JSON Schema before this; every other
constraint of the shapes (classes, counts, node shapes, value lists) still applies.
"""

from __future__ import annotations

import logging
from functools import cache

import pyoxigraph as ox

from edgebert.errors import DescriptionError
from registry.vocab import data_path

SH = "http://www.w3.org/ns/shacl#"


@cache
def _graphs(with_td_shapes: bool) -> tuple:
    """(the shapes to run, in one graph: one SHACL run per write; the ontology's typing triples)."""
    import rdflib

    logging.getLogger("rdflib.term").setLevel(logging.CRITICAL)  # rdf:HTML literals in the TD shapes
    shapes = rdflib.Graph().parse(data_path("shapes.ttl"))
    if with_td_shapes:
        shapes += relaxed_td_shapes()
    onto = rdflib.Graph().parse(data_path("edgebert.ttl"))
    typing = rdflib.Graph()  # what sh:class needs: eb:int8 a eb:Precision, and the class hierarchy
    for p in (rdflib.RDF.type, rdflib.RDFS.subClassOf):
        for s, o in onto.subject_objects(p):
            typing.add((s, p, o))
    return shapes, typing


@cache
def _official_td_shapes():  # noqa: ANN202 - an rdflib.Graph, read once
    import rdflib

    return rdflib.Graph().parse(data_path("td-validation.ttl"))


def relaxed_td_shapes():  # noqa: ANN201 - an rdflib.Graph; rdflib is imported lazily
    """The official TD shapes without the constraints that contradict the TD 1.1 context and spec
    (see the module's docstring): ``sh:datatype`` and ``sh:nodeKind`` everywhere, and the value
    list and count of ``rdf:type``."""
    import rdflib

    sh = rdflib.Namespace(SH)
    td = rdflib.Graph()
    td += _official_td_shapes()
    td.remove((None, sh.datatype, None))
    td.remove((None, sh.nodeKind, None))
    for shape in list(td.subjects(sh.path, rdflib.RDF.type)):
        for constraint in (sh["in"], sh.maxCount):
            td.remove((shape, constraint, None))
    return td


@cache
def _keyword_predicates() -> frozenset[str]:
    """Predicates whose values the TD shapes list (``sh:in`` of plain literals: ``in``, ``op``…)."""
    import rdflib

    sh = rdflib.Namespace(SH)
    td = _official_td_shapes()
    out = set()
    for shape, values in td.subject_objects(sh["in"]):
        path = td.value(shape, sh.path)
        members = list(rdflib.collection.Collection(td, values))
        if isinstance(path, rdflib.URIRef) and members and all(isinstance(m, rdflib.Literal) for m in members):
            out.add(str(path))
    return frozenset(out)


def _rdf11(term: ox.NamedNode | ox.BlankNode | ox.Literal | ox.Triple, keyword: bool = False) -> str:
    """A term in RDF 1.1 N-Triples: a literal's base direction (``"..."@ar--rtl``, RDF 1.2, what a TD's
    ``@direction`` becomes) is left out, since the SHACL engine parses RDF 1.1 only and no shape
    constrains directions. A ``keyword`` value (one the shapes list, e.g. ``"in": "header"``) loses
    the language tag a TD's default language gives every string: a keyword is not text."""
    text = str(term)
    if isinstance(term, ox.Literal) and term.language:
        if keyword:
            return str(ox.Literal(term.value))
        if not text.endswith(f"@{term.language}"):
            return str(ox.Literal(term.value, language=term.language))
    return text


def shacl_check(scratch: ox.Store, with_td_shapes: bool) -> None:
    """Raise DescriptionError naming the focus node, the property and the shape's message."""
    import pyshacl
    import rdflib

    shapes, typing = _graphs(with_td_shapes)
    data = rdflib.Graph()
    keywords = _keyword_predicates()
    data.parse(data="\n".join(f"{t.subject} {t.predicate} {_rdf11(t.object, t.predicate.value in keywords)} ."
                              for t in scratch), format="nt")
    data += typing  # typed individuals (eb:int8 a eb:Precision, …) for sh:class
    conforms, report, _ = pyshacl.validate(data, shacl_graph=shapes, allow_warnings=True)
    if conforms:
        return
    sh = rdflib.Namespace(SH)
    faults = []
    for result in report.subjects(rdflib.RDF.type, sh.ValidationResult):
        if report.value(result, sh.resultSeverity) != sh.Violation:
            continue
        focus = report.value(result, sh.focusNode)
        path = report.value(result, sh.resultPath)
        message = str(report.value(result, sh.resultMessage))[:200]
        where = f"{focus}" + (f" {data.namespace_manager.normalizeUri(path)}" if isinstance(path, rdflib.URIRef) else "")
        faults.append((where, message))
    if faults:
        faults.sort()
        raise DescriptionError(f"{faults[0][0]}: {faults[0][1]}", tuple(faults[:20]))
