"""JSON-LD of Thing Descriptions that share a shape: expanded once, then filled in.

A fleet's TDs differ in their values (id, title, href, numbers) and seldom in their shape (keys,
nesting, types, contexts). Expanding the TD 1.1 context costs pyoxigraph about 0.6 ms per TD (its
scoped contexts), most of an import's time. Here a TD is expanded as its *skeleton*: every string
and integer value replaced by a placeholder, an IRI no context can expand (``urn:x-edgebert-leaf:K``)
or an integer no TD holds (``9 x 10^17 + K``). The skeleton's quads are kept as a template, where
each placeholder is found
- as a whole literal: the real value goes in its place, with the literal's datatype and language;
- as a whole IRI: the real value goes in only if JSON-LD keeps it as it is (an absolute IRI whose
  scheme is no term of the TD's contexts);
- otherwise (inside a longer string or IRI: a relative IRI, a JSON literal; nowhere: dropped, or
  changed, like an integer a context types as a double): the value is part of the shape.
A TD with values in its shape is expanded again with them in place, and that skeleton is cached
too. A shape is expanded when a second TD has it: the first goes to the batch parse with the
TDs of other new shapes (alone, a TD's expansion costs 4x its share of a batch). Values under
keywords (``@id``, ``@type``, ``@language``...), floats, booleans, null and object keys are always
part of the shape. A TD the templates cannot fill exactly (or that holds a
value a placeholder could be taken for) goes to the JSON-LD parser whole (``quads`` gives None).

Pure translation: no store, no I/O. ``tests/registry/test_td_templates.py`` compares it with
pyoxigraph's JSON-LD on every corpus TD and on TDs made to trip it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyoxigraph as ox

from registry.vocab import is_iri

LEAF = "urn:x-edgebert-leaf:"
INT_BASE = 900_000_000_000_000_000  # placeholders: INT_BASE + K (JSON-LD keeps integers below 10^21 as xsd:integer)
INT_END = 10**18  # placeholders are 18 digits: a TD's own integer in [INT_BASE, INT_END) goes to the parser
INT_LIMIT = 10**17  # an integer at or above this in absolute value is part of the shape
MAX_TEMPLATES = 4096  # shapes kept; the cache starts again when full

Path = tuple[Any, ...]
_MISSING = object()
# how _fill makes a term: ("t", term) as it is, ("b", label) a fresh blank node per TD,
# ("i", k) value k as an IRI, ("l", k, datatype, language, direction) value k as a literal
Op = tuple[Any, ...]


@dataclass(frozen=True)
class Template:
    plan: tuple[tuple[Op, ox.NamedNode, Op], ...]  # (subject, predicate, object) of each quad
    literal: frozenset[int]  # placeholders found as whole literals
    iri: frozenset[int]  # placeholders found as whole IRIs
    mixed: frozenset[int]  # placeholders found inside longer terms, or where _fill puts nothing


def _passes_for_placeholder(value: Any) -> bool:
    """A TD's own value a placeholder could be taken for: the TD then goes to the parser."""
    if isinstance(value, str):
        return LEAF in value or _int_token(value)
    return isinstance(value, int) and not isinstance(value, bool) and INT_BASE <= value < INT_END


def _int_token(value: str) -> bool:
    """Whether a lexical form has the form of an integer placeholder (18 digits from 9)."""
    return len(value) == 18 and value.isdigit() and value[0] == "9"


