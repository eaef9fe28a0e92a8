"""Channel over the in-memory bus: chunking through a size limit, lost chunks re-requested, garbage dropped."""

from __future__ import annotations

import numpy as np

from edgebert.messaging.protocol import Message, Topics
from edgebert.messaging.transport import Channel, InMemoryBus, topic_matches


def test_topic_matching() -> None:
    assert topic_matches("a/+/c", "a/b/c") and topic_matches("a/#", "a/b/c") and not topic_matches("a/+", "a/b/c")


def test_large_model_passes_a_small_message_limit_and_lost_chunks_are_resent() -> None:
    bus = InMemoryBus(max_message_bytes=64 * 1024)
    topics = Topics("t", "f")
    sender = Channel(bus.client("agg"), topics, "agg", max_message_bytes=64 * 1024)
    receiver = Channel(bus.client("dev"), topics, "dev", resend_after=0.0)
    got: list[Message] = []
    receiver.subscribe(topics.model("j"), lambda topic, m: got.append(m))
    weights = {"w": np.random.default_rng(0).normal(0, 1, 200_000).astype(np.float32)}  # 800 KB
    dropped = []
    bus.drop = lambda topic, payload: (len(dropped) < 2 and topic.endswith("/model") and not dropped.append(1))

    sender.send(topics.model("j"), Message("model", "agg", job="j", round=1, tensors=weights))
    assert got == []  # two chunks were lost on the way
    assert receiver.request_missing() == 1

    assert len(got) == 1 and np.array_equal(got[0].tensors["w"], weights["w"])


def test_garbage_on_a_topic_is_counted_and_never_reaches_the_handler() -> None:
    bus = InMemoryBus()
    topics = Topics()
    ch = Channel(bus.client("agg"), topics, "agg")
    seen = []
    ch.subscribe(topics.updates("j"), lambda t, m: seen.append(m))
    raw = bus.client("attacker")

    for payload in (b"garbage", b"\x00" * 100, Message("update", "x").to_bytes()[:-1]):
        raw.publish(topics.update("j", "x"), payload)
    raw.publish(topics.update("j", "x"), Message("update", "x", tensors={"w": np.ones(2, np.float32)}).to_bytes())

    assert len(seen) == 1 and sum(ch.rejected.values()) == 3
