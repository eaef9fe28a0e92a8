"""Triple stores behind the registry, chosen by name (``open_store``).

- ``memory`` or a directory path: Oxigraph embedded (pyoxigraph), persistent when a path is given.
- ``http(s)://…``: any SPARQL 1.1 endpoint (query + update), e.g. ``oxigraph serve
  --union-default-graph``, Apache Jena Fuseki or GraphDB. ``…/query`` URLs get ``…/update`` as
  their update endpoint unless one is given.

Both answer SPARQL over the union of their named graphs and apply each write as one SPARQL
Update request, which both execute atomically: a failed write leaves the store as it was.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from edgebert.errors import QueryError, QueryTimeoutError, StoreError
from edgebert.files import atomic_write

Row = dict[str, Any]


def _python_value(kind: str, value: str, datatype: str | None) -> Any:
    if kind == "literal" and datatype:
        if datatype.endswith(("#integer", "#int", "#long", "#nonNegativeInteger")):
            return int(value)
        if datatype.endswith(("#double", "#decimal", "#float")):
            return float(value)
        if datatype.endswith("#boolean"):
            return value == "true"
    return value


def _nquads_term(b: dict[str, str]) -> str:
    if b["type"] == "uri":
        return f"<{b['value']}>"
    if b["type"] == "bnode":
        return f"_:{b['value']}"
    value = json.dumps(b["value"], ensure_ascii=False)
    if "xml:lang" in b:
        return f"{value}@{b['xml:lang']}"
    return f"{value}^^<{b['datatype']}>" if "datatype" in b else value


def _json_term(ox: Any, term: Any) -> dict[str, Any]:  # noqa: ANN401 - pyoxigraph module and term
    """One RDF term in SPARQL 1.1 Query Results JSON."""
    if isinstance(term, ox.NamedNode):
        return {"type": "uri", "value": term.value}
    if isinstance(term, ox.BlankNode):
        return {"type": "bnode", "value": term.value}
    if isinstance(term, ox.Literal):
        out: dict[str, Any] = {"type": "literal", "value": term.value}
        if term.language:
            out["xml:lang"] = term.language
        elif term.datatype and term.datatype.value != "http://www.w3.org/2001/XMLSchema#string":
            out["datatype"] = term.datatype.value
        return out
    return {"type": "triple", "value": str(term)}


def _graph_term(graph: Any) -> str:
    """A quad's graph as N-Quads/SPARQL writes it ("" for the default graph)."""
    return "" if graph is None or str(graph) == "DEFAULT" else str(graph)


def insert_data(quads: list[Any]) -> str:
    """One SPARQL ``INSERT DATA`` for pyoxigraph quads, grouped by graph."""
    by_graph: dict[str, list[str]] = {}
    for q in quads:
        by_graph.setdefault(_graph_term(q.graph_name), []).append(f"{q.subject} {q.predicate} {q.object} .")
    blocks = [("\n".join(t) if g == "" else f"GRAPH {g} {{\n" + "\n".join(t) + "\n}") for g, t in by_graph.items()]
    return "INSERT DATA {\n" + "\n".join(blocks) + "\n}"


@dataclass(frozen=True)
class Dataset:
    """A SPARQL Protocol dataset: ``None`` members mean the service's own (the union of every graph
    as default graph, every named graph)."""
    default_graphs: tuple[str, ...] | None = None
    named_graphs: tuple[str, ...] | None = None


@dataclass(frozen=True)
class QueryResult:
    """A query's answer in one of its three forms: ``solutions`` and ``boolean`` as SPARQL 1.1 Results
    JSON (``json``), ``graph`` as N-Triples lines (``ntriples``)."""
    form: str
    json: bytes = b""
    ntriples: str = ""


_TIMEOUT = "query timeout: expected the result within the time limit, found it still running"


def _too_large(max_rows: int) -> str:
    return f"result too large: expected at most {max_rows} rows, found more (add a LIMIT)"


class Store(Protocol):
    url: str

    def query(self, sparql: str) -> list[Row]: ...
    def query_result(self, sparql: str, max_rows: int, deadline: float, dataset: Dataset = Dataset(),
                     base_iri: str | None = None) -> QueryResult: ...
    def update(self, sparql: str, base_iri: str | None = None) -> None: ...
    def replace_graphs(self, graphs: list[str], quads: list[Any]) -> None: ...
    def dump(self, path: Path) -> None: ...
    def restore(self, path: Path) -> None: ...
    def count(self) -> int: ...
    def close(self) -> None: ...


