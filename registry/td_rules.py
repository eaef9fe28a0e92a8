"""TD 1.1 assertions that the official JSON Schema cannot state, checked after it (pure).

- a JSON object must not name a member twice (``load_json``: the last one would silently win);
- every security scheme a TD uses — in ``security`` at the top or in a form, or inside a combo
  scheme (``oneOf``/``allOf``) — is a key of ``securityDefinitions`` (td-security-binding);
- at most one link with ``"rel": "type"`` (the Thing Model a TD was made from; tm-rel-type-maximum);
- the values of an ``enum`` and a ``const`` are of the schema's ``type``.

Each fault is (field as a JSON pointer without the leading slash, description), as WoT Discovery's
``validationErrors`` has them.
"""

from __future__ import annotations

import json
from typing import Any

from edgebert.errors import DescriptionError

Fault = tuple[str, str]
_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,), "boolean": (bool,), "null": (type(None),), "object": (dict,), "array": (list,),
    "number": (int, float), "integer": (int,),
}


def load_json(data: bytes | str, where: str) -> Any:  # noqa: ANN401 - any JSON value
    """``json.loads`` that refuses an object naming a member twice."""
    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        for key, value in items:
            if key in seen:
                raise DescriptionError(f"{where}: expected each member of a JSON object once, found {key[:100]!r} twice",
                                       ((key[:100], "a member named twice in one object"),))
            seen[key] = value
        return seen

    try:
        return json.loads(data, object_pairs_hook=pairs)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise DescriptionError(f"{where}: expected JSON, found: {str(exc)[:200]}", (("(body)", "expected JSON"),)) from None


def _names(value: Any) -> list[str]:  # noqa: ANN401
    if isinstance(value, str):
        return [value]
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _walk(node: Any, path: str):  # noqa: ANN202, ANN401 - yields (pointer, dict) for every object
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from _walk(value, f"{path}/{key}" if path else str(key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, f"{path}/{i}" if path else str(i))


def _of_type(value: Any, kind: str) -> bool:  # noqa: ANN401
    types = _JSON_TYPES.get(kind)
    if types is None:
        return True
    if kind in ("number", "integer") and isinstance(value, bool):
        return False
    if kind == "integer" and isinstance(value, float):
        return value.is_integer()
    return isinstance(value, types)


def faults(td: dict[str, Any]) -> list[Fault]:
    """What the TD breaks of the assertions above (empty when none)."""
    out: list[Fault] = []
    defined = td.get("securityDefinitions") if isinstance(td.get("securityDefinitions"), dict) else {}
    for name in _names(td.get("security")):
        if name not in defined:
            out.append(("security", f"expected a key of securityDefinitions, found {name[:100]!r}"))
    for scheme_name, scheme in defined.items():
        if isinstance(scheme, dict):
            for combo in ("oneOf", "allOf"):
                for name in _names(scheme.get(combo)):
                    if name not in defined:
                        out.append((f"securityDefinitions/{scheme_name}/{combo}",
                                    f"expected a key of securityDefinitions, found {name[:100]!r}"))
    for kind in ("properties", "actions", "events"):
        for name, affordance in (td.get(kind) or {}).items() if isinstance(td.get(kind), dict) else ():
            for i, form in enumerate(affordance.get("forms", []) if isinstance(affordance, dict) else []):
                for used in _names(form.get("security")) if isinstance(form, dict) else []:
                    if used not in defined:
                        out.append((f"{kind}/{name}/forms/{i}/security",
                                    f"expected a key of securityDefinitions, found {used[:100]!r}"))
    for i, form in enumerate(td.get("forms", []) if isinstance(td.get("forms"), list) else []):
        for used in _names(form.get("security")) if isinstance(form, dict) else []:
            if used not in defined:
                out.append((f"forms/{i}/security", f"expected a key of securityDefinitions, found {used[:100]!r}"))
    links = td.get("links") if isinstance(td.get("links"), list) else []
    if sum(1 for link in links if isinstance(link, dict) and link.get("rel") == "type") > 1:
        out.append(("links", "expected at most one link with rel 'type' (the Thing Model), found more"))
    for path, node in _walk(td, ""):
        kind = node.get("type")
        if not isinstance(kind, str) or path.startswith("securityDefinitions") or path.endswith("forms"):
            continue
        for i, value in enumerate(node.get("enum", []) if isinstance(node.get("enum"), list) else []):
            if not _of_type(value, kind):
                out.append((f"{path}/enum/{i}" if path else f"enum/{i}", f"expected a value of type {kind!r}, "
                            f"found {json.dumps(value)[:60]}"))
        if "const" in node and not _of_type(node["const"], kind):
            out.append((f"{path}/const" if path else "const",
                        f"expected a value of type {kind!r}, found {json.dumps(node['const'])[:60]}"))
    return out


__all__ = ["faults", "load_json"]
