"""The demo's options, checked before any work, and its stage timer."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from edgebert.errors import InputError

T = TypeVar("T")
Log = Callable[[str], None]
MARKER = ".edgebert-demo"
MODELS = ("auto", "minilm", "tiny")
MAX_DEVICES = 1000
MAX_ROUNDS = 1000


@dataclass(frozen=True)
class DemoConfig:
    out: Path
    devices: int = 24
    rounds: int = 40
    broker: str | None = None     # default: an embedded broker
    registry: str | None = None   # default: an embedded Oxigraph store in the output directory
    model: str = "auto"           # auto | minilm | tiny
    text_samples: int = 120
    digits_samples: int = 300
    meta_step: float = 1.0         # Reptile's outer step size
    seed: int = 0

    def __post_init__(self) -> None:
        """Every option checked before any work starts (conversion alone takes a minute)."""
        from edgebert.demo.fleet import MIN_DEVICES

        checks = [
            (MIN_DEVICES <= self.devices <= MAX_DEVICES, f"--devices: expected {MIN_DEVICES}..{MAX_DEVICES} (each "
             f"simulated device is an MQTT client and a thread here), found {self.devices}"),
            (1 <= self.rounds <= MAX_ROUNDS, f"--rounds: expected 1..{MAX_ROUNDS}, found {self.rounds}"),
            (self.model in MODELS, f"--model: expected one of {', '.join(MODELS)}, found {self.model!r}"),
            (self.text_samples >= 1 and self.digits_samples >= 1, "samples: expected at least 1 per stream"),
            (0 < self.meta_step <= 2, f"meta_step: expected a value in (0, 2], found {self.meta_step}"),
        ]
        for ok, message in checks:
            if not ok:
                raise InputError(message)


@dataclass
class Timer:
    stages: dict[str, float]

    def stage(self, name: str, started: float) -> None:
        self.stages[name] = round(time.perf_counter() - started, 2)

    def run(self, name: str, step: Callable[..., T], *args: Any, **kw: Any) -> T:  # noqa: ANN401
        """``step(*args, **kw)``, timed as stage ``name``."""
        started = time.perf_counter()
        try:
            return step(*args, **kw)
        finally:
            self.stage(name, started)