def _format_for(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in (".nq", ".trig"):
        raise StoreError(f"{path}: expected a .nq (N-Quads) or .trig (TriG) file, found {suffix or 'no suffix'}")
    return suffix


BULK_QUADS = 10_000  # a write at least this large goes in as table files (a TD is about 25 quads)


class OxigraphStore:
    """Embedded Oxigraph; ``path=None`` keeps everything in memory."""

    def __init__(self, path: str | Path | None = None) -> None:
        import pyoxigraph as ox

        self._ox = ox
        self.url = "memory" if path is None else str(path)
        self.generation = 0  # counts writes through this handle (what the registry caches follows it)
        try:
            self._store = ox.Store(str(path)) if path is not None else ox.Store()
        except OSError as exc:
            raise StoreError(f"{path}: expected an Oxigraph store directory, found: {exc}") from None
        if path is not None:  # table files of a bulk write a crash interrupted: never ingested, only disk
            for leftover in Path(path).glob("bulk-*.sst"):  # (the store is ours now: RocksDB holds its lock)
                leftover.unlink(missing_ok=True)

    def _run(self, sparql: str) -> Any:  # noqa: ANN401 - pyoxigraph's result types
        try:
            return self._store.query(sparql, use_default_graph_as_union=True)
        except SyntaxError as exc:
            raise QueryError(f"malformed SPARQL: {exc}") from None

    def query(self, sparql: str) -> list[Row]:
        ox = self._ox
        result = self._run(sparql)
        if isinstance(result, (bool, ox.QueryBoolean)):
            return [{"ask": bool(result)}]
        if isinstance(result, ox.QueryTriples):
            return [{"subject": t.subject.value, "predicate": t.predicate.value, "object": t.object.value}
                    for t in result]
        names = [v.value for v in result.variables]
        rows = []
        for solution in result:
            row: Row = {}
            for name in names:
                term = solution[name]
                if term is None:
                    row[name] = None
                elif isinstance(term, ox.Literal):
                    row[name] = _python_value("literal", term.value, term.datatype.value if term.datatype else None)
                else:
                    row[name] = term.value
            rows.append(row)
        return rows

    def query_result(self, sparql: str, max_rows: int, deadline: float, dataset: Dataset = Dataset(),
                     base_iri: str | None = None) -> QueryResult:
        """A query's answer, read lazily: QueryError once more than ``max_rows`` solutions (or triples)
        come, QueryTimeoutError once ``time.monotonic()`` passes ``deadline`` (checked between them;
        Oxigraph evaluates with the GIL released, so other requests go on meanwhile)."""
        import time

        ox = self._ox
        kwargs: dict[str, Any] = {"base_iri": base_iri}
        if dataset.default_graphs is None and dataset.named_graphs is None:
            kwargs["use_default_graph_as_union"] = True
        else:  # the protocol's dataset replaces the service's (and the query's FROM / FROM NAMED)
            kwargs["default_graph"] = [ox.NamedNode(g) for g in dataset.default_graphs or ()]
            kwargs["named_graphs"] = [ox.NamedNode(g) for g in dataset.named_graphs or ()]
        try:
            result = self._store.query(sparql, **kwargs)
        except SyntaxError as exc:
            raise QueryError(f"malformed SPARQL: {exc}") from None
        except RuntimeError as exc:  # Oxigraph cannot evaluate it (an unsupported custom function…)
            raise QueryError(f"SPARQL: expected a query Oxigraph can evaluate, found: {str(exc)[:200]}") from None
        if isinstance(result, (bool, ox.QueryBoolean)):
            return QueryResult("boolean", json.dumps({"head": {}, "boolean": bool(result)}).encode())
        error, item, lines, bindings = "", None, [], []
        graph = isinstance(result, ox.QueryTriples)
        names = [] if graph else [v.value for v in result.variables]
        try:
            for n, item in enumerate(result):
                if n >= max_rows:
                    error = _too_large(max_rows)
                    break
                if n % 256 == 0 and time.monotonic() > deadline:
                    error = _TIMEOUT
                    break
                if graph:
                    lines.append(f"{item.subject} {item.predicate} {item.object} .\n")
                else:
                    bindings.append({name: _json_term(ox, item[name]) for name in names if item[name] is not None})
        except RuntimeError as exc:
            error = f"SPARQL: the evaluation failed: {str(exc)[:200]}"
        del result, item  # pyoxigraph's results must be dropped on the thread that made them
        if not error and time.monotonic() > deadline:
            error = _TIMEOUT
        if error:
            raise (QueryTimeoutError if error is _TIMEOUT else QueryError)(error)
        if graph:
            return QueryResult("graph", ntriples="".join(lines))
        return QueryResult("solutions", json.dumps({"head": {"vars": names}, "results": {"bindings": bindings}}).encode())

    def update(self, sparql: str, base_iri: str | None = None) -> None:
        self.generation += 1  # (before: a reader that sees the old number rereads after the write)
        try:
            self._store.update(sparql, base_iri=base_iri)
        except SyntaxError as exc:
            raise QueryError(f"malformed SPARQL update: {exc}") from None
        except OSError as exc:
            raise StoreError(f"{self.url}: the update failed: {exc}") from None

    def replace_graphs(self, graphs: list[str], quads: list[Any]) -> None:
        """Atomically: drop these named graphs, then add ``quads``. When none of the graphs exists
        yet (a bulk ingest of new devices) the quads go in without SPARQL text (a third of the
        write's time): a large batch as sorted table files RocksDB ingests in one step (no
        write-ahead log, so a 100,000-device import needs 1.0 GB of disk instead of 1.8 GB while the
        store is open, and its files stay LZ4-compressed: 2% smaller at rest), a small one by one
        atomic ``extend``. Otherwise by one SPARQL update."""
        ox = self._ox
        if not any(self._store.contains_named_graph(ox.NamedNode(g)) for g in graphs):
            self.generation += 1
            try:
                if len(quads) >= BULK_QUADS:
                    self._bulk_extend(quads)
                else:
                    self._store.extend(quads)
                return
            except OSError as exc:
                raise StoreError(f"{self.url}: the update failed: {exc}") from None
        self.update("".join(f"DROP SILENT GRAPH <{g}> ;\n" for g in graphs) + insert_data(quads))

    def _bulk_extend(self, quads: list[Any]) -> None:
        self._store.bulk_extend(quads)  # atomic: its files for every index are ingested in one step

    def dump(self, path: Path) -> None:
        fmt = self._ox.RdfFormat.N_QUADS if _format_for(path) == ".nq" else self._ox.RdfFormat.TRIG
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        self._store.dump(output=str(tmp), format=fmt)
        os.replace(tmp, path)

    def restore(self, path: Path) -> None:
        fmt = self._ox.RdfFormat.N_QUADS if _format_for(path) == ".nq" else self._ox.RdfFormat.TRIG
        data = path.read_bytes()
        try:
            list(self._ox.parse(data, format=fmt))  # parse first: a bad file must not clear the store
        except SyntaxError as exc:
            raise StoreError(f"{path}: expected {path.suffix[1:]} data, found a syntax error: {exc}") from None
        self.generation += 1
        self._store.clear()
        self._store.load(data, format=fmt)

    def count(self) -> int:
        return len(self._store)

    def flush(self) -> None:
        self._store.flush()

    def close(self) -> None:
        """Drop our handle so that the directory's lock goes now, not whenever the object is collected
        (anything else still holding this wrapper, e.g. a logged traceback, keeps nothing open)."""
        store, self._store = self._store, None
        if store is not None and self.url != "memory":
            store.flush()
        del store


class SparqlEndpointStore:
    """A remote SPARQL 1.1 endpoint over HTTP (query and update endpoints)."""

    def __init__(self, url: str, update_url: str | None = None, timeout: float = 30.0,
                 store_url: str | None = None) -> None:
        self.url = url.rstrip("/")
        oxigraph_like = self.url.endswith("/query")
        if update_url is None:
            update_url = self.url[: -len("/query")] + "/update" if oxigraph_like else self.url
        self.update_url = update_url
        # where a large write of new graphs can go as N-Quads: Oxigraph's (and Fuseki's) dataset POST,
        # bulk-loaded; None, or an endpoint that refuses it, means SPARQL Update only
        self.store_url = store_url or (self.url[: -len("/query")] + "/store" if oxigraph_like else None)
        self.timeout = timeout
        self.generation = 0  # writes through this handle; others' writes are not seen (``shared``)
        self.shared = True  # other clients may write to the endpoint: what the registry caches expires

    def _post(self, url: str, body: str, content_type: str, accept: str) -> bytes:
        return self._post_typed(url, body, content_type, accept)[0]

    def _post_typed(self, url: str, body: str, content_type: str, accept: str) -> tuple[bytes, str]:
        """The reply's body and its media type."""
        request = urllib.request.Request(url, data=body.encode("utf-8"), method="POST",
                                         headers={"Content-Type": content_type, "Accept": accept})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.read(), response.headers.get("Content-Type", "")
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace").strip().splitlines()
            raise StoreError(f"{url}: the endpoint refused the request (HTTP {exc.code}: "
                             f"{detail[0] if detail else exc.reason})") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise StoreError(f"{url}: expected a reachable SPARQL endpoint, found: {reason}") from None

    def query(self, sparql: str) -> list[Row]:
        raw = json.loads(self._post(self.url, sparql, "application/sparql-query", "application/sparql-results+json"))
        if "boolean" in raw:
            return [{"ask": raw["boolean"]}]
        names = raw["head"]["vars"]
        return [{n: (_python_value(b[n]["type"], b[n]["value"], b[n].get("datatype")) if n in b else None)
                 for n in names} for b in raw["results"]["bindings"]]

    def query_result(self, sparql: str, max_rows: int, deadline: float, dataset: Dataset = Dataset(),
                     base_iri: str | None = None) -> QueryResult:
        """The endpoint's answer (it applies its own time limits); the row cap is checked on the reply.
        A protocol dataset is passed on as ``default-graph-uri`` / ``named-graph-uri``."""
        params = [("default-graph-uri", g) for g in dataset.default_graphs or ()]
        params += [("named-graph-uri", g) for g in dataset.named_graphs or ()]
        url = self.url + ("?" + urllib.parse.urlencode(params) if params else "")
        accept = "application/sparql-results+json, application/n-triples;q=0.9"
        raw, kind = self._post_typed(url, sparql, "application/sparql-query", accept)
        if "n-triples" in kind or "turtle" in kind:
            import pyoxigraph as ox

            triples = list(ox.parse(raw, format=ox.RdfFormat.TURTLE if "turtle" in kind else ox.RdfFormat.N_TRIPLES))
            if len(triples) > max_rows:
                raise QueryError(_too_large(max_rows))
            return QueryResult("graph", ntriples="".join(f"{t.subject} {t.predicate} {t.object} .\n" for t in triples))
        answer = json.loads(raw)
        if "boolean" in answer:
            return QueryResult("boolean", raw)
        if len(answer.get("results", {}).get("bindings", [])) > max_rows:
            raise QueryError(_too_large(max_rows))
        return QueryResult("solutions", raw)

    def update(self, sparql: str, base_iri: str | None = None) -> None:
        self.generation += 1
        self._post(self.update_url, sparql, "application/sparql-update", "*/*")

    def replace_graphs(self, graphs: list[str], quads: list[Any]) -> None:
        """Drop these named graphs and add ``quads``, in one request (atomic at the endpoint): a large
        write of graphs none of which exists yet (a bulk import) as N-Quads to the store URL, which
        Oxigraph bulk-loads (2x faster than parsing SPARQL text, and its table files stay
        compressed); otherwise one SPARQL update."""
        if self.store_url and len(quads) >= BULK_QUADS and not self.query(
                "ASK { VALUES ?g { " + " ".join(f"<{g}>" for g in graphs) + " } GRAPH ?g { ?s ?p ?o } }")[0]["ask"]:
            body = "".join(f"{q.subject} {q.predicate} {q.object} {_graph_term(q.graph_name)} .\n" for q in quads)
            request = urllib.request.Request(self.store_url + "?no_transaction", data=body.encode("utf-8"),
                                             method="POST", headers={"Content-Type": "application/n-quads"})
            self.generation += 1
            try:
                with urllib.request.urlopen(request, timeout=self.timeout):
                    return
            except urllib.error.HTTPError as exc:
                if 400 <= exc.code < 500:
                    self.store_url = None  # not offered here: SPARQL Update from now on
            except (urllib.error.URLError, OSError):
                pass  # the update below says whether the endpoint is there; it replaces whatever went in
        self.update("".join(f"DROP SILENT GRAPH <{g}> ;\n" for g in graphs) + insert_data(quads))

    def dump(self, path: Path) -> None:
        if _format_for(path) != ".nq":
            raise StoreError(f"{path}: dump of a remote endpoint writes N-Quads; name the file .nq")
        raw = json.loads(self._post(self.url, "SELECT ?s ?p ?o ?g WHERE { GRAPH ?g { ?s ?p ?o } }",
                                    "application/sparql-query", "application/sparql-results+json"))
        lines = [" ".join(_nquads_term(b[n]) for n in ("s", "p", "o", "g")) + " .\n"
                 for b in raw["results"]["bindings"]]
        atomic_write(path, "".join(lines))

    def restore(self, path: Path) -> None:
        import pyoxigraph as ox

        fmt = ox.RdfFormat.N_QUADS if _format_for(path) == ".nq" else ox.RdfFormat.TRIG
        try:
            quads = list(ox.parse(path.read_bytes(), format=fmt))
        except SyntaxError as exc:
            raise StoreError(f"{path}: expected {path.suffix[1:]} data, found a syntax error: {exc}") from None
        self.update("CLEAR ALL ;\n" + insert_data(quads))  # one request: atomic on the server

    def count(self) -> int:
        return int(self.query("SELECT (COUNT(*) AS ?n) WHERE { ?s ?p ?o }")[0]["n"])

    def close(self) -> None:
        pass


def open_store(spec: str) -> Store:
    """``memory`` | ``DIR`` | ``http(s)://…`` (see module docstring)."""
    if spec == "memory":
        return OxigraphStore(None)
    if urllib.parse.urlparse(spec).scheme in ("http", "https"):
        return SparqlEndpointStore(spec)
    return OxigraphStore(Path(spec))
