"""An edge aggregator of hierarchical rounds (docs/scale.md): one slice of the fleet, one partial per round.

Edge ``edgeK`` of ``E`` serves the devices with ``hierarchy.edge_of(device, E) == edgeK`` (a stable
hash of the id, which the devices compute too). When the root publishes round r's global model,
the edge selects its participants among its online devices (the job's fraction of its slice) and
sends each of them the model on its own call topic, so a round costs messages in proportion to its
participants, not to the fleet. It checks every update exactly as the flat aggregator does
(``RoundStrategy.check``: key, round, selection, duplicates, layout, finiteness), and at its quorum
or its deadline (``EDGE_DEADLINE`` of the job's, so that it answers before the root gives up) it
sends the root one ``partial``: its devices' robust weighted mean delta (``hierarchy.edge_partial``)
and what it stands for. An edge none of whose devices answered says so with an empty partial.

State on disk like the flat aggregator's (``state.json`` the commit point, one file per accepted
update), without the model: a restarted edge takes it from the root's retained message, reads its
accepted updates back, calls the devices it still misses, and sends its partial again if it had
sent it. Its MQTT last will tells the root it is gone, so the root does not wait for it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgebert.federated.aggregate import Weights
from edgebert.federated.aggregator import Aggregator
from edgebert.federated.auth import sign_update
from edgebert.federated.hierarchy import edge_name, edge_of, edge_partial
from edgebert.federated.strategy import JobConfig, RoundStrategy
from edgebert.messaging.protocol import Message, tensors_to_bytes
from edgebert.messaging.transport import Channel

EDGE_DEADLINE = 0.8  # an edge closes its round at this share of the job's deadline


@dataclass(frozen=True)
class EdgeStrategy(RoundStrategy):
    """The flat strategy restricted to one edge's slice of the fleet."""

    edge: str = "edge0"
    edges: int = 1

    def knows(self, device: str) -> bool:
        return edge_of(device, self.edges) == self.edge and super().knows(device)

    def select(self, known: Iterable[str], round_: int) -> list[str]:
        return super().select([d for d in known if edge_of(d, self.edges) == self.edge], round_)


def edge_config(config: JobConfig, edges: int) -> JobConfig:
    """The job as one of ``edges`` edges runs it: its share of the minimum participants, an earlier deadline."""
    return replace(config, min_participants=max(1, math.ceil(config.min_participants / edges)),
                   deadline_s=config.deadline_s * EDGE_DEADLINE)


