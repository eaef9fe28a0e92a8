"""A registry server on a free loopback port, in a thread, for tests over real HTTP."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from registry.registry import Registry
from registry.server import ServerConfig, create_app

from ..net import free_port


@contextmanager
def running(reg: Registry, config: ServerConfig | None = None, **ssl: str) -> Iterator[str]:
    """The server's base URL (https when ``ssl_certfile``/``ssl_keyfile`` are given)."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(reg, config), host="127.0.0.1", port=port, log_level="warning",
                                           timeout_graceful_shutdown=2, **ssl))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    try:
        yield f"{'https' if ssl else 'http'}://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)


def call(method: str, url: str, body: Any = None, content_type: str | None = "application/td+json",  # noqa: ANN401
         headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """(status, headers with lower-case names, body) of one request; a dict/list body is sent as JSON."""
    data = None if body is None else body if isinstance(body, bytes) else json.dumps(body).encode()
    sent = dict(headers or {})
    if content_type is not None and data is not None:
        sent["Content-Type"] = content_type
    req = urllib.request.Request(url, data=data, method=method, headers=sent)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()
