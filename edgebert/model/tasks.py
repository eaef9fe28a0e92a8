"""The TinyML task families and net shapes (pure numpy; the device side uses them too).

- sine: regression y = A sin(x + phase), A in [0.1, 5], phase in [0, pi], x in [-5, 5], the task
  family of MAML (Finn et al., 2017) and Reptile (Nichol et al., 2018); net 1 -> 40 -> 40 -> 1.
- digits: the 8x8 handwritten digits; net 64 -> 32 -> 32 -> 10.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from edgebert.errors import CheckpointError

MODEL_TYPE = "edgebert-mlp"
TASKS = ("sine", "digits")


@dataclass(frozen=True)
class MlpConfig:
    task: str
    input_dim: int
    hidden: tuple[int, ...]
    n_outputs: int
    loss: str  # "mse" | "xent"
    activation: str = "relu"

    def __post_init__(self) -> None:
        if self.loss not in ("mse", "xent"):
            raise CheckpointError(f"config.json: expected loss mse or xent, found {self.loss!r}")
        if self.activation != "relu":
            raise CheckpointError(f"config.json: expected activation relu, found {self.activation!r}")
        if self.input_dim <= 0 or self.n_outputs <= 0 or any(h <= 0 for h in self.hidden):
            raise CheckpointError("config.json: expected positive input_dim, hidden sizes and n_outputs")

    @property
    def sizes(self) -> list[int]:
        return [self.input_dim, *self.hidden, self.n_outputs]

    def to_dict(self) -> dict:
        return {**asdict(self), "hidden": list(self.hidden), "model_type": MODEL_TYPE}

    @classmethod
    def from_dict(cls, raw: dict) -> MlpConfig:
        try:
            return cls(task=str(raw["task"]), input_dim=int(raw["input_dim"]), hidden=tuple(int(h) for h in raw["hidden"]),
                       n_outputs=int(raw["n_outputs"]), loss=str(raw["loss"]), activation=str(raw.get("activation", "relu")))
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"config.json: expected an edgebert-mlp config, found a bad field ({exc!r})") from None


def default_config(task: str) -> MlpConfig:
    if task == "sine":
        return MlpConfig("sine", 1, (40, 40), 1, "mse")
    if task == "digits":
        return MlpConfig("digits", 64, (32, 32), 10, "xent")
    raise CheckpointError(f"task: expected one of {', '.join(TASKS)}, found {task!r}")


def sine_task(rng: np.random.Generator) -> tuple[float, float]:
    """One task of the family: (amplitude, phase)."""
    return float(rng.uniform(0.1, 5.0)), float(rng.uniform(0.0, math.pi))


def sine_batch(rng: np.random.Generator, amplitude: float, phase: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    x = rng.uniform(-5.0, 5.0, (n, 1)).astype(np.float32)
    return x, (amplitude * np.sin(x + phase)).astype(np.float32)
