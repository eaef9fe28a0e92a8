"""The directory's own Thing Description, served at ``/.well-known/wot`` (WoT Discovery 1.0).

Pure: a TD 1.1 of type ``ThingDirectory`` whose affordances are the endpoints this server has —
the things API (list, create, retrieve, update, partial update, delete), JSONPath and SPARQL
search, and the SSE notifications — so that a WoT client can drive the directory from it alone.
"""

from __future__ import annotations

from typing import Any

from registry.registration import DISCOVERY_CONTEXT

TD_CONTEXT = "https://www.w3.org/2022/wot/td/v1.1"
_ID = {"id": {"title": "Thing id", "type": "string", "format": "iri-reference"}}
_TD = {"description": "a Thing Description (JSON)", "type": "object"}


def _form(href: str, method: str, op: str, **extra: Any) -> dict[str, Any]:  # noqa: ANN401 - JSON values
    return {"href": href, "htv:methodName": method, "op": op, **extra}


def _action(title: str, href: str, method: str, uri_vars: dict[str, Any] | None = None,
            content_type: str | None = None, input_: dict[str, Any] | None = None,
            output: dict[str, Any] | None = None, idempotent: bool = False) -> dict[str, Any]:
    form = _form(href, method, "invokeaction")
    if content_type:
        form["contentType"] = content_type
    action: dict[str, Any] = {"title": title, "forms": [form], "idempotent": idempotent, "safe": method == "GET"}
    if uri_vars:
        action["uriVariables"] = uri_vars
    if input_:
        action["input"] = input_
    if output:
        action["output"] = output
    return action


def _event(kind: str, diff: bool) -> dict[str, Any]:
    href = f"/events/{kind}" + ("{?diff}" if diff else "")
    event: dict[str, Any] = {
        "title": f"a Thing's {kind.removeprefix('thing_')} notification (Server-Sent Events)",
        "data": {"description": "the TD's id; with diff=true the whole TD (created) or its JSON Merge Patch "
                                "(updated)", "type": "object"},
        "forms": [_form(href, "GET", "subscribeevent", subprotocol="sse", contentType="text/event-stream")]}
    if diff:
        event["uriVariables"] = {"diff": {"type": "boolean"}}
    return event


def directory_td(base: str, title: str = "EdgeBERT registry") -> dict[str, Any]:
    """The directory's TD; ``base`` is the URL clients reached it at (hrefs are relative to it)."""
    query = {"query": {"type": "string"}}
    return {
        "@context": [TD_CONTEXT, DISCOVERY_CONTEXT],
        "@type": "ThingDirectory",
        "id": "urn:edgebert:registry:directory",
        "title": title,
        "description": "WoT Thing Description Directory of an EdgeBERT fleet: devices (TDs), artifacts and "
                       "deployments in one RDF store, searchable by SPARQL 1.1 and JSONPath",
        "version": {"instance": "1.0.0"},
        "base": base.rstrip("/") + "/",
        "securityDefinitions": {"bearer_sc": {"scheme": "bearer", "in": "header", "name": "Authorization"},
                                "nosec_sc": {"scheme": "nosec"}},
        "security": ["bearer_sc"],
        "properties": {
            "things": {
                "title": "the TDs, ordered by id, in pages",
                "type": "array", "items": _TD, "readOnly": True,
                "uriVariables": {"offset": {"type": "integer", "minimum": 0},
                                 "limit": {"type": "integer", "minimum": 1, "maximum": 1000}},
                "forms": [_form("things{?offset,limit}", "GET", "readproperty", contentType="application/ld+json")],
            },
        },
        "actions": {
            "createThing": _action("create (or replace) a TD that has an id", "things/{id}", "PUT", _ID,
                                   "application/td+json", _TD, idempotent=True),
            "createAnonymousThing": _action("create a TD without an id (the directory assigns a urn:uuid)",
                                            "things", "POST", None, "application/td+json", _TD),
            "retrieveThing": _action("a TD, enriched with its registration", "things/{id}", "GET", _ID, output=_TD,
                                     idempotent=True),
            "updateThing": _action("replace a TD", "things/{id}", "PUT", _ID, "application/td+json", _TD,
                                   idempotent=True),
            "partiallyUpdateThing": _action("change part of a TD (JSON Merge Patch, RFC 7396)", "things/{id}", "PATCH",
                                            _ID, "application/merge-patch+json", {"type": "object"}),
            "deleteThing": _action("delete a TD", "things/{id}", "DELETE", _ID, idempotent=True),
            "searchJSONPath": _action("TDs selected by a JSONPath expression", "search/jsonpath?query={query}", "GET",
                                      query, output={"type": "array"}, idempotent=True),
            "searchSPARQL": {
                **_action("SPARQL 1.1 query (SELECT, ASK, CONSTRUCT, DESCRIBE)", "search/sparql?query={query}", "GET",
                          query, output={"type": "object"}, idempotent=True),
                "forms": [_form("search/sparql?query={query}", "GET", "invokeaction"),
                          _form("search/sparql", "POST", "invokeaction", contentType="application/sparql-query")],
            },
        },
        "events": {"thingCreated": _event("thing_created", True), "thingUpdated": _event("thing_updated", True),
                   "thingDeleted": _event("thing_deleted", False)},
        "links": [{"href": "sparql", "rel": "alternate", "type": "application/sparql-query"}],
    }


__all__ = ["directory_td"]