def _skeleton(node: Any, keep: frozenset[Path], path: Path, leaves: list[tuple[Path, Any]]) -> Any:
    """``node`` with its fillable values replaced by placeholders (recorded in ``leaves``, in key
    order: the same shape numbers its values the same way); raises ValueError on a value a
    placeholder could be taken for."""
    if isinstance(node, dict):
        out = {}
        for k in sorted(node):
            v = node[k]
            if _passes_for_placeholder(k):
                raise ValueError(k)
            out[k] = _plain(v) if k.startswith("@") else _skeleton(v, keep, (*path, k), leaves)
        return out
    if isinstance(node, list):
        return [_skeleton(v, keep, (*path, i), leaves) for i, v in enumerate(node)]
    if _passes_for_placeholder(node):
        raise ValueError(node)
    if isinstance(node, str):
        if path in keep:
            return node
        leaves.append((path, node))
        return f"{LEAF}{len(leaves) - 1}"
    if isinstance(node, int) and not isinstance(node, bool) and abs(node) < INT_LIMIT and path not in keep:
        leaves.append((path, node))
        return INT_BASE + len(leaves) - 1
    return node  # floats, booleans, null, large integers: part of the shape


def _plain(node: Any) -> Any:
    """A value under a keyword, kept as it is (checked for what could pass for a placeholder)."""
    if isinstance(node, dict):
        for k, v in node.items():
            _plain(k)
            _plain(v)
    elif isinstance(node, list):
        for v in node:
            _plain(v)
    elif _passes_for_placeholder(node):
        raise ValueError(node)
    return node


def _placeholder(value: str, n: int) -> int | None:
    if value.startswith(LEAF) and value[len(LEAF):].isdigit():
        k = int(value[len(LEAF):])
    elif _int_token(value):
        k = int(value) - INT_BASE
    else:
        return None
    return k if 0 <= k < n else None


def _template(quads: list[ox.Quad], n: int) -> Template:
    literal: set[int] = set()
    iri: set[int] = set()
    mixed: set[int] = set()
    tokens = [f"{LEAF}{k}" for k in range(n)] + [str(INT_BASE + k) for k in range(n)]

    def op(term: Any, whole: bool) -> Op:
        if isinstance(term, ox.BlankNode):
            return ("b", term.value)
        if isinstance(term, ox.DefaultGraph):
            return ("t", term)
        k = _placeholder(term.value, n) if whole else None
        if k is not None:
            if isinstance(term, ox.Literal):
                literal.add(k)
                return ("l", k, term.datatype, term.language, term.direction)
            iri.add(k)
            return ("i", k)
        if any(t in term.value for t in tokens):  # a placeholder inside a longer term, or where it is not filled
            mixed.update(i % n for i, t in enumerate(tokens) if t in term.value)
        if isinstance(term, ox.Literal) and any(t in term.datatype.value for t in tokens):
            mixed.update(i % n for i, t in enumerate(tokens) if t in term.datatype.value)
        return ("t", term)

    plan = tuple((op(q.subject, True), op(q.predicate, False)[1], op(q.object, True)) for q in quads)
    return Template(plan, frozenset(literal), frozenset(iri), frozenset(mixed))


