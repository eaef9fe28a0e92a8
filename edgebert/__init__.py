"""EdgeBERT toolkit: compact BERTs and TinyML nets to int8/binary artifacts for device fleets."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edgebert.errors import EdgeBertError
from edgebert.version import __version__

__all__ = ["EdgeBertError", "__version__", "convert"]

if TYPE_CHECKING:
    from edgebert.converter import convert


def __getattr__(name: str) -> Any:
    # torch-heavy converter is imported lazily so that `import edgebert` stays light on devices
    if name == "convert":
        from edgebert.converter import convert

        return convert
    raise AttributeError(name)
