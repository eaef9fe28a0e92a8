"""The aggregator: runs a job's rounds over a Channel, persisting its state after every step.

Round r: pick participants (deterministic in (seed, r): fraction of the known devices, at least
``min_participants``), publish the global model (retained) with the participants and a deadline,
accept updates (right round, selected, first one per device, valid tensors), close the round on
quorum or at the deadline (late updates for a closed round are acknowledged as stale), aggregate
(Reptile step or FedAvg; by default the robust ``clipped_mean``), persist, publish the next model.
Every update is checked (sender owns the topic, HMAC tag with the device's key when keys are
given, round, selection, sample count, tensor names, shapes, finiteness, int8 scales) before
anything is written; a handler never raises (what fails is counted as a rejection reason).

State on disk (``state_dir``): ``state.json`` (the commit point, written last), the global model
``model-r{round}.safetensors``, and one ``updates/r{round}-{device}.safetensors`` per accepted
update. A killed aggregator resumes from it mid-round; it re-announces the round listing the
devices it still misses, and a device that already sent resends its cached update, so the run ends
with the model an uninterrupted run would have.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgebert.errors import EdgeBertError, InputError
from edgebert.federated.aggregate import Weights
from edgebert.federated.strategy import ALGORITHMS, JobConfig, RoundStrategy
from edgebert.files import atomic_write
from edgebert.messaging.protocol import Message
from edgebert.messaging.transport import Channel
from edgebert.tensors import load_tensors, save_tensors

NUDGE_EVERY = 0.1  # after the first nudge, the round is announced again every this share of the deadline


@dataclass
class RoundLog:
    round: int
    selected: int
    accepted: int
    rejected: dict[str, int] = field(default_factory=dict)
    wall_s: float = 0.0
    bytes_in: int = 0
    bytes_out: int = 0
    closed_by: str = ""
    device_metrics: dict[str, float] = field(default_factory=dict)  # means of what the accepted devices reported
    devices_selected: int = 0  # hierarchical rounds: the devices the edges selected and whose updates they used
    devices_accepted: int = 0


class Aggregator:
    """The flat aggregator; ``federated.root`` and ``federated.edge`` run hierarchical rounds with it
    by changing its topics (``update_filter``, ``status_filter``, ``model_topic``) and strategy."""

    def __init__(self, channel: Channel, config: JobConfig, init: Weights, state_dir: Path,
                 devices: list[str] | None = None, keep_history: bool = False,
                 device_keys: dict[str, bytes] | None = None, strategy: RoundStrategy | None = None) -> None:
        """``device_keys`` (device id -> update key, see ``federated.auth``): when given, only
        updates tagged with their sender's key count, and only keyed devices are known."""
        self.ch, self.cfg, self.dir = channel, config, Path(state_dir)
        self.strategy = strategy or RoundStrategy(config, device_keys)
        self.handler_errors = 0
        self.history: list[Weights] | None = [] if keep_history else None  # each round's global model (in memory)
        self.lock = threading.RLock()
        self.known: set[str] = set(devices or [])
        self.offline: set[str] = set()
        self.nudge_after: float | None = None  # share of the deadline after which the round is announced again
        self._nudged = 0  # (and again every NUDGE_EVERY of it)
        self.ack_accepted = True  # tell a device its update counted (refusals are always told)
        self.extend_empty = 0  # times a round that got nothing by its deadline is given another deadline
        self.logs: list[RoundLog] = []
        self.done = threading.Event()
        self.round_closed = threading.Condition(self.lock)
        (self.dir / "updates").mkdir(parents=True, exist_ok=True)
        if (self.dir / "state.json").is_file():
            self._resume()
        else:
            self.round, self.weights = 0, {k: v.astype(np.float32) for k, v in init.items()}
            self.selected: list[str] = []
            self.accepted: dict[str, tuple[Weights, float]] = {}
            self._commit()
        self._opened_at = self._started_at = time.monotonic()
        self._extended = 0
        self._bytes_in0, self._bytes_out0 = channel.received_bytes, channel.sent_bytes
        self.rejected: dict[str, int] = {}
        self._reported: dict[str, dict[str, float]] = {}
        channel.subscribe(self.update_filter(), self._on_update)
        channel.subscribe(self.status_filter(), self._on_status)

    # ---------------------------------------------------------------- topics
    def update_filter(self) -> str:
        return self.ch.topics.updates(self.cfg.job)

    def status_filter(self) -> str:
        return self.ch.topics.statuses()

    def model_topic(self) -> str:
        return self.ch.topics.model(self.cfg.job)

    # ---------------------------------------------------------------- persistence
    def _state(self) -> dict[str, Any]:
        return {"round": self.round, "selected": self.selected, "logs": [asdict(x) for x in self.logs],
                "known": sorted(self.known), "config": self.cfg.to_info()}

    def _save_model(self) -> None:
        save_tensors(self.dir / f"model-r{self.round}.safetensors", self.weights)

    def _commit(self) -> None:
        self._save_model()
        atomic_write(self.dir / "state.json", json.dumps(self._state()))  # the commit point
        for old in self.dir.glob("model-r*.safetensors"):
            if old.name != f"model-r{self.round}.safetensors":
                old.unlink(missing_ok=True)
        for old in (self.dir / "updates").glob("r*-*.safetensors"):
            if not old.name.startswith(f"r{self.round}-"):
                old.unlink(missing_ok=True)

    def _read_state(self) -> dict[str, Any]:
        state: dict[str, Any] = json.loads((self.dir / "state.json").read_text())
        self.round, self.selected = int(state["round"]), list(state["selected"])
        self.known |= set(state.get("known", []))
        self.logs = [RoundLog(**x) for x in state.get("logs", [])]
        return state

    def _resume(self) -> None:
        self._read_state()
        self.weights = load_tensors(self.dir / f"model-r{self.round}.safetensors")[0]
        self._load_accepted()

    def _load_accepted(self) -> None:
        """The current round's accepted updates, read back from disk and checked again."""
        self.accepted = {}
        for path in sorted((self.dir / "updates").glob(f"r{self.round}-*.safetensors")):
            try:  # written only after every check; a file damaged on disk is dropped (the device resends)
                tensors, meta = load_tensors(path)
                raw = str(meta["samples"])  # a device's sample count, or an edge's (float) weight
                device, samples = meta["device"], int(raw) if raw.isdigit() else float(raw)
                if not self.strategy.still_valid(device, tensors, samples, self.selected, self.weights):
                    raise InputError("fails the update checks")
            except Exception:  # noqa: BLE001 - any damage means: not an accepted update
                path.unlink(missing_ok=True)
                continue
            self.accepted[device] = (tensors, samples)

    # ---------------------------------------------------------------- rounds
    def select(self, round_: int) -> list[str]:
        return self.strategy.select(self.known, round_)

    def announce(self, finished: bool = False) -> None:
        """The retained job announcement: the job's configuration, for devices that join later."""
        done = finished or self.done.is_set()
        self.ch.send(self.ch.topics.job(self.cfg.job),
                     Message("job", self.ch.me, job=self.cfg.job, round=self.round, model_version=self.round,
                             info={"config": self.cfg.to_info(), "status": "done" if done else "running"}),
                     retain=True)

    def start_round(self) -> None:
        with self.lock:
            if not self.selected:
                self.selected = self.select(self.round)
                self._commit()
            self._opened_at = self._started_at = time.monotonic()
            self._nudged = self._extended = 0
            self._bytes_in0, self._bytes_out0 = self.ch.received_bytes, self.ch.sent_bytes
            self.rejected = {}
        self._announce_round()
        self._maybe_close("quorum")

    def _deadline_epoch(self) -> float:
        """The open round's deadline as wall-clock time (what devices are told)."""
        return time.time() + self.cfg.deadline_s - (time.monotonic() - self._opened_at)

    def _announce_round(self) -> None:
        """Publish the round (retained): its model, participants, and those still missing (who resend)."""
        with self.lock:
            missing = [d for d in self.selected if d not in self.accepted]
            info = {"participants": self.selected, "missing": missing, "deadline": self._deadline_epoch(),
                    "config": self.cfg.to_info()}
            msg = Message("model", self.ch.me, job=self.cfg.job, round=self.round, model_version=self.round,
                          info=info, tensors=self.weights)
        self.ch.send(self.model_topic(), msg, retain=True)

    def _reject(self, device: str, reason: str) -> None:
        key = reason.split(":")[0]
        self.rejected[key] = self.rejected.get(key, 0) + 1
        self.ch.send(self.ch.topics.ack(self.cfg.job, device),
                     Message("ack", self.ch.me, job=self.cfg.job, round=self.round, info={"accepted": False,
                                                                                         "reason": reason}))

    def _on_status(self, topic: str, msg: Message) -> None:
        if msg.kind != "status" or topic.split("/")[-2] != msg.sender or not self.strategy.knows(msg.sender):
            return
        with self.lock:
            if msg.info.get("status") == "online":
                self.known.add(msg.sender)
                self.offline.discard(msg.sender)
            elif msg.info.get("status") == "offline":
                self.offline.add(msg.sender)

    def _on_update(self, topic: str, msg: Message) -> None:
        """Check one update and accept it; nothing raised here can reach the transport's thread."""
        device = topic.rsplit("/", 1)[-1]
        try:
            accepted = self._check_and_accept(topic, device, msg)
        except Exception as exc:  # noqa: BLE001 - contain, count, and keep the round going
            with self.lock:
                self.handler_errors += 1
                self.rejected["error"] = self.rejected.get("error", 0) + 1
            print(f"aggregator: update from {device!r} failed: {type(exc).__name__}: {str(exc)[:200]}", flush=True)
            return
        if accepted:
            if self.ack_accepted:
                self.ch.send(self.ch.topics.ack(self.cfg.job, device),
                             Message("ack", self.ch.me, job=self.cfg.job, round=msg.round, info={"accepted": True}))
            self._maybe_close("quorum")

    def _check_and_accept(self, topic: str, device: str, msg: Message) -> bool:
        with self.lock:
            verdict = self.strategy.check(device, msg, self.round, self.selected, self.accepted, self.weights)
            if not verdict.accepted:
                if verdict.ack:
                    self._reject(device, verdict.reason)
                else:
                    self.rejected[verdict.key] = self.rejected.get(verdict.key, 0) + 1
                return False
            tensors = verdict.tensors
            assert tensors is not None
            samples = msg.samples if verdict.samples is None else verdict.samples
            save_tensors(self.dir / "updates" / f"r{self.round}-{device}.safetensors", tensors,
                          {"device": device, "samples": str(samples)})
            self.accepted[device] = (tensors, samples)
            self._reported[device] = dict(msg.metrics)
            return True

    def _enough(self) -> bool:
        """Whether the updates in close the round before its deadline."""
        return len(self.accepted) >= self.strategy.quorum(len(self.selected))

    def _maybe_close(self, why: str) -> None:
        with self.lock:
            if self.done.is_set() or not self.selected:
                return
            if why != "deadline" and not self._enough():
                return
            new = self.strategy.aggregate(self.weights, self.accepted)
            self.logs.append(self._round_log(why))
            self._reported = {}
            self.weights, self.round, self.selected, self.accepted = new, self.round + 1, [], {}
            if self.history is not None:
                self.history.append(new)
            self._commit()
            self.round_closed.notify_all()
            finished = self.round >= self.cfg.rounds
        if finished:  # published before ``done`` is set: a service closes its connection once it is
            self.announce(finished=True)
            self.ch.send(self.model_topic(),
                         Message("model", self.ch.me, job=self.cfg.job, round=self.round, model_version=self.round,
                                 info={"participants": [], "final": True}, tensors=self.weights), retain=True)
            self.done.set()
        else:
            self.start_round()

    def _reported_means(self) -> dict[str, float]:
        reported = [self._reported[n] for n in self.accepted if n in self._reported]
        return {k: float(np.mean([r[k] for r in reported if k in r])) for k in {k for r in reported for k in r}}

    def _round_log(self, why: str) -> RoundLog:
        return RoundLog(self.round, len(self.selected), len(self.accepted), dict(self.rejected),
                        time.monotonic() - self._started_at, self.ch.received_bytes - self._bytes_in0,
                        self.ch.sent_bytes - self._bytes_out0, why, self._reported_means())

    def watchdog(self) -> None:
        """Fail loudly (EdgeBertError) if the transport's network thread died: a job that can no
        longer hear its devices must not wait out its deadlines and print "finished"."""
        loop = getattr(self.ch.transport, "loop", None)
        check = getattr(loop, "check", None)
        if check is not None:
            try:
                check()
            except EdgeBertError as exc:
                raise EdgeBertError(f"job {self.cfg.job}: {exc}") from None

    def check_deadline(self) -> None:
        with self.lock:
            open_s = time.monotonic() - self._opened_at
            running = bool(self.selected) and not self.done.is_set()
            late = running and open_s > self.cfg.deadline_s
            if late and not self.accepted and self._extended < self.extend_empty:
                late, self._extended = False, self._extended + 1  # nothing came: a broker failing over, say
                self._opened_at, self._nudged = time.monotonic(), 0
                open_s, extend = 0.0, True
            else:
                extend = False
            nudge = running and not late and self.nudge_after is not None \
                and open_s > self.nudge_after * self.cfg.deadline_s + self._nudged * NUDGE_EVERY * self.cfg.deadline_s
            if nudge:
                self._nudged += 1
        if late:
            self._maybe_close("deadline")
        elif nudge or extend:  # whoever sent what was lost (a broker node died under it) sends it again
            self._announce_round()

    def run(self, timeout: float | None = None, wait_for_devices: float = 30.0) -> Weights:
        """Run every remaining round (blocking); returns the final global model."""
        deadline = time.monotonic() + wait_for_devices
        while len(self.known) < self.cfg.min_participants and time.monotonic() < deadline:
            time.sleep(0.05)
        if len(self.known) < self.cfg.min_participants:
            raise InputError(f"job {self.cfg.job}: expected at least {self.cfg.min_participants} devices online, "
                             f"found {len(self.known)}")
        if self.round >= self.cfg.rounds:
            self.done.set()
            self.announce()
            return self.weights
        self.announce()
        self.start_round()
        end = None if timeout is None else time.monotonic() + timeout
        while not self.done.wait(0.05):
            self.watchdog()
            self.check_deadline()
            if end is not None and time.monotonic() > end:
                break
        return self.weights

    def drive(self, on_round: Callable[[int, Weights], None] = lambda n, w: None) -> Weights:
        """Announce and run every round in this thread (devices already known); ``on_round(n, weights)``
        is called as each round closes, with the global model it produced (exactly that round's with
        ``keep_history``; otherwise the latest, when rounds close faster than ``on_round`` returns)."""
        self.announce()
        self.start_round()
        seen = 0
        while True:
            with self.round_closed:
                self.round_closed.wait(0.05)
            self.watchdog()
            self.check_deadline()
            with self.lock:
                closed, weights, done = len(self.logs), self.weights, self.done.is_set()
                history = list(self.history) if self.history is not None else None
            while seen < closed:
                seen += 1
                on_round(seen, history[seen - 1] if history and len(history) >= seen else weights)
            if done:
                return weights

    def metrics(self) -> list[dict[str, Any]]:
        return [asdict(x) for x in self.logs]


__all__ = ["ALGORITHMS", "Aggregator", "JobConfig", "RoundLog"]
