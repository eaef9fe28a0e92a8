"""Command line: ``edgebert convert | distill | export | demo | tinyml | device | federate | fleet | registry``.

One module per command group, each with ``add_parser(sub)``; ``main`` maps every EdgeBertError
to one line on stderr and exit code 2, Ctrl-C to 130 and SIGTERM to 143 (after every ``finally``
has removed its temporary files).
"""

from __future__ import annotations

import argparse
import sys

from edgebert.cli import convert, demo, device, distill, export, federate, fleet, tinyml
from edgebert.cli.common import EXIT_BAD_INPUT
from edgebert.errors import EdgeBertError
from edgebert.version import __version__

GROUPS = (convert, distill, export, demo, tinyml, device, federate, fleet)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgebert", description="Shrink compact BERTs and TinyML nets into int8 artifacts, put them on a fleet of "
                        "small devices over MQTT, keep them learning there, and keep track in an RDF registry.")
    parser.add_argument("--version", action="version", version=f"edgebert {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in GROUPS:
        group.add_parser(sub)
    try:  # the registry is an optional part (extra "registry")
        from registry.cli import add_parser as add_registry_parser
    except ImportError:
        pass
    else:
        add_registry_parser(sub)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that every ``finally`` removes its temporary files."""



def _on_sigterm(signum: int, frame: object) -> None:
    raise Terminated()



def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import signal
    import threading

    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return int(args.func(args))
    except EdgeBertError as exc:
        print(f"edgebert: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Terminated:
        print("edgebert: terminated; nothing half-written was left", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("edgebert: interrupted; nothing was written", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)



def entry() -> None:
    sys.exit(main())



__all__ = ["EXIT_BAD_INPUT", "build_parser", "entry", "main"]
