"""One progress type for the whole project: ``progress(step, done, total)`` (the CLI draws bars)."""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[str, int, int], None]  # (step, done, total)


def silent(step: str, done: int, total: int) -> None:
    """A Progress that shows nothing."""
