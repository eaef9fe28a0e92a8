"""The device side of federated (meta-)learning, torch-free, on the runtime's OnlineLearner.

A device announces itself (retained "online" status; its MQTT last will says "offline"),
listens to its job's retained global model, and when it is a participant of the round it
adapts ``inner_steps`` steps on its own data from the global weights and sends the adapted
weights (Reptile) / local weights (FedAvg), optionally as an int8 delta with error feedback.
It keeps its last update so that a restarted aggregator that still misses it gets it again.
Local learning (``learn_local``) does not need the broker at all.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from edgebert.federated.aggregate import fedprox_gradient
from edgebert.federated.auth import sign_update
from edgebert.federated.encoding import INT8_DELTA, encode_int8_delta
from edgebert.federated.hierarchy import edge_of
from edgebert.messaging.protocol import Message
from edgebert.messaging.transport import Channel
from edgebert.runtime.online import OnlineLearner

DataFn = Callable[[int, int], tuple[np.ndarray, np.ndarray]]  # (round, n) -> local samples


class DeviceClient:
    def __init__(self, channel: Channel, job: str, learner: OnlineLearner, data: DataFn, inner_steps: int = 10,
                 shots: int = 10, fedprox_mu: float = 0.0, int8_updates: bool = False,
                 update_key: bytes | None = None, edges: int = 0) -> None:
        """``update_key``: the device's key (``federated.auth``); every update is tagged with it.
        ``edges``: the job's rounds are hierarchical with this many edge aggregators (docs/scale.md):
        the device's edge calls it with the model when it takes part, and its updates go to that edge."""
        self.ch, self.job, self.learner, self.data = channel, job, learner, data
        self.key = update_key
        self.inner_steps, self.shots, self.mu, self.int8 = inner_steps, shots, fedprox_mu, int8_updates
        self.me = channel.me
        self.rounds_done: list[int] = []
        self.acks: list[dict[str, Any]] = []
        self.final: dict[str, np.ndarray] | None = None
        self._last: tuple[int, Message] | None = None
        self._residual: dict[str, np.ndarray] | None = None
        self._lock = threading.Lock()
        t = channel.topics
        if edges:
            edge = edge_of(self.me, edges)
            self.update_topic = t.edge_update(job, edge, self.me)
            channel.subscribe(t.call(job, self.me), self._on_model)
            channel.subscribe(t.edge_model(job, edge), self._on_model)  # retained: the final model
        else:
            self.update_topic = t.update(job, self.me)
            channel.subscribe(t.model(job), self._on_model)
        channel.subscribe(t.ack(job, self.me), lambda topic, m: self.acks.append({"round": m.round, **m.info}))
        channel.send(t.status(self.me), Message("status", self.me, info={"status": "online"}), retain=True)

    def learn_local(self, x: Any, y: Any) -> float:
        """Keep learning from the device's own stream, connected or not."""
        with self._lock:
            return self.learner.learn_one(x, y)

    def _on_model(self, topic: str, msg: Message) -> None:
        if msg.kind != "model" or msg.job != self.job:
            return
        if msg.info.get("final"):
            self.final = msg.tensors
            return
        if self.me not in msg.info.get("participants", []):
            return
        if self._last is not None and self._last[0] == msg.round:  # already trained this round
            if self.me in msg.info.get("missing", []):
                self.ch.send(self.update_topic, self._last[1])
            return
        with self._lock:
            update = self._train(msg)
        if self.key is not None:
            update = sign_update(update, self.key)
        self._last = (msg.round, update)
        self.rounds_done.append(msg.round)
        self.ch.send(self.update_topic, update)

    def _fedprox(self, global_w: dict[str, np.ndarray]) -> Callable[[list[np.ndarray]], list[np.ndarray]]:
        """FedProx: mu * (w - w_global) added to every gradient (weights are (in, out) in the learner)."""
        def hook(grads: list[np.ndarray]) -> list[np.ndarray]:
            prox = fedprox_gradient(self.learner.get_weights(), global_w, self.mu)
            return [g + (prox[f"layers.{i // 2}.weight"].T if i % 2 == 0 else prox[f"layers.{i // 2}.bias"])
                    for i, g in enumerate(grads)]
        return hook

    def _train(self, msg: Message) -> Message:
        global_w = {k: v.astype(np.float32) for k, v in msg.tensors.items()}
        self.learner.set_weights(global_w)
        x, y = self.data(msg.round, self.shots)
        losses = []
        hook = self._fedprox(global_w) if self.mu else None
        for _ in range(self.inner_steps):
            losses.append(self.learner.learn_many(x, y, grad_hook=hook))
        adapted = self.learner.get_weights()
        metrics = {"loss_first": float(losses[0]), "loss_last": float(losses[-1])} if losses else {}
        if not self.int8:
            return Message("update", self.me, job=self.job, round=msg.round, model_version=msg.model_version,
                           samples=len(x), metrics=metrics, tensors=adapted)
        tensors, self._residual = encode_int8_delta(adapted, global_w, self._residual)
        return Message("update", self.me, job=self.job, round=msg.round, model_version=msg.model_version,
                       samples=len(x), metrics=metrics, info={"encoding": INT8_DELTA}, tensors=tensors)
