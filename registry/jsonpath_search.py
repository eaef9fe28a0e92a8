"""JSONPath search over the directory's TDs (WoT Discovery, informative; RFC 9535 syntax).

The expression is applied to the JSON array of every (enriched) TD, as the Discovery draft says:
``$[?@.title=='Lamp']`` selects whole TDs, ``$[*].id`` their ids. Evaluation is lazy and bounded:
at most ``max_nodes`` results, and a deadline checked between them (a ``$..*..*`` over a big
directory would otherwise run for minutes).
"""

from __future__ import annotations

import time
from typing import Any

from edgebert.errors import QueryError, QueryTimeoutError


def search(docs: list[dict[str, Any]], expression: str, max_nodes: int, deadline: float) -> list[Any]:
    """The values ``expression`` selects from ``docs``; QueryError for a malformed expression or too
    many results, QueryTimeoutError past ``deadline`` (``time.monotonic()``)."""
    import jsonpath

    if not expression.startswith("$"):
        raise QueryError(f"JSONPath: expected an expression that starts with '$', found {expression[:100]!r}")
    try:
        compiled = jsonpath.compile(expression)
        found: list[Any] = []
        for n, match in enumerate(compiled.finditer(docs)):
            if n >= max_nodes:
                raise QueryError(f"result too large: expected at most {max_nodes} values, found more")
            if n % 256 == 0 and time.monotonic() > deadline:
                raise QueryTimeoutError("JSONPath timeout: expected the result within the time limit, found it "
                                        "still running")
            found.append(match.obj)
    except jsonpath.JSONPathError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise QueryError(f"JSONPath: expected a valid expression, found {expression[:100]!r} ({first[:200]})") from None
    return found


__all__ = ["search"]
