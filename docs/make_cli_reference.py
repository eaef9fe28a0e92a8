"""Write docs/cli.md from the CLI's own --help texts: python docs/make_cli_reference.py

tests/test_docs.py fails when docs/cli.md is out of date with the parser.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edgebert.cli import build_parser


def _walk(parser: argparse.ArgumentParser, path: list[str]) -> list[tuple[list[str], str]]:
    out = [(path, parser.format_help())]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out += _walk(sub, [*path, name])
    return out


def reference() -> str:
    import os

    os.environ["COLUMNS"] = "100"  # stable wrapping, whatever the terminal
    parts = ["# CLI reference", "", "Generated from `--help` by `python docs/make_cli_reference.py`; every command "
             "exits 0 on success, 2 on bad input (one line on stderr saying what was expected and what was found), "
             "1 where its help says so, 130 when interrupted.", ""]
    for path, text in _walk(build_parser(), ["edgebert"]):
        parts += [f"## {' '.join(path)}", "", "```text", text.rstrip(), "```", ""]
    return "\n".join(parts)


if __name__ == "__main__":
    target = Path(__file__).with_name("cli.md")
    target.write_text(reference(), encoding="utf-8")
    print(f"wrote {target}", file=sys.stderr)
