"""Namespaces and package data of the registry."""

from __future__ import annotations

import json
import re
from functools import cache
from importlib import resources
from pathlib import Path

EB = "https://w3id.org/edgebert/ns#"
TD = "https://www.w3.org/2019/wot/td#"
HCTL = "https://www.w3.org/2019/wot/hypermedia#"
JS = "https://www.w3.org/2019/wot/json-schema#"
RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
RDFS = "http://www.w3.org/2000/01/rdf-schema#"
XSD = "http://www.w3.org/2001/XMLSchema#"
SOSA = "http://www.w3.org/ns/sosa/"
SSN = "http://www.w3.org/ns/ssn/"
SSN_SYSTEM = "http://www.w3.org/ns/ssn/systems/"
S3N = "http://w3id.org/s3n/"
S3NX = "https://w3id.org/tinyml-schema/neural-network-schema/s3n_extend/"
SOSAX = "https://w3id.org/tinyml-schema/neural-network-schema/sosa_extend/"
NNET = "https://w3id.org/tinyml-schema/neural-network-schema#"
PROV = "http://www.w3.org/ns/prov#"
SCHEMA = "https://schema.org/"
DCAT = "http://www.w3.org/ns/dcat#"
OM = "http://www.ontology-of-units-of-measure.org/resource/om-2/"

PREFIXES = "\n".join(f"PREFIX {p}: <{iri}>" for p, iri in {
    "eb": EB, "td": TD, "hctl": HCTL, "rdf": RDF, "rdfs": RDFS, "xsd": XSD, "sosa": SOSA, "ssn": SSN,
    "ssn-system": SSN_SYSTEM, "s3n": S3N, "s3nx": S3NX, "sosax": SOSAX, "nnet": NNET, "prov": PROV,
    "schema": SCHEMA, "dcat": DCAT, "om": OM}.items()) + "\n"

RUNTIMES = ("onnxruntime", "litert", "tflite-micro", "c99", "edgebert-binary")
PRECISIONS = ("fp32", "int8", "binary", "binary-full")
TD_CONTEXT_URLS = ("https://www.w3.org/2022/wot/td/v1.1", "https://www.w3.org/2019/wot/td/v1")
ONTOLOGY_GRAPH = "urn:edgebert:graph:ontology"


def data_path(name: str) -> Path:
    return Path(str(resources.files("registry") / "data" / name))


@cache
def td_context() -> dict:
    return json.loads(data_path("td-context-1.1.jsonld").read_text(encoding="utf-8"))["@context"]


@cache
def td_schema() -> dict:
    return json.loads(data_path("td-json-schema-validation.json").read_text(encoding="utf-8"))


@cache
def runtime_ops() -> dict[str, list[str]]:
    return json.loads(data_path("runtime_ops.json").read_text(encoding="utf-8"))


_IRI = re.compile(r'^[A-Za-z][A-Za-z0-9+.-]*:[^\s<>"{}|\\^`]*$')


def is_iri(value: str) -> bool:
    """An absolute IRI that can be written between <> in SPARQL without escaping anything."""
    return bool(_IRI.match(value))


def iri(value: str) -> str:
    return f"<{value}>"


def lit(value: object) -> str:
    """An N-Triples literal for a Python value."""
    if isinstance(value, bool):
        return f'"{str(value).lower()}"^^<{XSD}boolean>'
    if isinstance(value, int):
        return f'"{value}"^^<{XSD}integer>'
    if isinstance(value, float):
        return f'"{value!r}"^^<{XSD}double>'
    return json.dumps(str(value), ensure_ascii=False)


def datetime_lit(value: str) -> str:
    return f'{json.dumps(value)}^^<{XSD}dateTime>'
