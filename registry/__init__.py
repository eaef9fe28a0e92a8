"""The RDF semantic registry of models, artifacts, devices and deployments.

``open_registry("memory" | DIR | "http://…/query")`` returns a ``Registry``; see docs/registry.md.
Reads artifact manifests through ``edgebert.artifact``; ``edgebert``'s core never imports this.
"""

from __future__ import annotations

from typing import Any

__all__ = ["open_registry"]


def open_registry(spec: str) -> Any:
    from registry.registry import open_registry as _open

    return _open(spec)
