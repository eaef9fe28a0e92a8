"""What happens each round, apart from how messages move and what is written to disk (pure).

A ``RoundStrategy`` (after Flower's ``Strategy``) decides, from a job's configuration: which known
devices take part in round r (deterministic in (seed, r)), whether an update counts (``check``:
authentication with the device's key, round, selection, duplicates, sample count, int8-delta
layout, tensor names/shapes/finiteness), how many updates close a round early, and how the
accepted updates combine into the next global model (Reptile's server step or FedAvg, through the
robust rule). The aggregator (``federated.aggregator``) runs the loop, the transport and the
persistence around it.
"""

from __future__ import annotations

from collections.abc import Container, Iterable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from edgebert.errors import InputError
from edgebert.federated.aggregate import DEFAULT_RULE, ROBUST, Weights, check_samples, check_update, reptile_update
from edgebert.federated.auth import verify_update
from edgebert.federated.encoding import INT8_DELTA, decode_int8_delta
from edgebert.messaging.protocol import Message

ALGORITHMS = ("reptile", "fedavg")


@dataclass(frozen=True)
class JobConfig:
    job: str
    task: str
    algorithm: str = "reptile"
    rounds: int = 10
    fraction: float = 0.1
    min_participants: int = 2
    quorum: float = 1.0  # share of the selected devices whose updates close a round early
    deadline_s: float = 30.0
    server_step: float = 1.0  # Reptile's epsilon; FedAvg uses 1
    robust: str = DEFAULT_RULE
    clip: float | None = None
    inner_steps: int = 10
    inner_lr: float = 0.02
    shots: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise InputError(f"--algorithm: expected one of {ALGORITHMS}, found {self.algorithm!r}")
        if self.robust not in ROBUST:
            raise InputError(f"robust: expected one of {ROBUST}, found {self.robust!r}")
        if not (0 < self.fraction <= 1 and 0 < self.quorum <= 1 and self.rounds > 0 and self.min_participants > 0
                and self.deadline_s > 0 and self.server_step > 0):
            raise InputError("job: expected 0 < fraction, quorum <= 1 and positive rounds, min_participants, "
                             "deadline and server step")

    def to_info(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Verdict:
    """What to do with one update: accept its ``tensors``, or refuse it for ``reason``
    (``reason`` starts with the rejection key; ``ack`` says whether the sender is told)."""

    tensors: Weights | None = None
    reason: str = ""
    ack: bool = True
    samples: float | None = None  # what the update stands for, when not the message's sample count

    @property
    def accepted(self) -> bool:
        return self.tensors is not None

    @property
    def key(self) -> str:
        return self.reason.split(":")[0]


@dataclass(frozen=True)
class RoundStrategy:
    config: JobConfig
    keys: dict[str, bytes] | None = None  # device -> update key; None: updates are not authenticated

    def knows(self, device: str) -> bool:
        """Whether an "online" device may join the pool (only keyed devices when keys are given)."""
        return self.keys is None or device in self.keys

    def select(self, known: Iterable[str], round_: int) -> list[str]:
        pool = sorted(known)
        cfg = self.config
        n = min(len(pool), max(cfg.min_participants, int(round(cfg.fraction * len(pool)))))
        rng = np.random.default_rng([cfg.seed, round_])
        return sorted(rng.choice(pool, n, replace=False).tolist()) if n else []

    def quorum(self, selected: int) -> int:
        return max(1, int(np.ceil(self.config.quorum * selected)))

    def check(self, device: str, msg: Message, round_: int, selected: Container[str], accepted: Container[str],
              weights: Weights) -> Verdict:
        """The verdict on ``msg`` arriving on ``device``'s update topic in round ``round_``."""
        refused = self.admit(device, msg, "update", round_, selected, accepted)
        if refused is not None:
            return refused
        tensors: Weights | None = msg.tensors
        reason = check_samples(msg.samples)
        if reason is None and msg.info.get("encoding") == INT8_DELTA:
            tensors, reason = decode_int8_delta(msg.tensors, weights)
        if reason is None and tensors is not None:
            reason = check_update(tensors, weights)
        if reason is not None or tensors is None:
            return Verdict(reason=f"invalid: {reason}")
        return Verdict(tensors)

    def admit(self, sender: str, msg: Message, kind: str, round_: int, selected: Container[str],
              accepted: Container[str]) -> Verdict | None:
        """What every message on a participant's topic must pass first: its kind, the topic's own
        sender, the sender's key (when keys are given), the round, selection, once (None: it passes)."""
        if msg.kind != kind or msg.sender != sender:
            return Verdict(reason=f"unauthenticated: sender {msg.sender!r} does not own the topic of {sender!r}")
        if self.keys is not None:
            why = verify_update(msg, self.keys.get(sender))
            if why is not None:  # no ack: the real sender's acknowledgements are not an impostor's to spend
                return Verdict(reason=f"unauthenticated: {why}", ack=False)
        if msg.job != self.config.job or msg.round != round_:
            return Verdict(reason=f"stale: expected round {round_}, found {msg.round}")
        if sender not in selected:
            return Verdict(reason=f"not selected: {sender} is not a participant of round {round_}")
        if sender in accepted:
            return Verdict(reason="duplicate", ack=False)
        return None

    def still_valid(self, device: str, tensors: Weights, samples: int, selected: Container[str],
                    weights: Weights) -> bool:
        """An update read back from disk on resume still passes the checks."""
        return device in selected and check_update(tensors, weights) is None and check_samples(samples) is None

    def aggregate(self, weights: Weights, accepted: dict[str, tuple[Weights, int]]) -> Weights:
        """The next global model (unchanged when nothing came in); independent of arrival order."""
        if not accepted:
            return weights
        names = sorted(accepted)
        cfg = self.config
        step = cfg.server_step if cfg.algorithm == "reptile" else 1.0
        return reptile_update(weights, [accepted[n][0] for n in names], [accepted[n][1] for n in names], step=step,
                              rule=cfg.robust, max_norm=cfg.clip)


__all__ = ["ALGORITHMS", "JobConfig", "RoundStrategy", "Verdict"]
