"""An embedded MQTT broker (amqtt) running in a background thread, so the main job needs no setup.

Production and CI use Mosquitto (or any MQTT 3.1.1/5 broker); this one exists so that
``edgebert demo`` and ``edgebert federate simulate`` work on a machine with only Python.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading

from edgebert.errors import EdgeBertError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmbeddedBroker:
    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self._loop = asyncio.new_event_loop()
        self._broker = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="edgebert-broker", daemon=True)

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            from amqtt.broker import Broker

            for name in ("amqtt", "transitions"):
                logging.getLogger(name).setLevel(logging.ERROR)
            config = {"listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}",
                                                "max_connections": 0}},
                      "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}}}
            self._broker = Broker(config, loop=self._loop)
            self._loop.run_until_complete(self._broker.start())
        except BaseException as exc:  # reported to the starting thread
            self._error = exc
            self._started.set()
            return
        self._started.set()
        self._loop.run_forever()

    def start(self) -> EmbeddedBroker:
        self._thread.start()
        self._started.wait(30)
        if self._error is not None or self._broker is None:
            raise EdgeBertError(f"embedded broker: expected it to start on 127.0.0.1:{self.port}, found: {self._error}")
        return self

    def stop(self) -> None:
        if self._broker is not None and self._loop.is_running():
            try:
                asyncio.run_coroutine_threadsafe(self._broker.shutdown(), self._loop).result(10)
            except (TimeoutError, RuntimeError):
                pass  # a client that never says goodbye must not keep the process alive
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
