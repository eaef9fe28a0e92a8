"""The notification hub: replay by Last-Event-ID, a subscriber that falls behind is cut off, a cap on subscribers."""

from __future__ import annotations

import asyncio

import pytest

from edgebert.errors import RequestRefused
from registry.events import TYPES, EventHub


def test_event_data_with_and_without_diff() -> None:
    hub = EventHub()
    created = hub.publish("thing_created", "urn:a", full={"id": "urn:a", "title": "A"})
    updated = hub.publish("thing_updated", "urn:a", patch={"title": "B"})
    deleted = hub.publish("thing_deleted", "urn:a")
    assert created.data(False) == {"id": "urn:a"} and created.data(True) == {"id": "urn:a", "title": "A"}
    assert updated.data(True) == {"title": "B", "id": "urn:a"} and deleted.data(True) == {"id": "urn:a"}
    assert "\n\n" not in created.sse(hub.boot, True)[:-2]  # one message: no blank line inside
    with pytest.raises(ValueError, match="event type"):
        hub.publish("thing_renamed", "urn:a")


def test_replay_after_an_id_of_this_process_and_of_another() -> None:
    async def run() -> tuple[list[int], list[int], list[int]]:
        hub = EventHub(capacity=10)
        for i in range(5):
            hub.publish("thing_created" if i % 2 == 0 else "thing_deleted", f"urn:{i}")
        _, after2 = hub.subscribe(TYPES, False, f"{hub.boot}.2")
        _, created_only = hub.subscribe(("thing_created",), False, f"{hub.boot}.2")
        _, elsewhere = hub.subscribe(TYPES, False, "deadbeef.3")
        return [e.seq for e in after2], [e.seq for e in created_only], [e.seq for e in elsewhere]

    after2, created_only, elsewhere = asyncio.run(run())
    assert after2 == [3, 4, 5] and created_only == [3, 5] and elsewhere == [1, 2, 3, 4, 5]


def test_a_subscriber_that_falls_behind_is_disconnected_not_buffered() -> None:
    async def run() -> tuple[int, bool]:
        hub = EventHub(queue_size=4)
        sub, _ = hub.subscribe(TYPES, False, None)
        for i in range(100):
            hub.publish("thing_created", f"urn:{i}")
        await asyncio.sleep(0.05)  # deliveries run on the loop
        items = []
        while not sub.queue.empty():
            items.append(sub.queue.get_nowait())
        return len(items), items[-1] is None

    queued, ended = asyncio.run(run())
    assert queued == 5 and ended  # four events, then the end of the stream; nothing more held


def test_subscribers_are_capped() -> None:
    async def run() -> None:
        hub = EventHub(max_subscribers=2)
        hub.subscribe(TYPES, False, None)
        sub, _ = hub.subscribe(TYPES, False, None)
        with pytest.raises(RequestRefused, match="at most 2 subscribers") as refused:
            hub.subscribe(TYPES, False, None)
        assert refused.value.status == 503
        hub.unsubscribe(sub)
        hub.subscribe(TYPES, False, None)  # room again

    asyncio.run(run())
