"""The root of hierarchical rounds (docs/scale.md): it owns the global model and hears only its edges.

Round r: the root publishes the global model (retained, listing every edge as a participant);
each edge (``federated.edge``) runs the round on its slice of the fleet and answers with one
``partial`` message: the weighted mean of its devices' deltas, the weight it stands for, and how
many devices it selected and used. The root closes the round when every edge that is online has
answered (an edge whose MQTT last will said "offline" is not waited for: its devices count as
missing) or at the deadline, and moves the model by ``hierarchy.root_update``. With the
sample-weighted rules that is the flat aggregator's model for the same updates.

Everything else is the flat ``Aggregator``: state on disk after every step (``state.json`` the
commit point; the model; one file per accepted partial), resume mid-round, a handler that never
raises, a round announced again (``nudge_after``) so that an edge whose partial a dying broker node
lost sends it again, and a round that got no partial at all by its deadline given up to two more
deadlines (``extend_empty``) rather than closed empty.
"""

from __future__ import annotations

from collections.abc import Container, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgebert.federated.aggregate import Weights
from edgebert.federated.aggregator import Aggregator, RoundLog
from edgebert.federated.hierarchy import Partial, check_partial, edge_name, root_update
from edgebert.federated.strategy import JobConfig, RoundStrategy, Verdict
from edgebert.messaging.protocol import Message
from edgebert.messaging.transport import Channel

ROOT = "root"


@dataclass(frozen=True)
class RootStrategy(RoundStrategy):
    """Every edge takes part in every round; a partial counts when its edge sent it for this round,
    once, with a mean shaped like the model, finite, and a positive weight (or none at all: an edge
    none of whose devices answered)."""

    edges: int = 1

    @property
    def names(self) -> list[str]:
        return [edge_name(i) for i in range(self.edges)]

    def knows(self, edge: str) -> bool:
        return edge in self.names

    def select(self, known: Iterable[str], round_: int) -> list[str]:
        return self.names

    def quorum(self, selected: int) -> int:
        return selected

    def check(self, edge: str, msg: Message, round_: int, selected: Container[str], accepted: Container[str],
              weights: Weights) -> Verdict:
        refused = self.admit(edge, msg, "partial", round_, selected, accepted)
        if refused is not None:
            return refused
        try:
            weight, devices = float(msg.info["weight"]), int(msg.info["devices"])
        except (KeyError, TypeError, ValueError):
            return Verdict(reason="invalid: expected info.weight and info.devices")
        if devices == 0 and weight == 0 and not msg.tensors:  # an edge none of whose devices answered
            return Verdict({}, samples=0.0)
        reason = check_partial(Partial(msg.tensors, weight, devices), weights)
        return Verdict(reason=f"invalid: {reason}") if reason else Verdict(msg.tensors, samples=weight)

    def still_valid(self, edge: str, tensors: Weights, samples: float, selected: Container[str],
                    weights: Weights) -> bool:
        if edge not in selected:
            return False
        return (samples == 0 and not tensors) or check_partial(Partial(tensors, float(samples), 1), weights) is None

    def aggregate(self, weights: Weights, accepted: dict[str, tuple[Weights, Any]]) -> Weights:
        partials = [Partial(accepted[e][0], float(accepted[e][1]), 1) for e in sorted(accepted) if accepted[e][1] > 0]
        step = self.config.server_step if self.config.algorithm == "reptile" else 1.0
        return root_update(weights, partials, step)


class RootAggregator(Aggregator):
    def __init__(self, channel: Channel, config: JobConfig, init: Weights, state_dir: Path, edges: int,
                 edge_keys: dict[str, bytes] | None = None, keep_history: bool = False,
                 nudge_after: float | None = 0.9) -> None:
        """``edges`` edge aggregators (``edge0`` … ``edge{edges-1}``) serve the fleet; ``edge_keys``
        (edge name -> key): when given, partials must carry an HMAC tag made with their edge's key."""
        self._devices: dict[str, tuple[int, int]] = {}  # edge -> (devices selected, devices used) this round
        super().__init__(channel, config, init, state_dir, devices=[edge_name(i) for i in range(edges)],
                         keep_history=keep_history, strategy=RootStrategy(config, edge_keys, edges))
        self.nudge_after = nudge_after
        self.ack_accepted = False  # nobody listens: an edge whose partial did not come is asked again
        self.extend_empty = 2  # a round none of whose partials came (the broker failing over) is given more time

    def update_filter(self) -> str:
        return self.ch.topics.partials(self.cfg.job)

    def status_filter(self) -> str:
        return self.ch.topics.edge_statuses(self.cfg.job)

    def _enough(self) -> bool:
        """Every edge that is online has answered (and at least one has)."""
        waiting = [e for e in self.selected if e not in self.accepted and e not in self.offline]
        return bool(self.accepted) and not waiting

    def _on_status(self, topic: str, msg: Message) -> None:
        super()._on_status(topic, msg)
        if msg.kind == "status" and msg.info.get("status") == "offline":
            self._maybe_close("quorum")  # do not wait for an edge that is gone

    def _check_and_accept(self, topic: str, device: str, msg: Message) -> bool:
        accepted = super()._check_and_accept(topic, device, msg)
        if accepted:
            with self.lock:
                info = msg.info
                self._devices[device] = (int(info.get("selected", 0) or 0), int(info.get("devices", 0) or 0))
        return accepted

    def _round_log(self, why: str) -> RoundLog:
        log = super()._round_log(why)
        log.devices_selected = sum(s for s, _ in self._devices.values())
        log.devices_accepted = sum(d for _, d in self._devices.values())
        self._devices = {}
        return log


__all__ = ["ROOT", "RootAggregator", "RootStrategy"]
