"""Conformance: the W3C SPARQL 1.1 query tests, through the registry's endpoint and `oxigraph serve`.

The tests are the W3C's (w3c/rdf-tests, sparql/sparql11: the 13 manifests of
manifest-sparql11-query.ttl), not vendored: give the folder with ``--suite``. Each evaluation test
runs over HTTP the same way on both endpoints: its data loaded by SPARQL Update (the default-graph
data into one graph, each named graph under its file IRI), the query sent by POST with the
protocol's dataset (``default-graph-uri`` that graph, ``named-graph-uri`` each named graph) and a
``BASE`` of its file's IRI, and the answer compared with the expected result (solutions as a
multiset with blank nodes as wildcards, graphs by isomorphism, booleans). Syntax tests send the
query and expect 2xx (positive) or 4xx (negative). Tests whose query names its own dataset
(``FROM``) or calls ``SERVICE`` are counted as not run, on both.

    python benchmarks/sparql_query_tests.py --suite rdf-tests/sparql/sparql11 [--endpoints edgebert,oxigraph]
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import urllib.parse
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import finish
from sparql_protocol import Endpoint, http, start

# benchmarks/registry.py is named like the package: keep this folder off the import path from here
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from registry.guard import masked  # noqa: E402

MF = "http://www.w3.org/2001/sw/DataAccess/tests/test-manifest#"
QT = "http://www.w3.org/2001/sw/DataAccess/tests/test-query#"
DEFAULT_GRAPH = "urn:x-sparql-tests:default"
KINDS = {MF + "QueryEvaluationTest": "eval", MF + "PositiveSyntaxTest11": "syntax+", MF + "NegativeSyntaxTest11": "syntax-"}


@dataclass(frozen=True)
class Test:
    name: str
    kind: str
    query: Path
    data: tuple[Path, ...] = ()
    graphs: tuple[Path, ...] = ()
    result: Path | None = None


def load_tests(suite: Path) -> list[Test]:
    import rdflib
    from rdflib.collection import Collection

    top = rdflib.Graph().parse(suite / "manifest-sparql11-query.ttl", publicID=(suite / "manifest-sparql11-query.ttl").as_uri())
    includes = [Path(urllib.parse.urlparse(str(m)).path) for m in Collection(
        top, next(top.objects(None, rdflib.URIRef(MF + "include"))))]
    tests = []
    u = rdflib.URIRef
    for manifest in includes:
        g = rdflib.Graph().parse(manifest, publicID=manifest.as_uri())
        entries = next(g.objects(None, u(MF + "entries")), None)
        for entry in Collection(g, entries) if entries else []:
            kind = KINDS.get(str(g.value(entry, rdflib.RDF.type)))
            if kind is None:
                continue
            action = g.value(entry, u(MF + "action"))
            path = (lambda t: Path(urllib.parse.urlparse(str(t)).path))  # noqa: E731
            if kind == "eval":
                query = path(g.value(action, u(QT + "query")))
                data = tuple(path(d) for d in g.objects(action, u(QT + "data")))
                graphs = tuple(path(d) for d in g.objects(action, u(QT + "graphData")))
                result = g.value(entry, u(MF + "result"))
                tests.append(Test(f"{manifest.parent.name}/{str(entry).rsplit('#', 1)[-1]}", kind, query, data, graphs,
                                  path(result) if result is not None else None))
            else:
                tests.append(Test(f"{manifest.parent.name}/{str(entry).rsplit('#', 1)[-1]}", kind, path(action)))
    return tests


def names_dataset(text: str) -> bool:
    return re.search(r"(?<![\w:?$])(FROM|SERVICE)(?![\w:])", masked(text), re.I) is not None


def _ntriples(path: Path) -> str:
    import pyoxigraph as ox

    fmt = ox.RdfFormat.from_extension(path.suffix.lstrip("."))
    return "".join(f"{t.subject} {t.predicate} {t.object} .\n"
                   for t in ox.parse(path.read_bytes(), format=fmt, base_iri=path.as_uri()))


def _solutions(data: bytes, fmt: str) -> tuple[Counter, bool | None]:
    import pyoxigraph as ox

    parsed = ox.parse_query_results(data, format=getattr(ox.QueryResultsFormat, fmt))
    if isinstance(parsed, ox.QueryBoolean):
        return Counter(), bool(parsed)
    names = [v.value for v in parsed.variables]
    rows = Counter()
    for s in parsed:
        rows[frozenset((n, _term(s[n])) for n in names if s[n] is not None)] += 1
    return rows, None


NUMERIC = {f"http://www.w3.org/2001/XMLSchema#{t}" for t in ("integer", "decimal", "double", "float", "int", "long")}


def _term(term: Any) -> str:  # noqa: ANN401 - a pyoxigraph term
    """A term for comparison: blank nodes as wildcards, numbers by value (``3.21E4`` is ``32100.0E0``),
    language tags without case (as RDF compares them)."""
    import pyoxigraph as ox

    if isinstance(term, ox.BlankNode):
        return "_:"
    if isinstance(term, ox.Literal):
        if term.datatype is not None and term.datatype.value in NUMERIC:
            try:
                return f"{term.datatype.value}|{float(term.value)!r}"
            except ValueError:
                return str(term)
        if term.language:
            return f"{term.value}@{term.language.lower()}"
    return str(term)


def _graph(data: bytes, fmt: Any) -> Any:  # noqa: ANN401 - pyoxigraph format, rdflib graph
    import pyoxigraph as ox
    import rdflib

    return rdflib.Graph().parse(data="".join(f"{t.subject} {t.predicate} {t.object} .\n"
                                             for t in ox.parse(data, format=fmt)), format="nt")


def run_test(ep: Endpoint, test: Test) -> str:
    """'pass', 'fail: why' or 'not run: why'."""
    import pyoxigraph as ox
    from rdflib.compare import isomorphic

    try:
        text = test.query.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return f"not run: {exc}"
    query_url = ep.base + ep.query_path
    if test.kind != "eval":
        status, _, body = http("POST", query_url, {"Content-Type": "application/sparql-query"}, text.encode())
        ok = 200 <= status < 300 if test.kind == "syntax+" else 400 <= status < 500
        return "pass" if ok else f"fail: status {status}: {body[:100]!r}"
    if names_dataset(text):
        return "not run: the query names its own dataset (FROM) or a SERVICE"
    blocks = [f"GRAPH <{DEFAULT_GRAPH}> {{\n" + "".join(_ntriples(d) for d in test.data) + "}"]
    blocks += [f"GRAPH <{g.as_uri()}> {{\n{_ntriples(g)}}}" for g in test.graphs]
    update = "DROP ALL ;\nINSERT DATA {\n" + "\n".join(blocks) + "\n}"
    status, _, body = http("POST", ep.base + ep.update_path, {"Content-Type": "application/sparql-update"},
                           update.encode())
    if status >= 300:
        return f"not run: loading its data failed: {status} {body[:100]!r}"
    params = urllib.parse.urlencode([("default-graph-uri", DEFAULT_GRAPH)]
                                    + [("named-graph-uri", g.as_uri()) for g in test.graphs])
    expected = test.result
    if expected is None:
        return "not run: no expected result"
    graph_result = expected.suffix in (".ttl", ".nt", ".rdf")
    if graph_result and "http://www.w3.org/2001/sw/DataAccess/tests/result-set#" in expected.read_text("utf-8"):
        return "not run: the expected result is in the RDF result-set vocabulary"
    accept = "application/n-triples" if graph_result else "application/sparql-results+json"
    status, ctype, body = http("POST", f"{query_url}?{params}", {"Content-Type": "application/sparql-query",
                                                                  "Accept": accept},
                               f"BASE <{test.query.as_uri()}>\n{text}".encode())
    if status != 200:
        return f"fail: status {status}: {body[:100]!r}"
    if graph_result:
        fmt = ox.RdfFormat.from_extension(expected.suffix.lstrip("."))
        try:
            got = _graph(body, ox.RdfFormat.N_TRIPLES if "n-triples" in ctype else ox.RdfFormat.TURTLE)
        except SyntaxError:
            return f"fail: not a graph ({ctype})"
        want = _graph(_ntriples(expected).encode(), ox.RdfFormat.N_TRIPLES) if fmt else None
        return "pass" if want is not None and isomorphic(got, want) else "fail: a different graph"
    fmt = {".srx": "XML", ".srj": "JSON", ".tsv": "TSV", ".csv": "CSV"}.get(expected.suffix)
    if fmt is None:
        return f"not run: result format {expected.suffix}"
    want_rows, want_bool = _solutions(expected.read_bytes(), fmt)
    got_rows, got_bool = _solutions(body, "JSON")
    if want_bool is not None:
        return "pass" if got_bool == want_bool else f"fail: expected {want_bool}, found {got_bool}"
    return "pass" if got_rows == want_rows else f"fail: {sum(got_rows.values())} solutions, expected {sum(want_rows.values())}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", required=True, help="rdf-tests/sparql/sparql11")
    parser.add_argument("--endpoints", default="edgebert,oxigraph")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "sparql_query_tests.json"))
    args = parser.parse_args()
    tests = load_tests(Path(args.suite).resolve())
    names = [n.strip() for n in args.endpoints.split(",") if n.strip()]
    results: dict[str, dict[str, str]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            ep, proc = start(name, Path(tmp))
            try:
                results[name] = {t.name: run_test(ep, t) for t in tests}
            finally:
                proc.terminate()
                proc.wait(timeout=20)
    summary = {}
    print(f"{'tests':<28}" + "".join(f"{n:>22}" for n in names))
    for kind in ("eval", "syntax+", "syntax-"):
        mine = [t.name for t in tests if t.kind == kind]
        counts = {n: (sum(results[n][t] == "pass" for t in mine),
                      sum(results[n][t].startswith("not run") for t in mine)) for n in names}
        summary[kind] = {n: {"passed": p, "not_run": r, "total": len(mine)} for n, (p, r) in counts.items()}
        print(f"{kind + ' (' + str(len(mine)) + ')':<28}" + "".join(
            f"{f'{p} pass, {r} not run':>22}" for p, r in counts.values()))
    totals = {n: sum(v == "pass" for v in results[n].values()) for n in names}
    print(f"{'passed in all':<28}" + "".join(f"{totals[n]:>22}" for n in names))
    if len(names) == 2:
        differ = sorted(t for t in results[names[0]] if (results[names[0]][t] == "pass") != (results[names[1]][t] == "pass"))
        for t in differ:
            print(f"  differs: {t}: {names[0]} {results[names[0]][t][:80]} | {names[1]} {results[names[1]][t][:80]}")
    targets = {}
    if "edgebert" in totals and "oxigraph" in totals:
        targets["registry passes at least as many as oxigraph serve"] = totals["edgebert"] >= totals["oxigraph"]
    return finish(targets, {"suite": args.suite, "summary": summary, "results": results}, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
