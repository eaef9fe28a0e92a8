"""MQTT transport on paho-mqtt 2.x (the only module that imports paho).

``MqttLoop`` (``messaging.loop``) is the one thread that multiplexes the sockets of any number
of paho clients through paho's external-loop API. ``MqttTransport`` is one client: QoS 1,
a retained "online" status with a last will "offline", re-subscription on reconnect, and
reconnection with exponential backoff while the broker is unreachable.

A clustered broker is given as several URLs (``mqtt://a:1883,mqtt://b:1883,…``, the nodes of one
cluster): each client starts on the node its id hashes to (so a fleet spreads over the nodes) and,
when its node goes away or refuses it, reconnects to the next one.
"""

from __future__ import annotations

import random
import ssl
import sys
import threading
import time
import urllib.parse
import zlib
from dataclasses import dataclass

import paho.mqtt.client as paho

from edgebert.errors import BrokerError
from edgebert.messaging.loop import MqttLoop, default_loop

__all__ = ["BrokerConfig", "MqttLoop", "MqttTransport", "default_loop"]
from edgebert.messaging.transport import Handler, topic_matches

CONNACK_TIMEOUT_S = 10.0  # on reconnecting, a broker that accepted the TCP connection must answer within this


def _pending(info: paho.MQTTMessageInfo) -> bool:
    """A QoS 1 publish the broker has not acknowledged yet (one that failed outright is not pending)."""
    try:
        return not info.is_published()
    except (RuntimeError, ValueError):
        return False


@dataclass(frozen=True)
class BrokerConfig:
    """``mqtt://[user:password@]host[:port]`` or ``mqtts://…`` (TLS, optional CA file); the nodes of
    a clustered broker as several such URLs separated by commas (one scheme for all)."""

    url: str = "mqtt://127.0.0.1:1883"
    username: str | None = None
    password: str | None = None
    ca_file: str | None = None
    keepalive: int = 30

    def __post_init__(self) -> None:
        if not self.urls:
            raise BrokerError(f"broker URL: expected mqtt://host[:port] or mqtts://host[:port], found {self.url!r}")
        for url in self.urls:
            u = urllib.parse.urlparse(url)
            try:
                u.port  # noqa: B018 - raises on a port that is not a number
            except ValueError:
                u = urllib.parse.urlparse("")
            if u.scheme not in ("mqtt", "mqtts") or not u.hostname:
                raise BrokerError(f"broker URL: expected mqtt://host[:port] or mqtts://host[:port], found {url[:200]!r}")
        if len({urllib.parse.urlparse(url).scheme for url in self.urls}) > 1:
            raise BrokerError(f"broker URLs: expected one scheme for every node (mqtt or mqtts), found {self.redacted()}")

    @property
    def urls(self) -> tuple[str, ...]:
        """The nodes, in the order given."""
        return tuple(u.strip() for u in self.url.split(",") if u.strip())

    def endpoint(self, node: int = 0) -> tuple[str, int]:
        """(host, port) of node ``node`` (modulo the number of nodes)."""
        u = urllib.parse.urlparse(self.urls[node % len(self.urls)])
        return u.hostname or "127.0.0.1", u.port or (8883 if u.scheme == "mqtts" else 1883)

    @property
    def host(self) -> str:
        return self.endpoint(0)[0]

    @property
    def port(self) -> int:
        return self.endpoint(0)[1]

    @property
    def tls(self) -> bool:
        return urllib.parse.urlparse(self.urls[0]).scheme == "mqtts"

    def credentials(self) -> tuple[str | None, str | None]:
        u = urllib.parse.urlparse(self.urls[0])
        return (self.username or u.username, self.password or u.password)

    def redacted(self) -> str:
        """The URL(s) without a password (secrets never go to logs)."""
        parts = [urllib.parse.urlparse(url) for url in self.urls] or [urllib.parse.urlparse(self.url)]
        return ",".join(f"{u.scheme}://{u.hostname}:{self.endpoint(i)[1] if self.urls else ''}"
                        for i, u in enumerate(parts))








