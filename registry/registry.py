"""The Registry: one facade over a store for describing and asking about the fleet.

Every write goes the same way: build quads (``describe``), load them into a scratch in-memory
Oxigraph store, run the derivation rules there (``rules``), check what matching needs, then
send the result to the real store as ONE SPARQL Update (drop the things' graphs, insert the new
ones): the store executes it atomically, so a failed or refused write leaves it as it was.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pyoxigraph as ox

from edgebert.artifact import Artifact
from edgebert.errors import InputError, NotFoundError, StoreError
from edgebert.names import check_device_iri, local_name
from registry import queries, td_document
from registry.deployments import Deployments, parse_time
from registry.describe import (
    DescriptionError,
    artifact_iri,
    graph_for,
    manifest_quads,
    rdf_file_quads,
    read_td_file,
    tds_to_quads,
    validate_td_json,
)
from registry.match_index import DEVICE as MATCH_DEVICE
from registry.match_index import ArtifactTable
from registry.registration import DISCOVERY, Registration, now_utc, register, rfc3339, split
from registry.rules import rule_constructs
from registry.store import Store, insert_data, open_store
from registry.vocab import EB, ONTOLOGY_GRAPH, PRECISIONS, PREFIXES, RUNTIMES, XSD, data_path, is_iri, lit, runtime_ops


@dataclass(frozen=True)
class Match:
    artifact: str
    id: str | None
    runtime: str
    precision: str | None
    ram_bytes: int
    flash_bytes: int
    size_bytes: int | None
    fidelity: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _missing(row: dict[str, Any]) -> list[str]:
    """The capabilities a ``queries.CAPABILITY_GAPS`` row says its device lacks."""
    return [f"eb:{name}" for name in queries.CAPABILITIES if not row[name]]


def _ontology_sha256() -> str:
    """Which ontology and runtime op lists a store holds (reloaded when the package's differ)."""
    import hashlib

    return hashlib.sha256(data_path("edgebert.ttl").read_bytes() + data_path("runtime_ops.json").read_bytes()).hexdigest()


def _short(value: str | None) -> str | None:
    return value.removeprefix(EB) if value else value


def _validate_all(tds: list[dict]) -> None:
    for td in tds:
        validate_td_json(td, f"TD {td.get('id', '(no id)') if isinstance(td, dict) else ''}")


SHARED_TABLE_TTL_S = 5.0  # on a shared store, match sees another client's artifact writes after at most this


class Registry(Deployments):
    def __init__(self, store: Store) -> None:
        self.store = store
        self._table: ArtifactTable | None = None  # match's artifact table (match_index), and the store
        self._table_generation = -1  # generation it was read at
        self._table_off = False
        self._table_read = 0.0  # time.monotonic() it was read at
        if not self.store.query(PREFIXES + f'ASK {{ GRAPH <{ONTOLOGY_GRAPH}> {{ eb:ontology eb:sha256 '
                                           f'"{_ontology_sha256()}" }} }}')[0]["ask"]:
            self._load_ontology()  # a new store, or one written with an older ontology or op list

    @classmethod
    def open(cls, spec: str) -> Registry:
        return cls(open_store(spec))

    # ---------------------------------------------------------------- writes
    def _load_ontology(self) -> None:
        onto = list(ox.parse(data_path("edgebert.ttl").read_bytes(), format=ox.RdfFormat.TURTLE))
        g = ox.NamedNode(ONTOLOGY_GRAPH)
        quads = [ox.Quad(q.subject, q.predicate, q.object, g) for q in onto]
        for runtime, ops in runtime_ops().items():
            quads += [ox.Quad(ox.NamedNode(EB + runtime), ox.NamedNode(EB + "supportsOp"), ox.Literal(op), g)
                      for op in ops]
        quads.append(ox.Quad(ox.NamedNode(EB + "ontology"), ox.NamedNode(EB + "sha256"), ox.Literal(_ontology_sha256()),
                             g))
        self.store.update(f"DROP SILENT GRAPH <{ONTOLOGY_GRAPH}> ;\n" + insert_data(quads))

    def _write(self, quads: list[ox.Quad], check_devices: bool = True, shacl: bool = False,
               td_shapes: bool = False) -> list[str]:
        """Derive, check and atomically write quads; returns the graphs written."""
        scratch = ox.Store()  # the quads as they are, queried as the union of their graphs
        scratch.extend(quads)
        new: list[ox.Triple] = []  # what the rules add, in order (a rule sees what the ones before added)
        for construct in rule_constructs():
            fresh = [ox.Quad(t.subject, t.predicate, t.object, ox.DefaultGraph())
                     for t in scratch.query(construct, use_default_graph_as_union=True)]
            fresh = [q for q in dict.fromkeys(fresh)
                     if next(scratch.quads_for_pattern(q.subject, q.predicate, q.object, None), None) is None]
            scratch.extend(fresh)
            new += [ox.Triple(q.subject, q.predicate, q.object) for q in fresh]
        owner: dict[str, ox.NamedNode] = {}
        for q in quads:
            if not isinstance(q.graph_name, ox.DefaultGraph):
                owner.setdefault(str(q.subject), q.graph_name)
        if check_devices:
            self._check_devices(scratch)
        if shacl:
            from registry.validate import shacl_check

            shacl_check(scratch, with_td_shapes=td_shapes)
        derived = [ox.Quad(t.subject, t.predicate, t.object, owner[str(t.subject)]) for t in new
                   if str(t.subject) in owner]
        graphs = sorted({str(q.graph_name.value) for q in quads if isinstance(q.graph_name, ox.NamedNode)})
        before, table = getattr(self.store, "generation", None), self._table
        keep = table is not None and before == self._table_generation and not table.touched_by(
            (getattr(q.subject, "value", ""), q.predicate.value) for q in quads + derived)
        self.store.replace_graphs(graphs, quads + derived)
        if keep and before is not None and getattr(self.store, "generation", None) == before + 1:
            self._table_generation = before + 1  # a write of devices only: the artifact table still holds
        return graphs

    @staticmethod
    def _check_devices(scratch: ox.Store) -> None:
        """Device IRIs usable as MQTT ids and capability values the registry knows. The capabilities
        themselves are optional: a Thing without them is stored and listed, and matching says which
        it lacks (``unknown_capabilities``)."""
        for row in scratch.query(PREFIXES + "SELECT ?d WHERE { ?d a eb:Device }", use_default_graph_as_union=True):
            try:
                check_device_iri(row["d"].value)
            except InputError as exc:
                raise DescriptionError(str(exc)) from None
        known = {f"<{EB}{r}>" for r in RUNTIMES} | {f"<{EB}{p}>" for p in PRECISIONS}
        for prop in ("supportsRuntime", "supportsPrecision"):
            for row in scratch.query(PREFIXES + f"SELECT ?d ?v WHERE {{ ?d eb:{prop} ?v }}",
                                     use_default_graph_as_union=True):
                if str(row["v"]) not in known:
                    raise DescriptionError(f"device {row['d'].value}: expected eb:{prop} among "
                                           f"{', '.join(RUNTIMES if 'Runtime' in prop else PRECISIONS)}, "
                                           f"found {row['v']}")

    def add_tds(self, tds: list[dict], validate: bool = True, shacl: bool | None = None,
                now: datetime | None = None) -> list[str]:
        """Add or replace devices given as WoT TD 1.1 JSON objects; returns their IRIs.

        ``validate`` checks each TD against the official TD 1.1 JSON Schema; ``shacl`` (default:
        for up to 100 TDs at a time) also runs the TD and the registry's SHACL shapes. Each TD's
        registration (``registration``: created, modified, expires from the TD's ``ttl`` or
        ``expires``) is recorded with it, at ``now``.
        """
        if validate:
            _validate_all(tds)
        ids, quads = self._prepare_tds(tds, now or now_utc())
        shacl = len(tds) <= 100 if shacl is None else shacl
        self._write(quads, shacl=shacl, td_shapes=True)
        return ids

    def _prepare_tds(self, tds: list[dict], now: datetime) -> tuple[list[str], list[ox.Quad]]:
        """The TDs' ids and quads, with their registrations (read before, written with them)."""
        split_tds = [split(td) for td in tds]
        docs = [doc for doc, _ in split_tds]
        if len({d["id"] for d in docs}) != len(docs):
            raise DescriptionError("TDs: expected each id once in one write, found an id twice")
        previous = self.registrations([d["id"] for d in docs])
        quads = tds_to_quads(docs)  # (templates fill most TDs in Python: two threads would only contend)
        for doc, client in split_tds:
            quads += _registration_quads(doc["id"], register(client, previous.get(doc["id"]), now))
        return [d["id"] for d in docs], quads

    def bulk_add_tds(self, tds: list[dict], chunk: int = 1000, validate: bool = True,
                     now: datetime | None = None) -> list[str]:
        """Many TDs (a fleet's first import, say) in writes of ``chunk``, each atomic like
        ``add_tds`` (device checks and derived facts per chunk; no SHACL). Every TD is checked against
        the TD schema, and ids for uniqueness, before anything is written; the JSON-LD parse of the
        next chunk runs while this one is written. A chunk that fails stops the import, and the
        error says how many TDs were written before it."""
        if validate:
            _validate_all(tds)
        ids = [td.get("id") if isinstance(td, dict) else None for td in tds]
        if len(set(ids)) != len(ids):
            raise DescriptionError("TDs: expected each id once in one import, found an id twice")
        now = now or now_utc()
        chunks = [tds[i:i + chunk] for i in range(0, len(tds), max(1, chunk))]
        written: list[str] = []
        with ThreadPoolExecutor(1, thread_name_prefix="edgebert-ingest") as pool:
            ahead = pool.submit(self._prepare_tds, chunks[0], now) if chunks else None
            for k in range(len(chunks)):
                assert ahead is not None
                try:
                    chunk_ids, quads = ahead.result()
                    ahead = pool.submit(self._prepare_tds, chunks[k + 1], now) if k + 1 < len(chunks) else None
                    self._write(quads, shacl=False)
                except DescriptionError as exc:
                    raise DescriptionError(f"{exc} (in TDs {k * chunk + 1}-{k * chunk + len(chunks[k])}; "
                                           f"the {len(written)} before them are written)") from None
                written += chunk_ids
        return written

    def registrations(self, things: list[str]) -> dict[str, Registration]:
        """The directory's registration information of these Things (those that have one)."""
        out: dict[str, Registration] = {}
        for start in range(0, len(things), 1000):
            values = " ".join(f"<{t}>" for t in things[start:start + 1000] if is_iri(t))
            if not values:
                continue
            for r in self.store.query(PREFIXES + f"""PREFIX disc: <{DISCOVERY}>
                SELECT ?t ?created ?modified ?expires ?ttl WHERE {{ VALUES ?t {{ {values} }}
                ?t disc:hasRegistrationInformation ?r . ?r disc:dateCreated ?created .
                OPTIONAL {{ ?r disc:dateModified ?modified }}
                OPTIONAL {{ ?r disc:expires ?expires }} OPTIONAL {{ ?r disc:ttl ?ttl }} }}"""):
                created = parse_time(r["created"])  # never modified since: no disc:dateModified (_registration_quads)
                out[r["t"]] = Registration(created, parse_time(r["modified"]) if r["modified"] else created,
                                           parse_time(r["expires"]) if r["expires"] else None,
                                           float(r["ttl"]) if r["ttl"] is not None else None)
        return out

    def expired_things(self, now: datetime | None = None) -> list[str]:
        """Things whose registration expired before ``now`` (the directory purges them)."""
        at = rfc3339(now or now_utc())
        return [r["t"] for r in self.store.query(PREFIXES + f"""PREFIX disc: <{DISCOVERY}>
            SELECT DISTINCT ?t WHERE {{ ?t disc:hasRegistrationInformation ?r . ?r disc:expires ?e .
            FILTER(?e < "{at}"^^xsd:dateTime) }} ORDER BY ?t""")]

    def add_device_file(self, path: str | Path) -> list[str]:
        """A TD JSON-LD file (one TD or a list) or an RDF file (Turtle…) of devices."""
        tds, quads = read_td_file(Path(path))
        if tds:
            return self.add_tds(tds, validate=False)
        self._write(quads, shacl=True)
        return [r["d"] for r in self._devices_in(quads)]

    def _devices_in(self, quads: list[ox.Quad]) -> list[dict]:
        graphs = {str(q.graph_name.value) for q in quads if isinstance(q.graph_name, ox.NamedNode)}
        values = " ".join(f"<{g}>" for g in graphs)
        return self.store.query(PREFIXES + f"SELECT DISTINCT ?d WHERE {{ VALUES ?g {{ {values} }} "
                                           "GRAPH ?g { ?d a eb:Device } }")

    def import_file(self, path: str | Path) -> int:
        """Import any RDF file as is (S3N / SeLoC-ML descriptions take part in matching)."""
        quads = rdf_file_quads(Path(path))
        self._write(quads)
        return len(quads)

    def add_artifact(self, artifact_dir: str | Path) -> str:
        """Add an artifact from its directory; every file's sha256 is verified first."""
        art = Artifact.load(artifact_dir, verify=True)
        self._write(manifest_quads(art), shacl=True)
        return artifact_iri(art.manifest.artifact_id)

    def add_artifacts(self, artifacts: list[Artifact]) -> list[str]:
        quads = [q for a in artifacts for q in manifest_quads(a)]
        self._write(quads)
        return [artifact_iri(a.manifest.artifact_id) for a in artifacts]






    def fleet_devices(self, fleet: str | None = None) -> list[dict[str, Any]]:
        """Devices (IRI, fleet IRIs), optionally only members of a fleet given by IRI or its last name part."""
        rows = self.store.query(PREFIXES + """SELECT ?d (GROUP_CONCAT(DISTINCT STR(?f); separator=" ") AS ?fleets)
            WHERE { ?d a eb:Device . OPTIONAL { ?d eb:memberOf ?f } } GROUP BY ?d ORDER BY ?d""")
        out = [{"device": r["d"], "fleets": (r["fleets"] or "").split()} for r in rows]
        if fleet is None:
            return out
        return [r for r in out if any(f == fleet or local_name(f) == fleet
                                      for f in r["fleets"])]

    def artifact_location(self, artifact: str) -> str | None:
        """Where the artifact's directory was registered from (dcat:downloadURL), if recorded."""
        rows = self.store.query(PREFIXES + f"SELECT ?u WHERE {{ <{artifact}> dcat:downloadURL ?u }} LIMIT 1")
        return str(rows[0]["u"]) if rows else None

    def rdflib_dataset(self):  # noqa: ANN201 - rdflib.Dataset; imported lazily
        """The same data through rdflib's API (Oxigraph store via oxrdflib, or a remote endpoint)."""
        import rdflib

        from registry.store import OxigraphStore

        if isinstance(self.store, OxigraphStore):
            from oxrdflib import OxigraphStore as RdflibOxigraph

            self._table_off = True  # writes through rdflib are not counted: match asks the store each time

            return rdflib.Dataset(store=RdflibOxigraph(store=self.store._store), default_union=True)
        from rdflib.plugins.stores.sparqlstore import SPARQLUpdateStore

        remote = SPARQLUpdateStore(self.store.url, self.store.update_url)  # type: ignore[attr-defined]
        return rdflib.Dataset(store=remote, default_union=True)

    def delete_thing(self, thing: str) -> None:
        target = self.resolve(thing)
        self.store.update(f"DROP GRAPH <{graph_for(target)}>")

    # ---------------------------------------------------------------- reads
    def resolve(self, ref: str) -> str:
        """An IRI for a thing given its IRI or its schema:identifier."""
        safe_iri = ref if is_iri(ref) else "urn:x-none"
        rows = self.store.query(queries.RESOLVE % {"iri": safe_iri, "literal": lit(ref)})
        if not rows:
            raise NotFoundError(f"{ref}: expected a device or artifact known to the registry, found none")
        return str(rows[0]["thing"])

    def match(self, device: str, latest_only: bool = False) -> list[Match]:
        """Compatible artifacts, best first (fidelity, then size); ``latest_only`` keeps only the newest
        compatible version of each family (what provisioning installs)."""
        d = self.resolve(device)
        rows = self._match_rows(d)
        if latest_only:
            newest: dict[str, datetime] = {}
            for r in rows:
                if r.get("family") and r.get("created"):
                    created = parse_time(r["created"])
                    newest[r["family"]] = max(newest.get(r["family"], created), created)
            rows = [r for r in rows if not r.get("family") or not r.get("created")
                    or parse_time(r["created"]) == newest[r["family"]]]
        return [Match(r["artifact"], r["id"], _short(r["runtime"]), _short(r["precision"]), r["ram"], r["flash"],
                      r["size"], r["fidelity"]) for r in rows]

    def _artifact_table(self) -> ArtifactTable | None:
        """The artifacts' table for ``match`` (``match_index``), read again after any write through
        this registry that can change it, and on a store other clients also write to (a remote
        endpoint) once it is ``SHARED_TABLE_TTL_S`` old."""
        generation = getattr(self.store, "generation", None)
        if generation is None or self._table_off:
            return None
        expired = getattr(self.store, "shared", False) and time.monotonic() - self._table_read > SHARED_TABLE_TTL_S
        if self._table is None or self._table_generation != generation or expired:
            self._table, self._table_generation = ArtifactTable.read(self.store.query), generation
            self._table_read = time.monotonic()
        return self._table

    def _match_rows(self, device: str) -> list[dict[str, Any]]:
        """``queries.MATCH``'s rows, in its order: from the artifact table and the device's own facts
        on the embedded store, from two queries on a remote one (see ``queries.MATCH_CANDIDATES``)."""
        table = self._artifact_table()
        facts: dict[str, dict[str, Any]] = {}
        if table is not None:
            candidates = table.candidates(self.store.query(MATCH_DEVICE % {"device": device}))
            facts = table.facts
        else:
            candidates = self.store.query(queries.MATCH_CANDIDATES % {"device": device})
            for start in range(0, len(candidates), 500):
                values = " ".join(f"<{c['a']}>" for c in candidates[start:start + 500])
                for row in self.store.query(queries.ARTIFACT_FACTS % {"artifacts": values}):
                    facts.setdefault(row["a"], row)  # one row per artifact (its first, like DISTINCT over MATCH's)
        if not candidates:
            return []
        rows = []
        for c in candidates:
            f = facts.get(c["a"], {})
            rows.append({"artifact": c["a"], "id": f.get("id"), "runtime": c["runtime"], "precision": c["precision"],
                         "ram": c["ram"], "flash": c["flash"], "size": f.get("size"), "fidelity": f.get("fidelity"),
                         "family": f.get("family"), "created": f.get("created"), "measured": f.get("measured")})

        def order(r: dict[str, Any]) -> tuple:
            fidelity = r["fidelity"] if r["fidelity"] is not None else -1.0
            size = r["size"] if r["size"] is not None else r["flash"]
            return (0 if r["measured"] is not None else 1, -fidelity, size, r["artifact"], str(r["runtime"]),
                    str(r["precision"]))

        return sorted(rows, key=order)

    def unknown_capabilities(self, device: str) -> list[str]:
        """The capabilities matching needs that the device's description does not state (empty when
        it can be matched): ``eb:ramBytes``, ``eb:flashBytes``, ``eb:supportsRuntime``,
        ``eb:supportsPrecision``."""
        rows = self.store.query(queries.CAPABILITY_GAPS % {"only": f"VALUES ?d {{ <{self.resolve(device)}> }}"})
        return _missing(rows[0]) if rows else []

    def unmatchable_devices(self) -> list[dict[str, Any]]:
        """Devices no artifact can be matched to, for want of a capability their description does not state."""
        return [{"device": r["d"], "unknown_capabilities": _missing(r)}
                for r in self.store.query(queries.CAPABILITY_GAPS % {"only": ""})]

    def devices_for(self, artifact: str) -> list[dict[str, Any]]:
        a = self.resolve(artifact)
        return [{"device": r["device"], "id": r["id"], "ram_bytes": r["dram"], "flash_bytes": r["dflash"]}
                for r in self.store.query(queries.DEVICES_FOR % {"artifact": a})]



    def lineage(self, artifact: str) -> list[dict[str, Any]]:
        return self.store.query(queries.LINEAGE % {"artifact": self.resolve(artifact)})

    def query(self, sparql: str) -> list[dict[str, Any]]:
        return self.store.query(sparql)

    def get_td(self, thing: str) -> dict:
        """The device as a TD 1.1 JSON-LD document (the stored TD, or one built from its RDF)."""
        from registry.td_export import device_td

        return device_td(self.query, self.resolve(thing))

    def get_tds(self, things: list[str]) -> dict[str, dict]:
        """``get_td`` of many Things (device IRIs): their stored TDs in one query per 1,000, built
        from RDF only for those that have none."""
        from registry.td_export import with_eb_prefix

        out: dict[str, dict] = {}
        for start in range(0, len(things), 1000):
            values = " ".join(f"<{t}>" for t in things[start:start + 1000] if is_iri(t))
            if values:
                for r in self.store.query(PREFIXES + f"SELECT ?t ?doc (STR(DATATYPE(?doc)) AS ?type) WHERE "
                                                     f"{{ VALUES ?t {{ {values} }} ?t eb:tdDocument ?doc }}"):
                    out.setdefault(r["t"], with_eb_prefix(td_document.decode(r["doc"], r["type"])))
        for t in things:
            if t not in out:
                out[t] = self.get_td(t)
        return out

    def list_devices(self, offset: int = 0, limit: int = 100) -> list[str]:
        rows = self.store.query(PREFIXES + f"SELECT ?d WHERE {{ ?d a eb:Device }} ORDER BY ?d "
                                           f"OFFSET {int(offset)} LIMIT {int(limit)}")
        return [r["d"] for r in rows]

    def collection_version(self) -> str:
        """A tag of the TD collection's state (the Things and their latest modification): it changes
        whenever a Thing is added, replaced or removed through the registry."""
        import hashlib

        row = self.store.query(PREFIXES + f"""PREFIX disc: <{DISCOVERY}>
            SELECT (COUNT(?d) AS ?n) (MAX(STR(?m)) AS ?last) WHERE {{ ?d a eb:Device
            OPTIONAL {{ ?d disc:hasRegistrationInformation ?r . ?r disc:dateCreated ?c
                       OPTIONAL {{ ?r disc:dateModified ?changed }} BIND(COALESCE(?changed, ?c) AS ?m) }} }}""")[0]
        return hashlib.sha256(f"{row['n']}|{row['last']}".encode()).hexdigest()[:16]

    def count_devices(self) -> int:
        return int(self.store.query(PREFIXES + "SELECT (COUNT(?d) AS ?n) WHERE { ?d a eb:Device }")[0]["n"])

    def close(self) -> None:
        self.store.close()

    def dump(self, path: str | Path) -> None:
        self.store.dump(Path(path))

    def restore(self, path: str | Path) -> None:
        if not Path(path).is_file():
            raise NotFoundError(f"{path}: expected a dump file, found no such file")
        self.store.restore(Path(path))


def _registration_quads(thing: str, reg: Registration) -> list[ox.Quad]:
    g, t, r = ox.NamedNode(graph_for(thing)), ox.NamedNode(thing), ox.BlankNode()

    def when(value: datetime) -> ox.Literal:
        return ox.Literal(rfc3339(value), datatype=ox.NamedNode(XSD + "dateTime"))

    # A device is about 24 quads, each indexed six ways (its own named graph), so each one left out
    # is 4% of a fleet's store. Left out: rdf:type disc:RegistrationInformation (the Discovery
    # ontology's range of hasRegistrationInformation says it; its JSON-LD context gives no type) and
    # disc:dateModified while the TD has not been modified since it was created (read as `created`).
    quads = [ox.Quad(t, ox.NamedNode(DISCOVERY + "hasRegistrationInformation"), r, g),
             ox.Quad(r, ox.NamedNode(DISCOVERY + "dateCreated"), when(reg.created), g)]
    if reg.modified != reg.created:
        quads.append(ox.Quad(r, ox.NamedNode(DISCOVERY + "dateModified"), when(reg.modified), g))
    if reg.expires is not None:
        quads.append(ox.Quad(r, ox.NamedNode(DISCOVERY + "expires"), when(reg.expires), g))
    if reg.ttl is not None:
        quads.append(ox.Quad(r, ox.NamedNode(DISCOVERY + "ttl"), ox.Literal(repr(float(reg.ttl)),
                                                                             datatype=ox.NamedNode(XSD + "double")), g))
    return quads


def open_registry(spec: str) -> Registry:
    """``memory`` | ``DIR`` (embedded Oxigraph) | ``http(s)://…/query`` (SPARQL 1.1 endpoint)."""
    return Registry.open(spec)


__all__ = ["Match", "Registry", "StoreError", "open_registry"]
