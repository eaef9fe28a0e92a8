"""Deployments in the registry: what runs where, recorded once per device report, and which
devices run an artifact that has a newer compatible version (a mixin of ``Registry``: it uses
the store and ``resolve``)."""

from __future__ import annotations

import hashlib
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from edgebert.errors import InputError
from registry import queries
from registry.vocab import PREFIXES, is_iri, lit

if TYPE_CHECKING:
    from registry.store import Store

DEPLOYMENT_GRAPH = "urn:edgebert:graph:deployments"
STATUSES = ("pending", "active", "failed", "rolled-back", "superseded")


def parse_time(value: str) -> datetime:
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


class Deployments:
    store: Store

    def resolve(self, ref: str) -> str:  # pragma: no cover - provided by Registry
        raise NotImplementedError

    def record_deployment(self, device: str, artifact: str, status: str = "active",
                          when: str | None = None) -> str:
        """Record that ``artifact`` was put on ``device``; an active one supersedes the previous."""
        if status not in STATUSES:
            raise InputError(f"status: expected one of {', '.join(STATUSES)}, found {status!r}")
        d, a = self.resolve(device), self.resolve(artifact)
        when = when or datetime.now(timezone.utc).isoformat(timespec="microseconds")
        dep = f"urn:edgebert:deployment:{time.time_ns()}"
        prev = self.store.query(PREFIXES + f"""SELECT ?dep ?a WHERE {{ ?dep a eb:Deployment ; eb:device <{d}> ;
                                               eb:status "active" ; eb:artifact ?a }}""")
        self._insert_deployment(dep, d, a, status, when, str(prev[0]["a"]) if prev else None)
        return dep

    def _insert_deployment(self, dep: str, device: str, artifact: str, status: str, when: str,
                           previous: str | None) -> None:
        """One deployment, in one update; an active one marks the device's earlier active one superseded."""
        prev = f"; eb:previousArtifact <{previous}>" if previous else ""
        supersede = "" if status != "active" else f"""
          DELETE {{ GRAPH <{DEPLOYMENT_GRAPH}> {{ ?old eb:status "active" }} }}
          INSERT {{ GRAPH <{DEPLOYMENT_GRAPH}> {{ ?old eb:status "superseded" }} }}
          WHERE {{ GRAPH <{DEPLOYMENT_GRAPH}> {{ ?old eb:device <{device}> ; eb:status "active" }} }} ;"""
        self.store.update(PREFIXES + supersede + f"""
          INSERT DATA {{ GRAPH <{DEPLOYMENT_GRAPH}> {{
            <{dep}> a eb:Deployment, prov:Activity ; eb:device <{device}> ; eb:artifact <{artifact}> ;
              eb:status {lit(status)} ; prov:startedAtTime "{when}"^^xsd:dateTime {prev} . }} }}""")

    def record_deployments(self, pairs: list[tuple[str, str]], status: str = "active") -> int:
        """Bulk form of ``record_deployment`` for IRIs (one atomic update); returns the count."""
        if status not in STATUSES:
            raise InputError(f"status: expected one of {', '.join(STATUSES)}, found {status!r}")
        bad = next((x for pair in pairs for x in pair if not is_iri(x)), None)
        if bad is not None:
            raise InputError(f"deployment: expected device and artifact IRIs, found {bad!r}")
        when = datetime.now(timezone.utc).isoformat(timespec="microseconds")
        stamp = time.time_ns()
        values = " ".join(f"<{d}>" for d, _ in pairs)
        supersede = "" if status != "active" else f"""
          DELETE {{ GRAPH <{DEPLOYMENT_GRAPH}> {{ ?old eb:status "active" }} }}
          INSERT {{ GRAPH <{DEPLOYMENT_GRAPH}> {{ ?old eb:status "superseded" }} }}
          WHERE {{ VALUES ?d {{ {values} }} GRAPH <{DEPLOYMENT_GRAPH}> {{ ?old eb:device ?d ; eb:status "active" }} }} ;"""
        body = "\n".join(
            f'<urn:edgebert:deployment:{stamp}-{i}> a eb:Deployment ; eb:device <{d}> ; eb:artifact <{a}> ; '
            f'eb:status {lit(status)} ; prov:startedAtTime "{when}"^^xsd:dateTime .' for i, (d, a) in enumerate(pairs))
        self.store.update(PREFIXES + supersede + f"INSERT DATA {{ GRAPH <{DEPLOYMENT_GRAPH}> {{ {body} }} }}")
        return len(pairs)

    def record_outcome(self, key: str, device: str, artifact: str, status: str, when: str,
                       previous: str | None = None) -> bool:
        """Record one provisioning outcome reported by a device, once: ``key`` (the device's own id
        for that activation or refusal) names the deployment, so a replayed report — a re-run, a
        retained status seen again — writes nothing. Returns True if it was new."""
        if status not in STATUSES:
            raise InputError(f"status: expected one of {', '.join(STATUSES)}, found {status!r}")
        bad = next((x for x in (device, artifact, previous) if x is not None and not is_iri(x)), None)
        if bad is not None:
            raise InputError(f"deployment: expected device and artifact IRIs, found {bad!r}")
        try:
            parse_time(when)
        except (ValueError, TypeError):
            raise InputError(f"deployment time: expected ISO 8601, found {str(when)[:60]!r}") from None
        dep = "urn:edgebert:deployment:" + hashlib.sha256(f"{device}\n{key}".encode()).hexdigest()[:32]
        if self.store.query(f"ASK {{ GRAPH <{DEPLOYMENT_GRAPH}> {{ <{dep}> ?p ?o }} }}")[0]["ask"]:
            return False
        self._insert_deployment(dep, device, artifact, status, when, previous)
        return True

    def active_artifact(self, device: str) -> str | None:
        """The artifact the registry records as active on ``device`` (an IRI), if any."""
        rows = self.store.query(PREFIXES + f"""SELECT ?a WHERE {{ ?dep a eb:Deployment ; eb:device <{device}> ;
                                               eb:status "active" ; eb:artifact ?a }} LIMIT 1""")
        return str(rows[0]["a"]) if rows else None

    def deployments(self, device: str | None = None) -> list[dict[str, Any]]:
        flt = f"FILTER(?device = <{self.resolve(device)}>)" if device else ""
        return self.store.query(queries.DEPLOYMENTS % {"filter": flt})

    def outdated(self) -> list[dict[str, Any]]:
        """Devices whose active artifact has a newer version (same ``eb:family``, later
        ``schema:dateCreated``) that fits them; the newest such version for each device."""
        caps = {r["device"]: (r["ram"], r["flash"], set(r["runtimes"].split()), set(r["precisions"].split()))
                for r in self.store.query(queries.DEPLOYED_DEVICE_CAPABILITIES)}
        versions: dict[str, list[tuple[datetime, dict[str, Any]]]] = {}
        for r in self.store.query(queries.RUNNABLE_VERSIONS):
            versions.setdefault(r["family"], []).append((parse_time(r["created"]), r))
        for family in versions.values():
            family.sort(key=lambda v: v[0], reverse=True)  # newest first
        out = []
        for dep in self.store.query(queries.ACTIVE_DEPLOYMENTS):
            if dep["device"] not in caps:
                continue
            ram, flash, runtimes, precisions = caps[dep["device"]]
            since = parse_time(dep["created"])
            for created, a in versions.get(dep["family"], []):
                if created <= since:
                    break
                if (a["ram"] <= ram and a["flash"] <= flash and a["runtime"] in runtimes
                        and (a["precision"] is None or a["precision"] in precisions)):
                    out.append({"device": dep["device"], "current": dep["current"], "newer": a["artifact"],
                                "created": a["created"]})
                    break
        return sorted(out, key=lambda r: r["device"])
