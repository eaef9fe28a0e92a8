"""Registration information of a TD in the directory (WoT Discovery 1.0, "Enriched TD").

Pure functions. A client may send ``"registration": {"ttl": …}`` (seconds) or ``{"expires": …}``
in the TD it registers; the directory keeps ``created`` (the first registration) and ``modified``
(the latest write), works out ``expires`` from ``ttl`` (``ttl`` wins when both come) and ignores the
read-only members. What is stored is the TD without ``registration`` and without the discovery
context; a TD is served enriched: the discovery context added to its ``@context`` and its
``registration`` object with ``retrieved`` (the time of serving).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from edgebert.errors import DescriptionError

DISCOVERY_CONTEXT = "https://www.w3.org/2022/wot/discovery"
DISCOVERY = "https://www.w3.org/2021/wot/discovery#"  # the vocabulary (the context's "discovery" prefix)
MAX_TTL_S = 10 * 365 * 24 * 3600  # beyond this a ttl is refused (a typo, or an attempt to overflow a date)


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


def rfc3339(t: datetime) -> str:
    """RFC 3339 with its timezone offset, as WoT Discovery requires ("Z" for UTC)."""
    return t.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_rfc3339(text: Any, where: str) -> datetime:  # noqa: ANN401 - any JSON value
    if isinstance(text, str) and len(text) <= 40:
        try:
            t = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            t = None
        if t is not None and t.tzinfo is not None:
            return t.astimezone(timezone.utc)
    raise DescriptionError(f"{where}: expected an RFC 3339 date-time with its timezone offset, found {str(text)[:60]!r}",
                           ((where, "expected an RFC 3339 date-time with a timezone offset"),))


@dataclass(frozen=True)
class Registration:
    created: datetime
    modified: datetime
    expires: datetime | None = None
    ttl: float | None = None

    def to_json(self, retrieved: datetime) -> dict[str, Any]:
        out: dict[str, Any] = {"created": rfc3339(self.created), "modified": rfc3339(self.modified)}
        if self.expires is not None:
            out["expires"] = rfc3339(self.expires)
        if self.ttl is not None:
            out["ttl"] = int(self.ttl) if float(self.ttl).is_integer() else self.ttl
        out["retrieved"] = rfc3339(retrieved)
        return out


def split(td: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the TD to store, the client's ``registration`` object): the discovery context and the
    ``registration`` member come off the stored TD."""
    doc = dict(td)  # only top-level members change; the JSON-LD step copies deeply
    client = doc.pop("registration", None)
    if client is None:
        client = {}
    if not isinstance(client, dict):
        raise DescriptionError(f"TD {str(td.get('id'))[:200]}: expected 'registration' a JSON object, found "
                               f"{type(client).__name__}", (("registration", "expected an object"),))
    ctx = doc.get("@context")
    if isinstance(ctx, list):
        kept = [c for c in ctx if c != DISCOVERY_CONTEXT]
        doc["@context"] = kept[0] if len(kept) == 1 and isinstance(kept[0], str) else kept
    return doc, client


def register(client: dict[str, Any], previous: Registration | None, now: datetime) -> Registration:
    """The registration after a write at ``now`` that carried ``client``'s registration object."""
    ttl = client.get("ttl")
    expires: datetime | None = None
    if ttl is not None:
        if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not 0 < ttl <= MAX_TTL_S:
            raise DescriptionError(f"registration.ttl: expected seconds in (0, {MAX_TTL_S}], found {str(ttl)[:40]!r}",
                                   (("registration/ttl", f"expected a number of seconds in (0, {MAX_TTL_S}]"),))
        expires = now + timedelta(seconds=float(ttl))
    elif client.get("expires") is not None:
        expires = parse_rfc3339(client["expires"], "registration/expires")
    created = previous.created if previous is not None else now
    return Registration(created, now, expires, float(ttl) if ttl is not None else None)


def enrich(doc: dict[str, Any], reg: Registration | None, retrieved: datetime) -> dict[str, Any]:
    """The Enriched TD: the discovery context in ``@context`` and the ``registration`` object."""
    out = dict(doc)
    ctx = out.get("@context")
    items = list(ctx) if isinstance(ctx, list) else [ctx] if ctx is not None else []
    if DISCOVERY_CONTEXT not in items:
        # after the TD context (JSON-LD requires it first) and before any inline term definitions
        at = next((i for i, c in enumerate(items) if not isinstance(c, str)), len(items))
        items.insert(at, DISCOVERY_CONTEXT)
    out["@context"] = items
    if reg is not None:
        out["registration"] = reg.to_json(retrieved)
    return out


__all__ = ["DISCOVERY", "DISCOVERY_CONTEXT", "Registration", "enrich", "now_utc", "register", "rfc3339", "split"]
