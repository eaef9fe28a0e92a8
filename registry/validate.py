"""SHACL validation of what is about to be written: our shapes (devices, models, artifacts,
deployments) and, for Thing Descriptions, the official W3C TD SHACL shapes (offline copies)."""

from __future__ import annotations

import logging
from functools import cache

import pyoxigraph as ox

from edgebert.errors import DescriptionError
from registry.vocab import data_path

SH = "http://www.w3.org/ns/shacl#"


@cache
def _graphs() -> tuple:
    import rdflib

    logging.getLogger("rdflib.term").setLevel(logging.CRITICAL)  # rdf:HTML literals in the TD shapes
    ours = rdflib.Graph().parse(data_path("shapes.ttl"))
    td = rdflib.Graph().parse(data_path("td-validation.ttl"))
    onto = rdflib.Graph().parse(data_path("edgebert.ttl"))
    return ours, td, onto


def _rdf11(term: ox.NamedNode | ox.BlankNode | ox.Literal | ox.Triple) -> str:
    """A term in RDF 1.1 N-Triples: a literal's base direction (``"..."@ar--rtl``, RDF 1.2, what a TD's
    ``@direction`` becomes) is left out, since the SHACL engine parses RDF 1.1 only and no shape
    constrains directions."""
    text = str(term)
    if isinstance(term, ox.Literal) and term.language and not text.endswith(f"@{term.language}"):
        return str(ox.Literal(term.value, language=term.language))
    return text


def shacl_check(scratch: ox.Store, with_td_shapes: bool) -> None:
    """Raise DescriptionError naming the focus node, the property and the shape's message."""
    import pyshacl
    import rdflib

    ours, td_shapes, onto = _graphs()
    data = rdflib.Graph()
    data.parse(data="\n".join(f"{t.subject} {t.predicate} {_rdf11(t.object)} ." for t in scratch), format="nt")
    data += onto  # typed individuals (eb:int8 a eb:Precision, …) for sh:class
    for shapes in (ours, td_shapes) if with_td_shapes else (ours,):
        conforms, report, _ = pyshacl.validate(data, shacl_graph=shapes, allow_warnings=True)
        if conforms:
            continue
        sh = rdflib.Namespace(SH)
        for result in report.subjects(rdflib.RDF.type, sh.ValidationResult):
            if report.value(result, sh.resultSeverity) != sh.Violation:
                continue
            focus = report.value(result, sh.focusNode)
            path = report.value(result, sh.resultPath)
            message = report.value(result, sh.resultMessage)
            where = f"{focus}" + (f" {data.namespace_manager.normalizeUri(path)}" if path is not None else "")
            raise DescriptionError(f"{where}: {message}")
