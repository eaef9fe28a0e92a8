"""JSON Merge Patch: RFC 7396's own examples, and diff as apply's inverse on TD-like documents."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from registry.merge_patch import apply, diff

RFC7396_APPENDIX_A = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}), ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}), ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}), ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}), (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]), ({"a": "foo"}, None, None), ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}), ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize(("target", "patch", "result"), RFC7396_APPENDIX_A)
def test_rfc7396_examples(target: object, patch: object, result: object) -> None:
    assert apply(target, patch) == result


def test_apply_changes_neither_input() -> None:
    target, patch = {"a": {"b": 1}}, {"a": {"b": None, "c": 2}}
    apply(target, patch)
    assert target == {"a": {"b": 1}} and patch == {"a": {"b": None, "c": 2}}


leaf = st.one_of(st.text(max_size=5), st.integers(), st.booleans(), st.lists(st.integers(), max_size=3))
documents = st.recursive(st.dictionaries(st.text(max_size=4), leaf, max_size=4),
                         lambda inner: st.dictionaries(st.text(max_size=4), st.one_of(leaf, inner), max_size=4),
                         max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(documents, documents)
def test_diff_is_the_patch_from_old_to_new(old: dict, new: dict) -> None:
    patch = diff(old, new)
    assert apply(old, patch) == new
    assert diff(new, new) == {}