class EdgeAggregator(Aggregator):
    def __init__(self, channel: Channel, config: JobConfig, index: int, edges: int, state_dir: Path,
                 device_keys: dict[str, bytes] | None = None, devices: list[str] | None = None,
                 edge_key: bytes | None = None, nudge_after: float | None = 0.5) -> None:
        """Edge ``index`` of ``edges``; ``device_keys`` as for the flat aggregator; ``edge_key``
        tags its partials (the root holds it); ``devices``: ids known before they say "online"."""
        if not 0 <= index < edges:
            raise ValueError(f"edge: expected an index in [0, {edges}), found {index}")
        self.edge, self.edges, self.edge_key = edge_name(index), edges, edge_key
        self.partial_sent = self._finishing = False
        strategy = EdgeStrategy(edge_config(config, edges), device_keys, self.edge, edges)
        super().__init__(channel, strategy.config, {}, state_dir,
                         devices=[d for d in devices or [] if strategy.knows(d)], strategy=strategy)
        self.nudge_after = nudge_after
        self.ack_accepted = False  # a message per participant saved: a device whose update did not come is called again
        t = channel.topics
        channel.subscribe(t.model(config.job), self._on_root_model)
        channel.send(t.edge_status(config.job, self.edge), Message("status", self.edge, info={"status": "online"}),
                     retain=True)

    # ---------------------------------------------------------------- topics
    def update_filter(self) -> str:
        return self.ch.topics.edge_updates(self.cfg.job, self.edge)

    def model_topic(self) -> str:  # retained: only the final model (rounds go to each participant)
        return self.ch.topics.edge_model(self.cfg.job, self.edge)

    # ---------------------------------------------------------------- persistence (no model: the root has it)
    def _state(self) -> dict[str, Any]:
        return {**super()._state(), "partial_sent": self.partial_sent}

    def _save_model(self) -> None:
        pass

    def _resume(self) -> None:
        self.partial_sent = bool(self._read_state().get("partial_sent"))
        self.weights, self.accepted = {}, {}  # until the root's model comes: then the updates are read back

    # ---------------------------------------------------------------- rounds
    def _on_root_model(self, topic: str, msg: Message) -> None:
        if msg.kind != "model" or msg.job != self.cfg.job:
            return
        if msg.info.get("final"):
            with self.lock:
                if self.done.is_set() or self._finishing:
                    return
                self._finishing = True
            self.ch.send(self.model_topic(), Message("model", self.ch.me, job=self.cfg.job, round=msg.round,
                                                     model_version=msg.round, info={"final": True},
                                                     tensors=msg.tensors), retain=True)
            self.done.set()  # after the send: ``serve`` returns and the service hangs up once it is set
            return
        if self.edge not in msg.info.get("participants", []):
            return
        resend = False
        with self.lock:
            if msg.round < self.round:
                return
            if msg.round == self.round and self.weights:  # this round is open here already
                resend = self.partial_sent and self.edge in msg.info.get("missing", [])
                opened = False
            else:
                resumed = msg.round == self.round  # a restart: read back what was accepted
                self.weights = {k: v.astype(np.float32) for k, v in msg.tensors.items()}
                if resumed:
                    self._load_accepted()
                else:
                    self.round, self.selected, self.accepted, self.partial_sent = msg.round, [], {}, False
                    self._reported = {}
                opened, resend = True, resumed and self.partial_sent
        if opened:
            self.start_round()
        if resend:
            self._send_partial()

    def _announce_round(self) -> None:
        """Call every participant still missing, each on its own topic, with the model (serialised once)."""
        with self.lock:
            if not self.weights or self.partial_sent:
                return
            missing = [d for d in self.selected if d not in self.accepted]
            body = tensors_to_bytes(self.weights)
            deadline = self._deadline_epoch()
            config = self.cfg.to_info()
            round_ = self.round
        for device in missing:
            self.ch.send(self.ch.topics.call(self.cfg.job, device),
                         Message("model", self.ch.me, job=self.cfg.job, round=round_, model_version=round_,
                                 info={"participants": [device], "missing": [device], "deadline": deadline,
                                       "config": config, "edge": self.edge}, body=body))

    def _maybe_close(self, why: str) -> None:
        with self.lock:
            if self.done.is_set() or self.partial_sent or not self.weights:
                return
            if why != "deadline" and self.selected and not self._enough():
                return  # (an edge with no device online answers at once, with an empty partial)
            self.logs.append(self._round_log(why))
            self.partial_sent = True
            self._commit()
        self._send_partial()

    def _send_partial(self) -> None:
        with self.lock:
            names = sorted(self.accepted)
            info: dict[str, object] = {"selected": len(self.selected), "devices": 0, "weight": 0.0}
            tensors: Weights = {}
            if names:
                partial = edge_partial(self.weights, [self.accepted[n][0] for n in names],
                                       [int(self.accepted[n][1]) for n in names], self.cfg.robust, self.cfg.clip)
                tensors, info["devices"], info["weight"] = partial.mean, partial.devices, partial.weight
            msg = Message("partial", self.edge, job=self.cfg.job, round=self.round, model_version=self.round,
                          samples=int(info["devices"]), metrics=self._reported_means(), info=info, tensors=tensors)
        if self.edge_key is not None:
            msg = sign_update(msg, self.edge_key)
        self.ch.send(self.ch.topics.partial(self.cfg.job, self.edge), msg)

    def serve(self, timeout: float | None = None) -> None:
        """Serve rounds until the root publishes its final model (or ``timeout`` s)."""
        end = None if timeout is None else time.monotonic() + timeout
        while not self.done.wait(0.05):
            self.watchdog()
            self.check_deadline()
            if end is not None and time.monotonic() > end:
                return


__all__ = ["EDGE_DEADLINE", "EdgeAggregator", "EdgeStrategy", "edge_config"]
