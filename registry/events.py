"""The directory's notifications (WoT Discovery): Server-Sent Events of Thing lifecycle changes.

Writes publish ``thing_created`` / ``thing_updated`` / ``thing_deleted`` events from any thread;
each SSE subscriber (``/events``, ``/events/{type}``, ``?diff=true``) reads them from its own bounded
queue on the event loop. The last ``capacity`` events stay in memory, so a client that reconnects
with ``Last-Event-ID`` is sent every event it missed, as long as they are still held; event ids
are ``BOOT.SEQ`` where BOOT names this server process (a client coming from an earlier process gets
every held event). A subscriber that falls ``queue_size`` events behind is disconnected, not
buffered without end: it reconnects with its ``Last-Event-ID`` and is sent what it missed.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from edgebert.errors import RequestRefused

TYPES = ("thing_created", "thing_updated", "thing_deleted")


@dataclass(frozen=True)
class Event:
    seq: int
    type: str
    thing: str
    full: dict[str, Any] | None = None  # thing_created: the whole (enriched) TD
    patch: dict[str, Any] | None = None  # thing_updated: the JSON Merge Patch from the old TD to the new

    def data(self, diff: bool) -> dict[str, Any]:
        """The event's data object: the TD's id (Partial TD form), or with ``diff`` the whole TD of a
        creation / the merge patch of an update, always with the id (never more for a deletion)."""
        if diff and self.type == "thing_created" and self.full is not None:
            return {**self.full, "id": self.thing}
        if diff and self.type == "thing_updated" and self.patch is not None:
            return {**self.patch, "id": self.thing}
        return {"id": self.thing}

    def sse(self, boot: str, diff: bool) -> str:
        """One SSE message; JSON on one ``data:`` line (json.dumps escapes every newline)."""
        return f"event: {self.type}\nid: {boot}.{self.seq}\ndata: {json.dumps(self.data(diff))}\n\n"


@dataclass
class Subscription:
    types: frozenset[str]
    diff: bool
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[Event | None]
    last_seq: int
    queue_size: int
    closed: bool = False

    def push(self, event: Event) -> None:
        """On the subscriber's loop: queue the event, or end the stream when it is too far behind."""
        if self.closed or event.seq <= self.last_seq or event.type not in self.types:
            return
        if self.queue.qsize() >= self.queue_size:
            self.closed = True
            self.queue.put_nowait(None)  # the queue holds one more than queue_size: room for this
            return
        self.last_seq = event.seq
        self.queue.put_nowait(event)

    def end(self) -> None:
        if not self.closed:
            self.closed = True
            self.queue.put_nowait(None)


@dataclass
class EventHub:
    capacity: int = 1000
    max_subscribers: int = 64
    queue_size: int = 256
    boot: str = field(default_factory=lambda: secrets.token_hex(4))
    _held: deque[Event] = field(init=False)
    _seq: int = 0
    _subs: list[Subscription] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._held = deque(maxlen=self.capacity)

    def publish(self, type_: str, thing: str, full: dict[str, Any] | None = None,
                patch: dict[str, Any] | None = None) -> Event:
        """Record an event and hand it to every subscriber (callable from any thread)."""
        if type_ not in TYPES:
            raise ValueError(f"event type: expected one of {TYPES}, found {type_!r}")
        with self._lock:
            self._seq += 1
            event = Event(self._seq, type_, thing, full, patch)
            self._held.append(event)
            subs = list(self._subs)
        for sub in subs:
            try:
                sub.loop.call_soon_threadsafe(sub.push, event)
            except RuntimeError:  # its loop is closed: the server is stopping
                pass
        return event

    def _after(self, last_event_id: str | None) -> int:
        """The sequence number a reconnecting client has seen (0: send every held event)."""
        if not last_event_id:
            return self._seq  # a new subscriber: only what happens from now on
        boot, _, seq = last_event_id.strip().partition(".")
        if boot != self.boot or not seq.isdigit():
            return 0
        return min(int(seq), self._seq)

    def subscribe(self, types: tuple[str, ...], diff: bool, last_event_id: str | None) -> tuple[Subscription, list[Event]]:
        """A new subscription on the running loop, and the held events it missed (to send first)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if len(self._subs) >= self.max_subscribers:
                raise RequestRefused(f"events: expected at most {self.max_subscribers} subscribers at once, "
                                     "found that many already; retry later", 503)
            after = self._after(last_event_id)
            missed = [e for e in self._held if e.seq > after and e.type in types]
            sub = Subscription(frozenset(types), diff, loop, asyncio.Queue(self.queue_size + 1),
                               max([after, *(e.seq for e in missed)]), self.queue_size)
            self._subs.append(sub)
        return sub, missed

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            if sub in self._subs:
                self._subs.remove(sub)

    def close(self) -> None:
        """End every stream (server shutdown)."""
        with self._lock:
            subs, self._subs = list(self._subs), []
        for sub in subs:
            try:
                sub.loop.call_soon_threadsafe(sub.end)
            except RuntimeError:
                pass

    @property
    def last_seq(self) -> int:
        with self._lock:
            return self._seq

    @property
    def subscribers(self) -> int:
        with self._lock:
            return len(self._subs)


__all__ = ["TYPES", "Event", "EventHub", "Subscription"]
