"""One thread that drives many paho clients (paho's external-loop API over a selector): one
device, or a thousand simulated ones, cost one thread. Nothing raised by one client or one call
ends the loop; ``check`` is the watchdog a service calls to fail loudly if the thread died."""

from __future__ import annotations

import selectors
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from edgebert.errors import BrokerError

if TYPE_CHECKING:
    from edgebert.messaging.mqtt import MqttTransport


MISC_BATCH = 256  # clients whose keepalive work runs between two reads of the sockets
KEEPALIVE_PASS_S = 2.0  # every client's keepalive is looked at this often (its keepalive is 30 s)


class MqttLoop:
    """One thread driving many paho clients (paho's external-loop API over a selector)."""

    def __init__(self) -> None:
        self.sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)  # a full buffer means a wake-up is already pending
        self.sel.register(self._wake_r, selectors.EVENT_READ, None)
        self._calls: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self.clients: list[MqttTransport] = []
        self.attention: set[MqttTransport] = set()  # clients whose connection needs looking after now
        self._misc_pos = 0
        self._stop = False
        self.error = ""
        self.handler_errors = 0
        self._thread = threading.Thread(target=self._run, name="edgebert-mqtt", daemon=True)
        self._thread.start()

    def in_loop(self) -> bool:
        return threading.current_thread() is self._thread

    def call(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` in the loop thread (selector changes happen there only)."""
        if self.in_loop():
            fn()
            return
        with self._lock:
            self._calls.append(fn)
        try:
            self._wake_w.send(b"x")
        except (BlockingIOError, OSError):
            pass

    def call_wait(self, fn: Callable[[], object], timeout: float = 30.0) -> object:
        if self.in_loop():
            return fn()
        done = threading.Event()
        box: dict[str, object] = {}

        def run() -> None:
            try:
                box["value"] = fn()
            except BaseException as exc:  # handed back to the caller
                box["error"] = exc
            done.set()

        self.call(run)
        if not done.wait(timeout):
            raise BrokerError("mqtt loop: expected a reply within the timeout, found none")
        if "error" in box:
            raise box["error"]  # type: ignore[misc]
        return box.get("value")

    def alive(self) -> bool:
        """False once the loop thread has died (it never stops on its own before ``stop``)."""
        return self._thread.is_alive() or self._stop

    def check(self) -> None:
        """The watchdog: BrokerError, loudly, if the loop thread died."""
        if not self.alive():
            raise BrokerError(f"mqtt loop: expected its thread running, found it dead ({self.error or 'no reason'})")

    def _run(self) -> None:
        try:
            self._serve()
        except BaseException as exc:  # reported by check(); the process's watchdog fails loudly
            self.error = f"{type(exc).__name__}: {exc}"
            print(f"edgebert-mqtt: loop thread died: {self.error}", file=sys.stderr, flush=True)
            raise

    def _serve(self) -> None:
        last_misc = last_attention = 0.0
        while not self._stop:
            for key, mask in self.sel.select(timeout=0.1):
                if key.data is None:
                    try:
                        while self._wake_r.recv(4096):
                            pass
                    except (BlockingIOError, OSError):
                        pass
                    continue
                client: MqttTransport = key.data
                try:
                    if mask & selectors.EVENT_READ:
                        client.paho.loop_read()
                    if mask & selectors.EVENT_WRITE:
                        client.paho.loop_write()
                except Exception as exc:  # noqa: BLE001 - one client's failure never ends the loop
                    self._contain("socket", exc)
            with self._lock:
                calls, self._calls = self._calls, []
            for fn in calls:
                try:
                    fn()
                except Exception as exc:  # noqa: BLE001
                    self._contain("call", exc)
            now = time.monotonic()
            if now - last_attention >= 0.05:  # clients connecting, reconnecting or re-subscribing
                last_attention = now
                for client in list(self.attention):
                    client._maybe_reconnect(now)
            if now - last_misc >= KEEPALIVE_PASS_S:  # keepalives, MISC_BATCH clients per pass, so that
                batch = self.clients[self._misc_pos:self._misc_pos + MISC_BATCH]  # 10,000 idle clients
                self._misc_pos += MISC_BATCH  # cost little and never hold up reads and calls for long
                if self._misc_pos >= len(self.clients):
                    self._misc_pos, last_misc = 0, now
                for client in batch:
                    client.paho.loop_misc()

    def _contain(self, where: str, exc: Exception) -> None:
        self.handler_errors += 1
        print(f"edgebert-mqtt: {where}: {type(exc).__name__}: {str(exc)[:200]} (contained)", file=sys.stderr, flush=True)

    def _watch(self, sock: socket.socket, client: MqttTransport, write: bool) -> None:
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if write else 0)
        try:
            self.sel.modify(sock, events, client)
        except KeyError:
            self.sel.register(sock, events, client)
        except (ValueError, OSError):
            pass

    def _forget(self, sock: socket.socket) -> None:
        try:
            self.sel.unregister(sock)
        except (KeyError, ValueError, OSError):
            pass

    def stop(self) -> None:
        for client in list(self.clients):
            client.close()
        self._stop = True
        self.call(lambda: None)
        self._thread.join(5)


_default_loop: MqttLoop | None = None


def default_loop() -> MqttLoop:
    global _default_loop
    if _default_loop is None:
        _default_loop = MqttLoop()
    return _default_loop
