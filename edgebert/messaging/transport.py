"""Transports carry bytes on topics; ``Channel`` carries protocol messages over a transport.

A transport is anything with ``publish(topic, payload, retain)``, ``subscribe(filter, handler)``
and ``close()``. ``InMemoryBus`` is one in-process broker for unit tests (MQTT topic matching,
retained messages, a message-size limit and a hook to drop messages); ``edgebert.messaging.mqtt``
is the real one. ``Channel`` splits large messages into chunks, reassembles incoming ones, asks
the sender again for chunks that do not arrive, and drops what does not decode (counting why).
"""

from __future__ import annotations

import sys
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

from edgebert.messaging.protocol import (
    DEFAULT_MAX_MESSAGE_BYTES,
    DEFAULT_MAX_PAYLOAD_BYTES,
    Message,
    ProtocolError,
    Reassembler,
    Topics,
    split,
)

Handler = Callable[[str, bytes], None]


def topic_matches(pattern: str, topic: str) -> bool:
    """MQTT filter matching with '+' (one level) and '#' (the rest)."""
    p, t = pattern.split("/"), topic.split("/")
    for i, part in enumerate(p):
        if part == "#":
            return True
        if i >= len(t) or (part != "+" and part != t[i]):
            return False
    return len(p) == len(t)


class Transport(Protocol):
    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None: ...
    def subscribe(self, topic_filter: str, handler: Handler) -> None: ...
    def close(self) -> None: ...


class InMemoryBus:
    """An in-process broker: ``bus.client(name)`` gives each participant its own transport."""

    def __init__(self, max_message_bytes: int | None = None) -> None:
        self.max_message_bytes = max_message_bytes
        self.retained: dict[str, bytes] = {}
        self.subs: list[tuple[str, str, Handler]] = []
        self.drop: Callable[[str, bytes], bool] = lambda topic, payload: False
        self._lock = threading.RLock()

    def client(self, name: str) -> InMemoryTransport:
        return InMemoryTransport(self, name)

    def _publish(self, topic: str, payload: bytes, retain: bool) -> None:
        if self.max_message_bytes is not None and len(payload) > self.max_message_bytes:
            return  # a real broker drops (or disconnects) oversize publishes
        with self._lock:
            if retain:
                self.retained[topic] = payload
            targets = [h for _, f, h in self.subs if topic_matches(f, topic)]
        for handler in targets:
            if not self.drop(topic, payload):
                handler(topic, payload)


class InMemoryTransport:
    def __init__(self, bus: InMemoryBus, name: str) -> None:
        self.bus, self.name = bus, name

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        self.bus._publish(topic, payload, retain)

    def subscribe(self, topic_filter: str, handler: Handler) -> None:
        with self.bus._lock:
            self.bus.subs.append((self.name, topic_filter, handler))
            retained = [(t, p) for t, p in self.bus.retained.items() if topic_matches(topic_filter, t)]
        for topic, payload in retained:
            handler(topic, payload)

    def close(self) -> None:
        with self.bus._lock:
            self.bus.subs = [s for s in self.bus.subs if s[0] != self.name]


MessageHandler = Callable[[str, Message], None]


class Channel:
    """Protocol messages over a transport, with chunking, reassembly and re-requests."""

    def __init__(self, transport: Transport, topics: Topics, me: str,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
                 max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES, resend_after: float = 2.0) -> None:
        self.transport, self.topics, self.me = transport, topics, me
        self.max_message_bytes, self.max_payload_bytes = max_message_bytes, max_payload_bytes
        self.resend_after = resend_after
        self.rejected: dict[str, int] = {}
        self.handler_errors = 0
        self.last_rejection = ""
        self.sent_bytes = self.received_bytes = 0
        self._sent: OrderedDict[str, tuple[str, list[bytes]]] = OrderedDict()
        self._reassembly = Reassembler(max_payload_bytes)
        self._lock = threading.Lock()
        transport.subscribe(topics.resend(me), self._on_resend)

    def send(self, topic: str, message: Message, retain: bool = False) -> None:
        payload = message.to_bytes()
        parts = split(payload, self.me, self.max_message_bytes)
        if len(parts) > 1:
            first = Message.from_bytes(parts[0]).info["payload"]
            with self._lock:
                self._sent[first] = (topic, parts)
                while len(self._sent) > 16:
                    self._sent.popitem(last=False)
        for part in parts:
            self.sent_bytes += len(part)
            self.transport.publish(topic, part, retain=retain and len(parts) == 1)

    def subscribe(self, topic_filter: str, handler: MessageHandler) -> None:
        def on_bytes(topic: str, payload: bytes) -> None:
            self.received_bytes += len(payload)
            try:
                msg = Message.from_bytes(payload, self.max_payload_bytes)
                if msg.kind == "chunk":
                    with self._lock:
                        whole = self._reassembly.add(msg)
                    if whole is None:
                        return
                    msg = Message.from_bytes(whole, self.max_payload_bytes)
            except ProtocolError as exc:
                self._reject(str(exc))
                return
            try:
                handler(topic, msg)
            except Exception as exc:  # noqa: BLE001 - contain, count, log: one message never stops a job
                self.handler_errors += 1
                self._reject(f"handler: {type(exc).__name__}: {str(exc)[:200]}")
                print(f"channel {self.me}: handler for {topic[:120]} failed: {self.last_rejection}",
                      file=sys.stderr, flush=True)

        self.transport.subscribe(topic_filter, on_bytes)

    def _reject(self, reason: str) -> None:
        key = reason.split(":", 1)[0]
        self.rejected[key] = self.rejected.get(key, 0) + 1
        self.last_rejection = reason

    def request_missing(self) -> int:
        """Ask senders again for chunks pending longer than ``resend_after``; returns requests sent."""
        with self._lock:
            missing = self._reassembly.missing(self.resend_after)
        for (sender, payload_id), indices in missing.items():
            request = Message("resend", self.me, info={"payload": payload_id, "missing": indices})
            self.transport.publish(self.topics.resend(sender), request.to_bytes())
        return len(missing)

    def _on_resend(self, topic: str, payload: bytes) -> None:
        try:
            req = Message.from_bytes(payload, 64 * 1024)
            payload_id, indices = str(req.info["payload"]), [int(i) for i in req.info["missing"]]
        except (ProtocolError, KeyError, TypeError, ValueError) as exc:
            self._reject(f"resend: {exc}")
            return
        with self._lock:
            sent = self._sent.get(payload_id)
        if sent is None:
            return
        target, parts = sent
        for i in indices:
            if 0 <= i < len(parts):
                self.transport.publish(target, parts[i])


__all__ = ["Channel", "InMemoryBus", "Transport", "topic_matches"]