class MqttTransport:
    def __init__(self, config: BrokerConfig, client_id: str, loop: MqttLoop | None = None,
                 will: tuple[str, bytes] | None = None, retry: bool = False, connect_timeout: float = 10.0,
                 subscribe_qos: int = 1, birth: tuple[str, bytes] | None = None) -> None:
        """``subscribe_qos=0``: the broker delivers at most once (no per-subscription session state:
        on NATS that is no JetStream consumer per subscription, 10x faster connects and 16x less broker
        memory for a large fleet); for clients whose protocol repeats what is lost (devices)."""
        if subscribe_qos not in (0, 1):
            raise BrokerError(f"subscribe qos: expected 0 or 1, found {subscribe_qos!r}")
        self.subscribe_qos = subscribe_qos
        self.config, self.client_id, self.loop = config, client_id, loop or default_loop()
        self.handlers: list[tuple[str, Handler]] = []
        self.connected = threading.Event()
        self.node = zlib.crc32(client_id.encode()) % len(config.urls)  # the cluster node it starts on
        self._subscribing: dict[int, str] = {}  # message id of a SUBSCRIBE -> its topic filter
        self._resubscribe: list[tuple[float, str]] = []  # (when, filter) refused by the broker, to ask again
        self._backoff, self._next_attempt, self._want = 0.5, 0.0, True
        self._unacked: list[paho.MQTTMessageInfo] = []  # recent QoS 1 publishes (``flush`` waits for them)
        self._connack_by = 0.0  # a connect in flight must be answered by then, or the next node is tried
        self.paho = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
        user, password = config.credentials()
        if user:
            self.paho.username_pw_set(user, password)
        if config.tls:
            self.paho.tls_set(ca_certs=config.ca_file, cert_reqs=ssl.CERT_REQUIRED)
        if will is not None:
            self.paho.will_set(will[0], will[1], qos=1, retain=True)
        self.birth = birth  # published (retained) on every connect: the broker may have sent the will meanwhile
        self.paho.max_queued_messages_set(0)
        self.paho.max_inflight_messages_set(1000)
        self.paho.on_connect, self.paho.on_disconnect, self.paho.on_message = self._on_connect, self._on_disconnect, \
            self._on_message
        self.paho.on_subscribe = self._on_subscribe
        self.paho.on_socket_open = lambda c, u, s: self.loop._watch(s, self, False)
        self.paho.on_socket_register_write = lambda c, u, s: self.loop.call(lambda: self.loop._watch(s, self, True))
        self.paho.on_socket_unregister_write = lambda c, u, s: self.loop.call(lambda: self.loop._watch(s, self, False))
        self.paho.on_socket_close = lambda c, u, s: self.loop._forget(s)
        def join() -> None:
            self.loop.clients.append(self)
            self.loop.attention.add(self)  # until its CONNACK (or, with retry, its reconnection)
            self._connect()


        try:
            self.loop.call_wait(join)
        except OSError as exc:
            if not retry:
                self.loop.call_wait(lambda: self.loop.clients.remove(self))
                raise BrokerError(f"{config.redacted()}: expected a reachable MQTT broker, found: "
                                  f"{exc.strerror or exc}") from None
            self._schedule_retry()
        if not retry and not self.connected.wait(connect_timeout):
            raise BrokerError(f"{config.redacted()}: expected the broker to accept {client_id}, found no CONNACK")

    def _connect(self) -> None:
        tried = 0
        while True:  # every node once, from this client's own
            host, port = self.config.endpoint(self.node)
            try:
                self.paho.connect(host, port, self.config.keepalive)
                return
            except OSError:
                tried += 1
                if tried >= len(self.config.urls):
                    raise
                self.node += 1

    def _schedule_retry(self) -> None:
        self.loop.attention.add(self)
        self._next_attempt = time.monotonic() + self._backoff * (0.5 + random.random())
        self._backoff = min(self._backoff * 2, 30.0 if len(self.config.urls) == 1 else 8.0)

    def _sub(self, topic_filter: str) -> None:
        """SUBSCRIBE (on the loop thread), remembering the filter until the broker grants it."""
        result, mid = self.paho.subscribe(topic_filter, qos=self.subscribe_qos)
        if result == paho.MQTT_ERR_SUCCESS and mid is not None:
            self._subscribing[mid] = topic_filter

    def _on_subscribe(self, client: paho.Client, userdata: object, mid: int, reason_codes: object,
                      properties: object = None) -> None:
        topic_filter = self._subscribing.pop(mid, None)
        codes = reason_codes if isinstance(reason_codes, list) else [reason_codes]
        if topic_filter is not None and any(getattr(c, "is_failure", False) for c in codes):
            # a cluster still electing after a node died refuses subscriptions for a while: ask again
            self._resubscribe.append((time.monotonic() + 1.0, topic_filter))
            self.loop.attention.add(self)

    def _maybe_reconnect(self, now: float) -> None:
        """Connection care, run by the loop while this client is in its ``attention`` set."""
        if self.paho.is_connected() and not self._resubscribe and not self._connack_by:
            self.loop.attention.discard(self)
            return
        if self._resubscribe and self.paho.is_connected():
            due = [f for when, f in self._resubscribe if when <= now]
            self._resubscribe = [(when, f) for when, f in self._resubscribe if when > now]
            for topic_filter in due:
                self._sub(topic_filter)
        if self._want and self._connack_by and now > self._connack_by and not self.paho.is_connected():
            # the TCP connect went through but no CONNACK came (a cluster node still electing, say):
            # give up on it, as on a refused connect, instead of waiting out the keepalive
            self._connack_by = 0.0
            self.node += 1
            self._schedule_retry()
            try:
                self.paho.disconnect()
            except OSError:
                pass
            return
        if self._want and not self.paho.is_connected() and self._next_attempt and now >= self._next_attempt:
            try:
                if len(self.config.urls) > 1:
                    host, port = self.config.endpoint(self.node)
                    self.paho.connect(host, port, self.config.keepalive)
                else:
                    self.paho.reconnect()
                self._next_attempt = 0.0
                self._connack_by = now + CONNACK_TIMEOUT_S
            except OSError:
                self.node += 1  # that node is down: the next one
                self._schedule_retry()

    def _on_connect(self, client: paho.Client, userdata: object, flags: object, reason: object,
                    properties: object = None) -> None:
        if getattr(reason, "is_failure", False):
            self.node += 1
            self._schedule_retry()
            return
        self._backoff, self._connack_by = 0.5, 0.0
        self._resubscribe = []
        for topic_filter, _ in self.handlers:
            self._sub(topic_filter)
        if self.birth is not None:
            self.paho.publish(self.birth[0], self.birth[1], qos=1, retain=True)
        self.connected.set()

    def _on_disconnect(self, client: paho.Client, userdata: object, flags: object, reason: object,
                       properties: object = None) -> None:
        self.connected.clear()
        if self._want and not self._next_attempt:  # (not when a retry is already planned)
            self.node += 1  # a cluster's node went away: the next one (one node: the same one)
            self._schedule_retry()

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        for topic_filter, handler in self.handlers:
            if topic_matches(topic_filter, msg.topic):
                try:
                    handler(msg.topic, msg.payload)
                except Exception as exc:  # noqa: BLE001 - one message never stops the loop
                    self.loop._contain(f"handler for {msg.topic[:120]}", exc)

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        info = self.paho.publish(topic, payload, qos=1, retain=retain)
        self._unacked = [i for i in self._unacked if _pending(i)][-1000:] + [info]

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until the broker has acknowledged what was published (True), at most ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while self.paho.is_connected() and any(_pending(i) for i in self._unacked):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def subscribe(self, topic_filter: str, handler: Handler) -> None:
        self.handlers.append((topic_filter, handler))
        if self.paho.is_connected():
            self.loop.call(lambda: self._sub(topic_filter))

    def close(self, flush_s: float = 5.0) -> None:
        """Hang up, after waiting (at most ``flush_s``) for the broker to acknowledge what was published:
        a service's last word (a final model, say) must reach the broker first."""
        if not self.flush(flush_s):
            print(f"mqtt {self.client_id}: closing with publishes the broker has not acknowledged in {flush_s:.0f} s",
                  file=sys.stderr, flush=True)
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
