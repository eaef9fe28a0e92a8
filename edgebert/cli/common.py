"""What every command shares: progress bars, JSON output written atomically, broker settings,
and the exit codes (0 ok, 1 where a command says so, 2 bad input, 130 interrupted, 143 SIGTERM)."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

EXIT_BAD_INPUT = 2


@contextmanager
def progress_bar(enabled: bool) -> Iterator:
    """A rich progress display fed by convert()'s (step, done, total) callback."""
    if not enabled:
        yield lambda step, done, total: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    tasks: dict[str, int] = {}
    with Progress(TextColumn("{task.description:<10}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), transient=False) as bar:
        def update(step: str, done: int, total: int) -> None:
            if step not in tasks:
                tasks[step] = bar.add_task(step, total=total)
            bar.update(tasks[step], completed=done, total=total)

        yield update


def write_json(path: Path, data: dict) -> None:
    from edgebert.files import atomic_write

    atomic_write(path, json.dumps(data, indent=2, default=str))


def broker_config(args: argparse.Namespace):  # noqa: ANN201 - edgebert.messaging.mqtt.BrokerConfig, imported lazily
    from edgebert.messaging.mqtt import BrokerConfig

    return BrokerConfig(args.broker, args.username, os.environ.get("EDGEBERT_MQTT_PASSWORD"), args.ca_file)