class TemplateCache:
    """Templates by skeleton; ``quads`` fills one in for a TD (thread-safe)."""

    def __init__(self) -> None:
        self._templates: dict[str, Template | None] = {}
        self._seen: set[str] = set()  # shapes met once
        self._terms: dict[str, frozenset[str]] = {}
        self._lock = threading.Lock()
        self.parsed = 0  # skeletons expanded by the JSON-LD parser (for tests and benchmarks)

    def _template(self, key: str, skeleton: Callable[[], dict], context: list[Any], n: int) -> Template | None:
        """The template of a shape seen before; None the first time (a shape seen once costs a
        JSON-LD parse of its own, 4x a TD's share of a batch parse: a TD of a new shape goes to the
        batch, and its shape is expanded when a second TD has it)."""
        template = self._templates.get(key, _MISSING)
        if template is not _MISSING:
            return template  # type: ignore[return-value]
        with self._lock:
            first = key not in self._seen
            if first:
                if len(self._seen) >= MAX_TEMPLATES:
                    self._seen.clear()
                self._seen.add(key)
        return None if first else self._expand(key, skeleton(), context, n)

    def _expand(self, key: str, skeleton: dict, context: list[Any], n: int) -> Template | None:
        try:
            quads = list(ox.parse(json.dumps({"@context": context, **skeleton}), format=ox.RdfFormat.JSON_LD))
            template: Template | None = _template(quads, n)
        except (SyntaxError, ValueError):
            template = None  # the real TD then goes to the parser, which says what is wrong
        with self._lock:
            if len(self._templates) >= MAX_TEMPLATES:
                self._templates.clear()
            self._templates[key] = template
            self.parsed += 1
        return template

    def _context_terms(self, context_key: str, context: list[Any]) -> frozenset[str]:
        """Every term any of the TD's contexts (scoped ones included) defines: an IRI whose scheme is
        one of them would be expanded as a compact IRI, not kept."""
        terms = self._terms.get(context_key)
        if terms is None:
            found: set[str] = set()

            def walk(node: Any) -> None:
                if isinstance(node, dict):
                    for k, v in node.items():
                        found.add(k)
                        walk(v)
                elif isinstance(node, list):
                    for v in node:
                        walk(v)

            walk(context)
            terms = self._terms[context_key] = frozenset(found)
        return terms

    def quads(self, node: dict, context: list[Any], context_key: str, graph: ox.NamedNode) -> list[ox.Quad] | None:
        """The quads of ``node`` (a TD without its ``@context``) under ``context`` (``context_key``
        names it), in ``graph``; None when a template cannot give them exactly."""
        leaves: list[tuple[Path, Any]] = []
        try:
            skeleton = _skeleton(node, frozenset(), (), leaves)
        except ValueError:
            return None
        key = context_key + "\n" + json.dumps(skeleton, sort_keys=True)
        template = self._template(key, lambda: skeleton, context, len(leaves))
        if template is None:
            return None
        terms = self._context_terms(context_key, context)
        # part of the shape: a value found inside a longer term, one found nowhere whole (dropped,
        # or changed: an integer a context types xsd:double), and one found as an IRI its real value
        # would not be kept as
        shape = set(template.mixed) | {k for k in template.iri if not _kept_as_is(leaves[k][1], terms)}
        if len(template.literal) + len(template.iri) < len(leaves):
            shape |= set(range(len(leaves))) - template.literal - template.iri
        if not shape:
            return _fill(template, leaves, graph)
        keep = sorted(shape)
        key1 = key + "\n" + json.dumps([[list(leaves[k][0]), leaves[k][1]] for k in keep])
        kept = frozenset(leaves[k][0] for k in keep)
        rest = [leaf for leaf in leaves if leaf[0] not in kept]
        template = self._template(key1, lambda: _skeleton(node, kept, (), []), context, len(rest))
        if template is None:
            return None
        if (template.mixed or len(template.literal) + len(template.iri) < len(rest)
                or any(not _kept_as_is(rest[k][1], terms) for k in template.iri)):
            return None  # the values put in place changed how others expand (a type-scoped context)
        return _fill(template, rest, graph)


def _kept_as_is(value: Any, terms: frozenset[str]) -> bool:
    """An absolute IRI JSON-LD leaves alone wherever it stands: a scheme that is no context term."""
    if not isinstance(value, str) or not is_iri(value):
        return False
    return value.split(":", 1)[0] not in terms and value not in terms


def _fill(template: Template, leaves: list[tuple[Path, Any]], graph: ox.NamedNode) -> list[ox.Quad]:
    blanks: dict[str, ox.BlankNode] = {}
    values = [v for _, v in leaves]

    def make(op: Op) -> Any:
        kind = op[0]
        if kind == "t":
            return op[1]
        if kind == "b":
            node = blanks.get(op[1])
            if node is None:
                node = blanks[op[1]] = ox.BlankNode()
            return node
        if kind == "i":
            return ox.NamedNode(values[op[1]])
        _, k, datatype, language, direction = op
        if language:
            return ox.Literal(str(values[k]), language=language, direction=direction)
        return ox.Literal(str(values[k]), datatype=datatype)

    return [ox.Quad(make(s), p, make(o), graph) for s, p, o in template.plan]
