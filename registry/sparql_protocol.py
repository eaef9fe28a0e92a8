"""The SPARQL 1.1 Protocol, as pure functions: which operation a request carries, and in what
format to answer it (no I/O; the server runs what these return).

- ``parse_request``: GET with ``query=``; POST as ``application/x-www-form-urlencoded`` (``query=``
  or ``update=``) or directly as ``application/sparql-query`` / ``application/sparql-update``; the
  dataset as ``default-graph-uri`` / ``named-graph-uri`` (queries) and ``using-graph-uri`` /
  ``using-named-graph-uri`` (updates). Everything else is refused with the 4xx status the protocol
  asks for: two operations, an update by GET, a missing or wrong media type (415), a body that is
  not UTF-8, a dataset given both by parameter and in an update (``USING``/``WITH``).
- ``with_using``: an update with the protocol's ``using-graph-uri`` dataset written into each
  ``INSERT``/``DELETE … WHERE`` as ``USING`` clauses (what the protocol says they mean).
- ``negotiate``: the media type of the answer from ``Accept`` (q-values honoured) and the result's
  form: SPARQL results as JSON (``application/json`` when the client states no preference, as WoT
  Discovery asks), XML, CSV or TSV; graphs as JSON-LD (the default), Turtle, N-Triples or RDF/XML.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl

from edgebert.errors import QueryError, RequestRefused
from registry.guard import masked
from registry.store import QueryResult
from registry.vocab import is_iri

FORM = "application/x-www-form-urlencoded"
QUERY_TYPE = "application/sparql-query"
UPDATE_TYPE = "application/sparql-update"

RESULTS = {  # media type -> pyoxigraph QueryResultsFormat name
    "application/sparql-results+json": "JSON", "application/json": "JSON",
    "application/sparql-results+xml": "XML", "application/xml": "XML", "text/xml": "XML",
    "text/csv": "CSV", "text/tab-separated-values": "TSV",
}
BOOLEAN_RESULTS = {k: v for k, v in RESULTS.items() if v in ("JSON", "XML")}  # CSV/TSV define no boolean form
GRAPHS = {  # media type -> pyoxigraph RdfFormat name
    "application/ld+json": "JSON_LD", "text/turtle": "TURTLE", "application/x-turtle": "TURTLE",
    "application/n-triples": "N_TRIPLES", "text/plain": "N_TRIPLES", "application/rdf+xml": "RDF_XML",
    "text/n3": "TURTLE",
}
# what a client that states no preference gets: WoT Discovery's defaults on /search/sparql, the usual
# SPARQL media types on the plain /sparql endpoint
DISCOVERY_DEFAULT = {"solutions": "application/json", "boolean": "application/json", "graph": "application/ld+json"}
SPARQL_DEFAULT = {"solutions": "application/sparql-results+json", "boolean": "application/sparql-results+json",
                  "graph": "text/turtle"}
MAX_DATASET_GRAPHS = 100


@dataclass(frozen=True)
class SparqlRequest:
    kind: str  # "query" | "update"
    text: str
    default_graphs: tuple[str, ...] = ()  # default-graph-uri, or using-graph-uri for an update
    named_graphs: tuple[str, ...] = ()  # named-graph-uri, or using-named-graph-uri

    @property
    def has_dataset(self) -> bool:
        return bool(self.default_graphs or self.named_graphs)


def media_type(content_type: str | None) -> tuple[str, dict[str, str]]:
    """(the lower-case media type, its parameters) of a Content-Type or Accept item."""
    if not content_type:
        return "", {}
    kind, *params = content_type.split(";")
    options = {}
    for p in params:
        key, _, value = p.partition("=")
        options[key.strip().lower()] = value.strip().strip('"').lower()
    return kind.strip().lower(), options


def _utf8(data: bytes, where: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise QueryError(f"{where}: expected UTF-8, found a byte that is not ({exc.reason} at {exc.start})") from None


def _graphs(params: list[tuple[str, str]], name: str) -> tuple[str, ...]:
    graphs = tuple(v for k, v in params if k == name)
    if len(graphs) > MAX_DATASET_GRAPHS:
        raise QueryError(f"{name}: expected at most {MAX_DATASET_GRAPHS} graphs, found {len(graphs)}")
    for g in graphs:
        if not is_iri(g):
            raise QueryError(f"{name}: expected an absolute IRI, found {g[:200]!r}")
    return graphs


def _one(params: list[tuple[str, str]], name: str) -> str | None:
    values = [v for k, v in params if k == name]
    if len(values) > 1:
        raise QueryError(f"{name}: expected one '{name}' parameter, found {len(values)}")
    return values[0] if values else None


def parse_request(method: str, query_string: str, content_type: str | None, body: bytes) -> SparqlRequest:
    """The operation a SPARQL Protocol request carries; QueryError (400) / RequestRefused (405, 415)."""
    try:
        url_params = parse_qsl(query_string, keep_blank_values=True, strict_parsing=False, errors="strict")
    except UnicodeDecodeError:
        raise QueryError("request URL: expected UTF-8 percent-encoded parameters, found bytes that are not") from None
    kind, options = media_type(content_type)
    if method == "GET":
        if any(k == "update" for k, _ in url_params):
            raise QueryError("update: expected an update by POST, found one by GET (GET only runs queries)")
        params, text = url_params, _one(url_params, "query")
        if text is None:
            raise QueryError("request: expected a 'query' parameter, found none")
        op = "query"
    elif method == "POST":
        if kind == FORM:
            body_params = parse_qsl(_utf8(body, "request body"), keep_blank_values=True)
            params = url_params + body_params
            query, update = _one(body_params, "query"), _one(body_params, "update")
            if any(k in ("query", "update") for k, _ in url_params):
                raise QueryError("request: expected the operation in the form body only, found 'query' or 'update' "
                                 "in the URL too")
            if (query is None) == (update is None):
                raise QueryError("request body: expected exactly one 'query' or 'update' parameter, found "
                                 f"{'both' if query is not None else 'neither'}")
            op, text = ("query", query) if query is not None else ("update", update)
        elif kind in (QUERY_TYPE, UPDATE_TYPE):
            charset = options.get("charset", "utf-8")
            if charset not in ("utf-8", "utf8"):
                raise RequestRefused(f"Content-Type: expected charset UTF-8 (the protocol's only encoding), "
                                     f"found {charset[:40]!r}", 415)
            if any(k in ("query", "update") for k, _ in url_params):
                raise QueryError("request: expected the operation in the body only, found 'query' or 'update' in the URL")
            op, text, params = ("query" if kind == QUERY_TYPE else "update"), _utf8(body, "request body"), url_params
        else:
            raise RequestRefused(f"Content-Type: expected {FORM}, {QUERY_TYPE} or {UPDATE_TYPE}, "
                                 f"found {(content_type or 'none')[:80]!r}", 415)
    else:
        raise RequestRefused(f"method: expected GET or POST for a SPARQL operation, found {method[:20]}", 405)
    assert text is not None
    if op == "query":
        return SparqlRequest(op, text, _graphs(params, "default-graph-uri"), _graphs(params, "named-graph-uri"))
    request = SparqlRequest(op, text, _graphs(params, "using-graph-uri"), _graphs(params, "using-named-graph-uri"))
    if request.has_dataset and _keywords(text) & {"USING", "WITH"}:
        raise QueryError("update: expected the dataset either by using-graph-uri/using-named-graph-uri or by "
                         "USING/WITH in the update, found both")
    return request


_WORD = re.compile(r"(?<![\w:?$])[A-Za-z]+(?![\w:])")


def _keywords(text: str) -> set[str]:
    return {w.upper() for w in _WORD.findall(masked(text))}


def with_using(request: SparqlRequest) -> str:
    """The update with its protocol dataset as USING / USING NAMED clauses before each top-level
    WHERE of an INSERT/DELETE operation (``DELETE WHERE`` and ``… DATA`` forms take none)."""
    if request.kind != "update" or not request.has_dataset:
        return request.text
    clauses = " ".join([f"USING <{g}>" for g in request.default_graphs]
                       + [f"USING NAMED <{g}>" for g in request.named_graphs]) + " "
    depth, cuts, previous = 0, [], ""
    for m in re.finditer(r"[{}]|(?<![\w:?$])[A-Za-z]+(?![\w:])", masked(request.text)):
        token = m.group(0)
        if token in "{}":
            depth += 1 if token == "{" else -1
            previous = token if depth == 0 else previous
        elif depth == 0:
            if token.upper() == "WHERE" and previous.upper() != "DELETE":
                cuts.append(m.start())
            previous = token
    text = request.text
    for at in reversed(cuts):
        text = text[:at] + clauses + text[at:]
    return text


def _accepted(accept: str | None) -> list[tuple[str, float]]:
    """Media ranges of an Accept header, best first (stable for equal q)."""
    out: list[tuple[str, float]] = []
    for part in (accept or "").split(",")[:50]:
        kind, options = media_type(part)
        if not kind:
            continue
        try:
            q = float(options.get("q", "1"))
        except ValueError:
            q = 0.0
        if q > 0:
            out.append((kind, q))
    return sorted(out, key=lambda x: -x[1])


def negotiate(accept: str | None, form: str, defaults: dict[str, str] = DISCOVERY_DEFAULT) -> str:
    """The media type to answer with for a result of ``form`` ("solutions", "boolean" or "graph");
    RequestRefused (406) when the client accepts none that the form has."""
    offers = GRAPHS if form == "graph" else BOOLEAN_RESULTS if form == "boolean" else RESULTS
    ranges = _accepted(accept)
    if not ranges:
        return defaults[form]
    for kind, _ in ranges:
        if kind == "*/*" or (kind.endswith("/*") and defaults[form].startswith(kind[:-1])):
            return defaults[form]
        if kind in offers:
            return kind
        if kind.endswith("/*"):
            match = next((m for m in offers if m.startswith(kind[:-1])), None)
            if match:
                return match
    raise RequestRefused(f"Accept: expected one of {', '.join(offers)} for this {form} result, "
                         f"found {(accept or '')[:200]!r}", 406)


def render(result: QueryResult, media_type: str) -> bytes:
    """The result in the negotiated media type (Oxigraph's serializers)."""
    import pyoxigraph as ox

    if result.form == "graph":
        triples = ox.parse(result.ntriples, format=ox.RdfFormat.N_TRIPLES)
        return ox.serialize(triples, format=getattr(ox.RdfFormat, GRAPHS[media_type])) or b""
    fmt = RESULTS[media_type]
    if fmt == "JSON":
        return result.json
    parsed = ox.parse_query_results(result.json, format=ox.QueryResultsFormat.JSON)
    return parsed.serialize(format=getattr(ox.QueryResultsFormat, fmt)) or b""


__all__ = ["BOOLEAN_RESULTS", "DISCOVERY_DEFAULT", "GRAPHS", "RESULTS", "SPARQL_DEFAULT", "SparqlRequest",
           "media_type", "negotiate", "parse_request", "render", "with_using"]
