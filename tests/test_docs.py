"""docs/cli.md is the CLI's own --help, regenerated; it must not drift from the parser."""

from __future__ import annotations

import importlib.util
from pathlib import Path

DOCS = Path(__file__).parent.parent / "docs"


def test_cli_reference_is_up_to_date() -> None:
    spec = importlib.util.spec_from_file_location("make_cli_reference", DOCS / "make_cli_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    assert (DOCS / "cli.md").read_text(encoding="utf-8") == module.reference(), \
        "docs/cli.md is stale: run python docs/make_cli_reference.py"
