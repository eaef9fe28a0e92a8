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

from edgebert.federated.aggregate import fedprox_gradient, quantize_int8
from edgebert.federated.auth import sign_update
from edgebert.messaging.protocol import Message
from edgebert.messaging.transport import Channel
from edgebert.runtime.online import OnlineLearner

DataFn = Callable[[int, int], tuple[np.ndarray, np.ndarray]]  # (round, n) -> local samples


class DeviceClient:
    def __init__(self, channel: Channel, job: str, learner: OnlineLearner, data: DataFn, inner_steps: int = 10,
                 shots: int = 10, fedprox_mu: float = 0.0, int8_updates: bool = False,
                 update_key: bytes | None = None) -> None:
        """``update_key``: the device's key (``federated.auth``); every update is tagged with it."""
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
                self.ch.send(self.ch.topics.update(self.job, self.me), self._last[1])
            return
        with self._lock:
            update = self._train(msg)
        if self.key is not None:
            update = sign_update(update, self.key)
        self._last = (msg.round, update)
        self.rounds_done.append(msg.round)
        self.ch.send(self.ch.topics.update(self.job, self.me), update)

    def _train(self, msg: Message) -> Message:
        global_w = {k: v.astype(np.float32) for k, v in msg.tensors.items()}
        self.learner.set_weights(global_w)
        x, y = self.data(msg.round, self.shots)
        losses = []
        for _ in range(self.inner_steps):
            if self.mu:  # FedProx: add mu * (w - w_global) to the gradient of the local loss
                loss, grads = self.learner.loss_and_grads(x, self.learner._targets(y, len(x)))
                prox = fedprox_gradient(self.learner.get_weights(), global_w, self.mu)
                for i in range(len(self.learner.W)):
                    grads[2 * i] = grads[2 * i] + prox[f"layers.{i}.weight"].T
                    grads[2 * i + 1] = grads[2 * i + 1] + prox[f"layers.{i}.bias"]
                self.learner._step(grads)
            else:
                loss = self.learner.learn_many(x, y)
            losses.append(loss)
        adapted = self.learner.get_weights()
        metrics = {"loss_first": float(losses[0]), "loss_last": float(losses[-1])} if losses else {}
        if not self.int8:
            return Message("update", self.me, job=self.job, round=msg.round, model_version=msg.model_version,
                           samples=len(x), metrics=metrics, tensors=adapted)
        delta = {k: adapted[k] - global_w[k] for k in adapted}
        codes, self._residual = quantize_int8(delta, self._residual)
        tensors: dict[str, np.ndarray] = {}
        for k, (q, scale) in codes.items():
            tensors[k], tensors[f"{k}.scale"] = q, np.array([scale], np.float32)
        return Message("update", self.me, job=self.job, round=msg.round, model_version=msg.model_version,
                       samples=len(x), metrics=metrics, info={"encoding": "int8-delta"}, tensors=tensors)
