"""``match`` from an in-memory table of the artifacts (pure, apart from the queries that fill it).

A fleet has many devices and few artifacts (100,000 and 1,000 in benchmarks/registry.py), and
what makes an artifact fit a runtime does not depend on the device: its requirements, runtime,
precision, families, ops (every op it uses supported by its runtime) and facts. The table holds
those, read once per change of the store; ``candidates`` then answers ``queries.COMPATIBLE`` for
one device from the device's own few facts, as the SPARQL would: the same rows (tested against
``queries.MATCH``). A gateway that fits 260 of 1,000 artifacts took 32 ms to answer in SPARQL at
10,000 devices; here it is the Python of a loop over 1,000 rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from registry import queries
from registry.vocab import EB, PREFIXES, SCHEMA

# predicates whose triples change the table (those shared with devices only on an artifact subject)
ARTIFACT_ONLY = frozenset(EB + p for p in ("requiresRamBytes", "requiresFlashBytes", "runtime", "precision",
                                           "usesOp", "supportsOp", "family", "sizeBytes", "fidelityMean",
                                           "memoryMeasured"))
SHARED = frozenset((SCHEMA + "identifier", SCHEMA + "dateCreated"))

TABLE = PREFIXES + """
SELECT ?a ?ram ?flash ?runtime ?precision ?ok WHERE {
  ?a eb:requiresRamBytes ?ram ; eb:requiresFlashBytes ?flash ; eb:runtime ?runtime .
  OPTIONAL { ?a eb:precision ?precision }
  BIND(NOT EXISTS { ?a eb:usesOp ?op . FILTER NOT EXISTS { ?runtime eb:supportsOp ?op } } AS ?ok)
}
"""
FAMILIES = PREFIXES + "SELECT ?a ?family WHERE { ?a eb:requiresRamBytes ?r ; eb:family ?family }"
DEVICE = PREFIXES + """
SELECT ?dram ?dflash ?runtime ?precision ?family WHERE { BIND(<%(device)s> AS ?d)
  ?d eb:ramBytes ?dram ; eb:flashBytes ?dflash .
  OPTIONAL { ?d eb:supportsRuntime ?runtime } OPTIONAL { ?d eb:supportsPrecision ?precision }
  OPTIONAL { ?d eb:wantsFamily ?family } }
"""

Query = Callable[[str], list[dict[str, Any]]]


@dataclass
class ArtifactTable:
    rows: list[dict[str, Any]]  # one per (artifact, ram, flash, runtime, precision): the SPARQL's solutions
    families: dict[str, set[str]]
    facts: dict[str, dict[str, Any]]
    artifacts: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def read(cls, query: Query) -> ArtifactTable:
        rows = [r for r in query(TABLE) if r.get("ok") is True]
        families: dict[str, set[str]] = {}
        for r in query(FAMILIES):
            families.setdefault(r["a"], set()).add(r["family"])
        names = sorted({r["a"] for r in rows})
        facts: dict[str, dict[str, Any]] = {}
        for start in range(0, len(names), 500):
            values = " ".join(f"<{a}>" for a in names[start:start + 500])
            for row in query(queries.ARTIFACT_FACTS % {"artifacts": values}):
                facts.setdefault(row["a"], row)  # its first row, as the two-step match takes it
        return cls(rows, families, facts, frozenset(names))

    def touched_by(self, triples: Iterable[tuple[str, str]]) -> bool:
        """Whether writing triples with these (subject, predicate) pairs can change the table."""
        return any(p in ARTIFACT_ONLY or (p in SHARED and s in self.artifacts) for s, p in triples)

    def candidates(self, device: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """``queries.MATCH_CANDIDATES``'s rows for a device, given ``DEVICE``'s rows for it."""
        if not device:
            return []
        memory = {(r["dram"], r["dflash"]) for r in device}
        runtimes = {r["runtime"] for r in device if r.get("runtime") is not None}
        precisions = {r["precision"] for r in device if r.get("precision") is not None}
        wanted = {r["family"] for r in device if r.get("family") is not None}
        out, seen = [], set()
        for r in self.rows:
            if r["runtime"] not in runtimes or (r.get("precision") is not None and r["precision"] not in precisions):
                continue
            if wanted and not (wanted & self.families.get(r["a"], set())):
                continue
            if not any(_le(r["ram"], dram) and _le(r["flash"], dflash) for dram, dflash in memory):
                continue
            key = (r["a"], r["runtime"], r.get("precision"), r["ram"], r["flash"])
            if key not in seen:
                seen.add(key)
                out.append({"a": r["a"], "runtime": r["runtime"], "precision": r.get("precision"), "ram": r["ram"],
                            "flash": r["flash"]})
        return out


def _le(a: Any, b: Any) -> bool:  # noqa: ANN401 - SPARQL values
    """SPARQL's ``<=`` on numbers; anything else is a type error there, so not a match."""
    numbers = (int, float)
    return isinstance(a, numbers) and isinstance(b, numbers) and not isinstance(a, bool) \
        and not isinstance(b, bool) and a <= b


__all__ = ["ArtifactTable", "DEVICE"]
