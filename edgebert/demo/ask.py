"""Step 7: the registry questions the report answers."""

from __future__ import annotations

from typing import Any

from edgebert.names import local_name


def ask(registry: Any, plan_: list, iris: dict[str, str], arts: dict[str, Any], meta: Any,  # noqa: ANN401
        outdated: list[dict[str, Any]]) -> dict[str, Any]:
    """The registry questions the report answers."""
    seen, fits = set(), []
    for name, kind in plan_:
        if kind.key in seen:
            continue
        seen.add(kind.key)
        fits.append({"device": name, "kind": kind.label,
                     "matches": [m.id for m in registry.match(iris[name], latest_only=False)]})
    where: dict[str, int] = {}
    for d in registry.deployments():
        if d["device"] in iris.values() and d["status"] == "active":
            where[local_name(d["artifact"])] = where.get(local_name(d["artifact"]), 0) + 1
    devices_for = {a.manifest.artifact_id: len(registry.devices_for(a.manifest.artifact_id))
                   for a in (arts["text"], arts["sine"], arts["digits"])}
    history = registry.deployments(iris[next(n for n, k in plan_ if k.role == "sine")])
    lineage = registry.lineage(meta.manifest.artifact_id)
    return {"which_artifacts_fit": fits, "what_runs_where": where, "devices_each_artifact_fits": devices_for,
            "who_needed_an_update": [{"device": local_name(o["device"]), "current": local_name(o["current"]),
                                      "newer": local_name(o["newer"])} for o in outdated],
            "deployment_history_of_one_device": [
                {"artifact": local_name(d["artifact"]), "status": d["status"], "time": str(d["time"]),
                 "previous": local_name(d["previous"]) if d.get("previous") else None} for d in history],
            "lineage_of_meta_artifact": [{k: str(v) for k, v in row.items()} for row in lineage]}
