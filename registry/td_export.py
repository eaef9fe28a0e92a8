"""Export a device as a W3C WoT TD 1.1 JSON-LD document that passes the official JSON Schema."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from registry import td_document
from registry.describe import validate_td_json
from registry.vocab import EB, PREFIXES, TD_CONTEXT_URLS

Query = Callable[[str], list[dict[str, Any]]]  # SPARQL in, rows out (``Registry.query`` or a store's)

_TYPES = {"number", "integer", "boolean", "string", "object", "array", "null"}


def _uses_eb(node: Any) -> bool:  # noqa: ANN401 - any JSON value
    if isinstance(node, dict):
        return any(str(k).startswith("eb:") or _uses_eb(v) for k, v in node.items() if k != "@context")
    if isinstance(node, list):
        return any(_uses_eb(v) for v in node)
    return isinstance(node, str) and node.startswith("eb:")


def _defines_eb(context: Any) -> bool:  # noqa: ANN401 - a JSON-LD @context
    items = context if isinstance(context, list) else [context]
    return any(isinstance(i, dict) and "eb" in i for i in items)


def with_eb_prefix(td: dict[str, Any]) -> dict[str, Any]:
    """The TD with ``eb`` declared in its ``@context`` when it uses ``eb:`` terms: the registry reads
    an undeclared ``eb:`` as its namespace on import, so the export says so and means the same RDF
    to any JSON-LD processor."""
    if not _uses_eb(td) or _defines_eb(td.get("@context")):
        return td
    context = td.get("@context")
    items = list(context) if isinstance(context, list) else [context] if context is not None else []
    return {**td, "@context": [*items, {"eb": EB}]}


def device_td(query: Query, device: str) -> dict[str, Any]:
    stored = query(PREFIXES + f"SELECT ?doc (STR(DATATYPE(?doc)) AS ?type) WHERE {{ <{device}> eb:tdDocument ?doc }} "
                              "LIMIT 1")
    if stored:
        return with_eb_prefix(td_document.decode(stored[0]["doc"], stored[0]["type"]))
    facts = query(PREFIXES + f"""SELECT ?title ?desc ?ram ?flash ?arch ?clock WHERE {{
        <{device}> eb:ramBytes ?ram ; eb:flashBytes ?flash .
        OPTIONAL {{ <{device}> td:title ?title }} OPTIONAL {{ <{device}> td:description ?desc }}
        OPTIONAL {{ <{device}> eb:cpuArchitecture ?arch }} OPTIONAL {{ <{device}> eb:cpuClockHz ?clock }} }} LIMIT 1""")
    if not facts:
        from edgebert.errors import DescriptionError

        raise DescriptionError(f"device {device}: expected memory figures to export a TD, found none")
    f = facts[0]
    listed = {key: sorted({r["v"].removeprefix(EB) for r in query(
        PREFIXES + f"SELECT ?v WHERE {{ <{device}> eb:{key} ?v }}")}) for key in
        ("supportsRuntime", "supportsPrecision", "sensor", "accelerator")}
    td: dict[str, Any] = {
        "@context": [TD_CONTEXT_URLS[0], {"eb": EB}],
        "id": device,
        "title": f["title"] or device.rsplit("/", 1)[-1],
        "securityDefinitions": {"nosec_sc": {"scheme": "nosec"}},
        "security": "nosec_sc",
        "eb:ramBytes": f["ram"],
        "eb:flashBytes": f["flash"],
        "eb:supportsRuntime": [{"@id": f"eb:{r}"} for r in listed["supportsRuntime"]],
        "eb:supportsPrecision": [{"@id": f"eb:{p}"} for p in listed["supportsPrecision"]],
    }
    if f["desc"]:
        td["description"] = f["desc"]
    if f["arch"]:
        td["eb:cpuArchitecture"] = f["arch"]
    if f["clock"]:
        td["eb:cpuClockHz"] = f["clock"]
    if listed["sensor"]:
        td["eb:sensor"] = listed["sensor"]
    if listed["accelerator"]:
        td["eb:accelerator"] = listed["accelerator"]
    props: dict[str, Any] = {}
    for r in query(PREFIXES + f"""SELECT ?name ?title ?type ?href ?desc WHERE {{
            <{device}> td:hasPropertyAffordance ?p .
            OPTIONAL {{ ?p td:name ?name }} OPTIONAL {{ ?p td:title ?title }} OPTIONAL {{ ?p td:type ?type }}
            OPTIONAL {{ ?p td:description ?desc }}
            OPTIONAL {{ ?p td:hasForm ?form . OPTIONAL {{ ?form td:href ?href }} OPTIONAL {{ ?form hctl:hasTarget ?href }} }}
        }}"""):
        name = r["name"] or r["title"] or f"property{len(props)}"
        if name in props:
            continue
        prop: dict[str, Any] = {"forms": [{"href": r["href"] or f"{device}/{name}"}]}
        if r["type"] in _TYPES:
            prop["type"] = r["type"]
        if r["desc"]:
            prop["description"] = r["desc"]
        props[name] = prop
    if props:
        td["properties"] = props
    validate_td_json(td, f"exported TD of {device}")
    return td
