"""The layers (docs/architecture.md), checked on the source: an AST walk over every import, module
level and function level, followed transitively through the project's own modules (a package's
``__init__`` counts, since importing ``a.b`` runs ``a/__init__.py``).

- the core (model, compress, graph, emit, artifact, runtime) never imports ``registry``;
- ``registry`` imports from ``edgebert`` only ``artifact``, ``errors``, ``files`` and ``names``;
- the device side (``runtime``, the device parts of ``fleet`` and ``federated``, ``messaging``)
  reaches neither torch, onnx, cryptography nor ``registry``, however deep the chain;
- ``firmware_export`` imports only the graph form, the artifact, errors, files, the Progress type and
  the device's firmware loaders (``runtime.firmware``, ``runtime.text_firmware``, with which it checks
  its host build).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("edgebert", "registry", "firmware_export")
CORE = ("edgebert.model", "edgebert.compress", "edgebert.graph", "edgebert.emit", "edgebert.artifact",
        "edgebert.runtime")
DEVICE = ("edgebert.runtime", "edgebert.messaging", "edgebert.fleet.agent", "edgebert.fleet.slots", "edgebert.fleet.verify",
          "edgebert.fleet.release", "edgebert.fleet.ed25519", "edgebert.federated.client",
          "edgebert.federated.auth", "edgebert.federated.aggregate", "edgebert.messaging.protocol",
          "edgebert.messaging.transport", "edgebert.messaging.mqtt", "edgebert.federated.tasks")
HEAVY = ("torch", "onnx", "cryptography", "registry", "transformers", "pyoxigraph", "rdflib")
REGISTRY_MAY_USE = ("edgebert", "edgebert.artifact", "edgebert.errors", "edgebert.files", "edgebert.names")
# the exporter checks its host build through the loader devices use (runtime.firmware), nothing else of the runtime
FIRMWARE_MAY_USE = ("edgebert", "edgebert.graph", "edgebert.artifact", "edgebert.errors", "edgebert.files",
                    "edgebert.progress", "edgebert.runtime.firmware", "edgebert.runtime.text_firmware",
                    "firmware_export")


def modules(root: Path) -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in (root / package).rglob("*.py"):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def imports_of(path: Path, name: str) -> set[str]:
    """Every module name ``path`` imports (absolute; relative imports resolved; TYPE_CHECKING blocks and a
    package's lazy ``__getattr__`` skipped)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue  # annotations only
            if isinstance(child, ast.FunctionDef) and child.name == "__getattr__" and path.name == "__init__.py":
                continue  # a package's lazy attribute hook (``edgebert.convert``) runs only when used
            if isinstance(child, ast.Import):
                found.update(a.name for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                found.add(base)
                found.update(f"{base}.{a.name}" for a in child.names)  # `from pkg import module`
            visit(child)

    visit(tree)
    return found


def parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def reach(start: str, table: dict[str, set[str]], known: dict[str, Path]) -> dict[str, list[str]]:
    """Every module reachable from ``start``, with one import chain leading to it."""
    chains: dict[str, list[str]] = {start: [start]}
    todo = [start]
    while todo:
        current = todo.pop()
        for imported in table.get(current, set()):
            for target in parents(imported):
                if target in chains:
                    continue
                chains[target] = chains[current] + [target]
                if target in known:
                    todo.append(target)
    return chains


def violations(root: Path) -> list[str]:
    known = modules(root)
    table = {name: imports_of(path, name) for name, path in known.items()}
    found = []

    def under(name: str, prefixes: Iterable[str]) -> bool:
        return any(name == p or name.startswith(p + ".") for p in prefixes)

    for name in known:
        direct = {i for i in table[name] if i.split(".")[0] in PACKAGES}
        if under(name, CORE):
            found += [f"{name} imports {i} (the core never imports the registry)" for i in direct
                      if under(i, ("registry",))]
        if under(name, ("registry",)):
            found += [f"{name} imports {i} (the registry uses only {', '.join(REGISTRY_MAY_USE[1:])})"
                      for i in direct if under(i, ("edgebert",)) and i != "edgebert" and not under(i, REGISTRY_MAY_USE[1:])]
        if under(name, ("firmware_export",)):
            found += [f"{name} imports {i} (firmware_export reads only the graph form and the artifact)"
                      for i in direct if under(i, ("edgebert",)) and not under(i, FIRMWARE_MAY_USE[1:])
                      and i != "edgebert"]
        if under(name, DEVICE):
            for target, chain in reach(name, table, known).items():
                if target in HEAVY:
                    found.append(f"{name} reaches {target} (device side): {' -> '.join(chain)}")
    return sorted(set(found))


def test_the_layers_hold() -> None:
    assert violations(ROOT) == []


@pytest.mark.parametrize("module, line, expected", [
    ("edgebert/runtime/online.py", "import torch", "edgebert.runtime.online reaches torch"),
    ("edgebert/fleet/slots.py", "from edgebert.converter import convert",
     "edgebert.fleet.slots reaches torch (device side): edgebert.fleet.slots -> edgebert.converter"),
    ("edgebert/graph/quantize.py", "from registry.describe import artifact_iri", "the core never imports"),
    ("registry/describe.py", "from edgebert.fleet.provision import plan", "the registry uses only"),
])
def test_a_forbidden_import_is_caught(tmp_path: Path, module: str, line: str, expected: str) -> None:
    for package in PACKAGES:
        if (ROOT / package).is_dir():
            for path in (ROOT / package).rglob("*.py"):
                target = tmp_path / path.relative_to(ROOT)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    path = tmp_path / module
    path.write_text(path.read_text(encoding="utf-8") + f"\n\ndef _added() -> None:\n    {line}\n", encoding="utf-8")

    found = violations(tmp_path)

    assert any(expected in v for v in found), found
