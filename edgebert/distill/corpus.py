"""Unlabeled text for distillation: a user's file, split into training and held-out lines, and an
offline English corpus for benchmarks and demos (no download): the bundled abstracts plus the
sentences of the docstrings of Python's own standard library, which every Python install has."""

from __future__ import annotations

import ast
import re
import sysconfig
from pathlib import Path

import numpy as np

from edgebert.errors import InputError

SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
MIN_LINES = 20
MAX_LINES = 5_000_000
MAX_LINE_CHARS = 512 * 101  # what 512 WordPiece tokens can use (a longer word becomes one [UNK])


def read_lines(path: str | Path) -> list[str]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"--data: expected a UTF-8 text file (one sentence per line), found no file {path}") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: expected UTF-8 text, found undecodable bytes") from None
    except IsADirectoryError:
        raise InputError(f"--data: expected a text file, found a directory {path}") from None
    lines = list(dict.fromkeys(line.strip()[:MAX_LINE_CHARS] for line in text.splitlines() if line.strip()))
    lines = lines[:MAX_LINES]  # a bigger corpus than one process can use is cut, not loaded whole into torch
    if len(lines) < MIN_LINES:
        raise InputError(f"{path}: expected at least {MIN_LINES} distinct non-empty lines, found {len(lines)}")
    return lines


def split(lines: list[str], seed: int, held_out: int) -> tuple[list[str], list[str]]:
    """(training, held-out): a seeded shuffle; held-out gets ``held_out`` lines (at most 20%)."""
    order = np.random.default_rng(seed).permutation(len(lines))
    n = min(held_out, len(lines) // 5)
    return [lines[i] for i in order[n:]], [lines[i] for i in order[:n]]


def _docstrings(path: Path) -> list[str]:
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (SyntaxError, UnicodeDecodeError, ValueError, OSError):
        return []
    out = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node)
            if doc:
                for paragraph in doc.split("\n\n"):
                    if not paragraph.lstrip().startswith((">>>", "..", "-", "*", ":", "Parameters", "Returns")):
                        out += SENTENCE.split(" ".join(paragraph.split()))
    return out


def _prose(s: str) -> bool:
    """Mostly letters and spaces, no doctest or table syntax."""
    if any(mark in s for mark in (">>>", "--", "==", "::", "``", "{", "}")):
        return False
    return sum(c.isalpha() or c == " " for c in s) >= 0.88 * len(s)


def offline_corpus(limit: int = 100_000, packages: tuple[str, ...] = ()) -> list[str]:
    """English sentences available without a download: the bundled abstracts and the docstrings of
    Python's standard library (every machine has it) and of the installed ``packages`` asked for
    (prose paragraphs only, sentences of 5 to 60 words, deduplicated, in a fixed order)."""
    from edgebert.model.zoo import corpus_path

    lines = corpus_path().read_text(encoding="utf-8").splitlines()
    roots = [Path(sysconfig.get_paths()["stdlib"])]
    roots += [Path(sysconfig.get_paths()["purelib"]) / p for p in packages]
    for root in roots:
        for path in sorted(root.rglob("*.py")):
            if ("site-packages" in path.parts and root == roots[0]) or {"test", "tests"} & set(path.parts):
                continue
            lines += _docstrings(path)
            if len(lines) > 4 * limit:
                break
    keep = [s for s in dict.fromkeys(x.strip() for x in lines) if 5 <= len(s.split()) <= 60 and _prose(s)]
    return keep[:limit]


__all__ = ["MIN_LINES", "offline_corpus", "read_lines", "split"]
