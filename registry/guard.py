"""Checks a registry request must pass before any real work (pure; no I/O).

- ``check_query``: SPARQL ``SERVICE`` makes the server itself send requests (server-side request
  forgery; pointed at the server's own port it deadlocks it), so it is refused unless every
  service IRI is on an allow-list. The check is lexical and fails closed: comments, strings and
  IRIs are removed first (after SPARQL's own ``\\uXXXX`` escapes are decoded, which the parser
  would decode too), then any ``SERVICE`` keyword left counts.
- ``check_json_depth``: nesting depth of a JSON body, counted on the bytes before parsing.
- ``check_td_size``: how many affordances and JSON nodes a TD has, before validation (a 4.3 MB TD
  with 60k properties kept a server busy for minutes).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from edgebert.errors import InputError, RequestRefused


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 1_000_000
    max_json_depth: int = 32
    max_affordances: int = 1_000  # properties + actions + events of one TD
    max_json_nodes: int = 50_000
    max_query_chars: int = 100_000
    max_result_rows: int = 10_000
    query_timeout_s: float = 10.0
    max_concurrent_queries: int = 2

    def __post_init__(self) -> None:
        if min(self.max_body_bytes, self.max_json_depth, self.max_affordances, self.max_json_nodes,
               self.max_query_chars, self.max_result_rows, self.max_concurrent_queries) <= 0 \
                or self.query_timeout_s <= 0:
            raise InputError("limits: expected positive values")


_ESCAPE = re.compile(r"\\u([0-9A-Fa-f]{4})|\\U([0-9A-Fa-f]{8})")
_STRIP = re.compile(r'"""(?:[^"\\]|\\.|"(?!""))*"""|\'\'\'(?:[^\'\\]|\\.|\'(?!\'\'))*\'\'\''
                    r'|"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\\\n]|\\.)*\'|<[^<>"{}|^`\\\s]*>|#[^\n]*', re.S)
_SERVICE = re.compile(r"(?<![\w:?$])SERVICE(?![\w:])", re.I)
_SERVICE_TARGET = re.compile(r"(?<![\w:?$])SERVICE\s+(?:SILENT\s+)?(<[^>]*>|\S+)", re.I)


def _unescape(text: str) -> str:
    return _ESCAPE.sub(lambda m: chr(int(m.group(1) or m.group(2), 16)) if int(m.group(1) or m.group(2), 16) < 0x110000
                       else m.group(0), text)


def masked(text: str) -> str:
    """The SPARQL text with its strings, IRIs and comments blanked, same length (offsets still hold):
    what is left are keywords, variables, prefixed names and punctuation."""
    return _STRIP.sub(lambda m: " " * len(m.group(0)), text)


def check_query(sparql: str, allow_service: tuple[str, ...] = (), max_chars: int = 100_000) -> None:
    """RequestRefused unless the query is short enough and every SERVICE it uses is allowed."""
    if len(sparql) > max_chars:
        raise RequestRefused(f"query: expected at most {max_chars} characters, found {len(sparql)}", 413)
    text = _unescape(sparql)
    keywords = _SERVICE.findall(masked(text))
    if not keywords:
        return
    if not allow_service:
        raise RequestRefused("query: expected no SERVICE clause (federated queries make this server send requests; "
                             "an operator can allow endpoints with --allow-service), found one", 403)
    # keep IRIs this time, to read each SERVICE's target
    without_strings = re.sub(r'"""[\s\S]*?"""|\'\'\'[\s\S]*?\'\'\'|"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\\\n]|\\.)*\'|#[^\n]*',
                             " ", text)
    targets = _SERVICE_TARGET.findall(without_strings)
    if len(targets) != len(keywords):
        raise RequestRefused("query: expected every SERVICE to name an allowed <IRI>, found one that does not", 403)
    for target in targets:
        iri = target[1:-1] if target.startswith("<") and target.endswith(">") else None
        if iri is None or iri not in allow_service:
            raise RequestRefused(f"query: expected SERVICE endpoints among the allowed {list(allow_service)}, "
                                 f"found {target[:200]!r}", 403)


def check_json_depth(data: bytes, max_depth: int) -> None:
    """RequestRefused if the JSON text nests objects/arrays deeper than ``max_depth`` (string-aware)."""
    depth, in_string, escaped = 0, False, False
    for byte in data:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x7B, 0x5B):  # { [
            depth += 1
            if depth > max_depth:
                raise RequestRefused(f"request body: expected JSON nested at most {max_depth} levels, found deeper")
        elif byte in (0x7D, 0x5D):
            depth -= 1


def check_td_size(td: dict[str, Any], limits: Limits) -> None:
    """RequestRefused (413) if a TD has too many affordances or JSON nodes."""
    affordances = sum(len(td.get(k) or {}) for k in ("properties", "actions", "events")
                      if isinstance(td.get(k), dict))
    if affordances > limits.max_affordances:
        raise RequestRefused(f"TD: expected at most {limits.max_affordances} properties, actions and events, "
                             f"found {affordances}", 413)
    nodes, stack = 0, [td]
    while stack:
        node = stack.pop()
        nodes += 1
        if nodes > limits.max_json_nodes:
            raise RequestRefused(f"TD: expected at most {limits.max_json_nodes} JSON values, found more", 413)
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


__all__ = ["Limits", "RequestRefused", "check_json_depth", "check_query", "check_td_size"]
