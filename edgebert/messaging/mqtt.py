"""MQTT transport on paho-mqtt 2.x (the only module that imports paho).

``MqttLoop`` (``messaging.loop``) is the one thread that multiplexes the sockets of any number
of paho clients through paho's external-loop API. ``MqttTransport`` is one client: QoS 1,
a retained "online" status with a last will "offline", re-subscription on reconnect, and
reconnection with exponential backoff while the broker is unreachable.
"""

from __future__ import annotations

import random
import ssl
import threading
import time
import urllib.parse
from dataclasses import dataclass

import paho.mqtt.client as paho

from edgebert.errors import BrokerError
from edgebert.messaging.loop import MqttLoop, default_loop

__all__ = ["BrokerConfig", "MqttLoop", "MqttTransport", "default_loop"]
from edgebert.messaging.transport import Handler, topic_matches


@dataclass(frozen=True)
class BrokerConfig:
    """``mqtt://[user:password@]host[:port]`` or ``mqtts://…`` (TLS, optional CA file)."""

    url: str = "mqtt://127.0.0.1:1883"
    username: str | None = None
    password: str | None = None
    ca_file: str | None = None
    keepalive: int = 30

    def __post_init__(self) -> None:
        u = urllib.parse.urlparse(self.url)
        if u.scheme not in ("mqtt", "mqtts") or not u.hostname:
            raise BrokerError(f"broker URL: expected mqtt://host[:port] or mqtts://host[:port], found {self.url!r}")

    @property
    def host(self) -> str:
        return urllib.parse.urlparse(self.url).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        u = urllib.parse.urlparse(self.url)
        return u.port or (8883 if u.scheme == "mqtts" else 1883)

    @property
    def tls(self) -> bool:
        return urllib.parse.urlparse(self.url).scheme == "mqtts"

    def credentials(self) -> tuple[str | None, str | None]:
        u = urllib.parse.urlparse(self.url)
        return (self.username or u.username, self.password or u.password)

    def redacted(self) -> str:
        """The URL without its password (secrets never go to logs)."""
        u = urllib.parse.urlparse(self.url)
        return f"{u.scheme}://{u.hostname}:{self.port}"








class MqttTransport:
    def __init__(self, config: BrokerConfig, client_id: str, loop: MqttLoop | None = None,
                 will: tuple[str, bytes] | None = None, retry: bool = False, connect_timeout: float = 10.0) -> None:
        self.config, self.client_id, self.loop = config, client_id, loop or default_loop()
        self.handlers: list[tuple[str, Handler]] = []
        self.connected = threading.Event()
        self._backoff, self._next_attempt, self._want = 0.5, 0.0, True
        self.paho = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
        user, password = config.credentials()
        if user:
            self.paho.username_pw_set(user, password)
        if config.tls:
            self.paho.tls_set(ca_certs=config.ca_file, cert_reqs=ssl.CERT_REQUIRED)
        if will is not None:
            self.paho.will_set(will[0], will[1], qos=1, retain=True)
        self.paho.max_queued_messages_set(0)
        self.paho.max_inflight_messages_set(1000)
        self.paho.on_connect, self.paho.on_disconnect, self.paho.on_message = self._on_connect, self._on_disconnect, \
            self._on_message
        self.paho.on_socket_open = lambda c, u, s: self.loop._watch(s, self, False)
        self.paho.on_socket_register_write = lambda c, u, s: self.loop.call(lambda: self.loop._watch(s, self, True))
        self.paho.on_socket_unregister_write = lambda c, u, s: self.loop.call(lambda: self.loop._watch(s, self, False))
        self.paho.on_socket_close = lambda c, u, s: self.loop._forget(s)
        self.loop.call_wait(lambda: self.loop.clients.append(self))
        try:
            self.loop.call_wait(self._connect)
        except OSError as exc:
            if not retry:
                self.loop.call_wait(lambda: self.loop.clients.remove(self))
                raise BrokerError(f"{config.redacted()}: expected a reachable MQTT broker, found: "
                                  f"{exc.strerror or exc}") from None
            self._schedule_retry()
        if not retry and not self.connected.wait(connect_timeout):
            raise BrokerError(f"{config.redacted()}: expected the broker to accept {client_id}, found no CONNACK")

    def _connect(self) -> None:
        self.paho.connect(self.config.host, self.config.port, self.config.keepalive)

    def _schedule_retry(self) -> None:
        self._next_attempt = time.monotonic() + self._backoff * (0.5 + random.random())
        self._backoff = min(self._backoff * 2, 30.0)

    def _maybe_reconnect(self, now: float) -> None:
        if self._want and not self.paho.is_connected() and self._next_attempt and now >= self._next_attempt:
            try:
                self.paho.reconnect()
                self._next_attempt = 0.0
            except OSError:
                self._schedule_retry()

    def _on_connect(self, client: paho.Client, userdata: object, flags: object, reason: object,
                    properties: object = None) -> None:
        if getattr(reason, "is_failure", False):
            self._schedule_retry()
            return
        self._backoff = 0.5
        for topic_filter, _ in self.handlers:
            client.subscribe(topic_filter, qos=1)
        self.connected.set()

    def _on_disconnect(self, client: paho.Client, userdata: object, flags: object, reason: object,
                       properties: object = None) -> None:
        self.connected.clear()
        if self._want:
            self._schedule_retry()

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        for topic_filter, handler in self.handlers:
            if topic_matches(topic_filter, msg.topic):
                try:
                    handler(msg.topic, msg.payload)
                except Exception as exc:  # noqa: BLE001 - one message never stops the loop
                    self.loop._contain(f"handler for {msg.topic[:120]}", exc)

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        self.paho.publish(topic, payload, qos=1, retain=retain)

    def subscribe(self, topic_filter: str, handler: Handler) -> None:
        self.handlers.append((topic_filter, handler))
        if self.paho.is_connected():
            self.loop.call(lambda: self.paho.subscribe(topic_filter, qos=1))

    def close(self) -> None:
        self._want = False

        def shut() -> None:
            try:
                self.paho.disconnect()
            except OSError:
                pass
            if self in self.loop.clients:
                self.loop.clients.remove(self)

        try:
            self.loop.call_wait(shut, timeout=5)
        except BrokerError:
            pass
