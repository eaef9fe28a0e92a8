"""JSON Merge Patch (RFC 7396): apply a patch, and make the patch that turns one document into another.

Pure functions on JSON values. ``apply`` is the directory's ``PATCH /things/{id}``; ``diff`` is the
``thing_updated`` notification's data when a subscriber asks for ``diff=true`` (WoT Discovery).
Merge Patch cannot say "set this object member to null" (null removes it) and replaces arrays whole,
so ``diff`` is exact for documents without null object members (a TD has none).
"""

from __future__ import annotations

from typing import Any

Json = Any  # a parsed JSON value: dict, list, str, int, float, bool or None


def apply(target: Json, patch: Json) -> Json:
    """RFC 7396 section 2, MergePatch(Target, Patch): a new value; neither input is changed."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = apply(out.get(key), value)
    return out


def diff(old: Json, new: Json) -> Json:
    """The merge patch ``p`` with ``apply(old, p) == new`` (``{}`` when they are equal)."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return new
    patch: dict[str, Json] = {key: None for key in old if key not in new}
    for key, value in new.items():
        if key not in old:
            patch[key] = value
        elif old[key] != value:
            if isinstance(old[key], dict) and isinstance(value, dict):
                patch[key] = diff(old[key], value)
            else:
                patch[key] = value
    return patch


__all__ = ["apply", "diff"]
