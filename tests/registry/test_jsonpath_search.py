"""JSONPath search is bounded: a deadline and a result cap stop a hostile expression."""

from __future__ import annotations

import time

import pytest

from edgebert.errors import QueryError, QueryTimeoutError
from registry.jsonpath_search import search

DOCS = [{"id": f"urn:dev:{i}", "tag": "blue" if i % 2 else "red", "p": {"q": {"r": list(range(40))}}}
        for i in range(2000)]


def test_a_filter_selects_whole_tds() -> None:
    found = search(DOCS[:6], "$[?@.tag=='blue'].id", 100, time.monotonic() + 5)
    assert found == ["urn:dev:1", "urn:dev:3", "urn:dev:5"]


def test_an_explosive_expression_stops_at_the_deadline() -> None:
    start = time.monotonic()
    with pytest.raises(QueryTimeoutError, match="time limit"):
        search(DOCS, "$..*..*", 10**9, start + 0.3)
    assert time.monotonic() - start < 3


def test_too_many_results_are_refused() -> None:
    with pytest.raises(QueryError, match="at most 100 values"):
        search(DOCS, "$..r[*]", 100, time.monotonic() + 30)


@pytest.mark.parametrize("expression", ["*/id", "$[?(@.tag==", ""])
def test_a_malformed_expression_is_a_query_error(expression: str) -> None:
    with pytest.raises(QueryError, match="JSONPath"):
        search(DOCS[:2], expression, 100, time.monotonic() + 5)
