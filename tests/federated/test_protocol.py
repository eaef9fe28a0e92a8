"""Protocol messages: round trip, rejection reasons, chunking and reassembly."""

from __future__ import annotations

import numpy as np
import pytest

from edgebert.errors import ProtocolError
from edgebert.messaging.protocol import MAGIC, Message, Reassembler, Topics, split


def test_message_round_trip_with_tensors() -> None:
    tensors = {"layers.0.weight": np.arange(6, dtype=np.float32).reshape(2, 3)}
    msg = Message("update", "dev-1", job="sine", round=3, model_version=3, samples=10, metrics={"loss": 0.5},
                  tensors=tensors)

    back = Message.from_bytes(msg.to_bytes())

    assert back == msg
    np.testing.assert_array_equal(back.tensors["layers.0.weight"], tensors["layers.0.weight"])


@pytest.mark.parametrize("mutate, reason", [
    (lambda b: b"XXXX" + b[4:], "magic"),
    (lambda b: b[:-3], "truncated or altered"),
    (lambda b: b[:-1] + bytes([b[-1] ^ 1]), "truncated or altered"),
    (lambda b: b[:9] + b"\xff" + b[10:], "UTF-8 JSON"),
    (lambda b: b"\x00" * 10, "magic"),
    (lambda b: MAGIC + b"\xff\xff\xff\xff" + b"{}", "header: expected at most"),
])
def test_garbage_is_rejected_with_a_reason(mutate, reason: str) -> None:
    data = Message("update", "dev-1", tensors={"w": np.ones(4, np.float32)}).to_bytes()

    with pytest.raises(ProtocolError, match=reason):
        Message.from_bytes(mutate(data))


def test_oversized_payload_is_refused_before_parsing() -> None:
    with pytest.raises(ProtocolError, match="at most 100 bytes"):
        Message.from_bytes(b"x" * 101, max_bytes=100)


@pytest.mark.parametrize("kwargs, reason", [
    ({"kind": "pickle"}, "kind"), ({"sender": "a/b"}, "sender"), ({"round": -1}, "round"),
])
def test_invalid_fields_are_refused(kwargs, reason: str) -> None:
    with pytest.raises(ProtocolError, match=reason):
        Message(**{"kind": "status", "sender": "dev", **kwargs})


def test_a_23_mb_payload_passes_a_1_mb_limit_in_any_order_and_missing_chunks_are_listed() -> None:
    payload = np.random.default_rng(0).bytes(23 * 1024 * 1024)
    chunks = split(payload, "aggregator", max_message_bytes=1024 * 1024)
    assert len(chunks) == 24 and all(len(c) <= 1024 * 1024 for c in chunks)
    r = Reassembler()
    msgs = [Message.from_bytes(c) for c in chunks]

    results = [r.add(m) for m in reversed(msgs[1:])]
    missing = r.missing()
    last = r.add(msgs[0])

    assert all(x is None for x in results) and list(missing.values()) == [[0]]
    assert last == payload and r.missing() == {}


def test_a_tampered_chunk_breaks_the_whole_payload_sha() -> None:
    chunks = [Message.from_bytes(c) for c in split(b"a" * 5000, "s", max_message_bytes=2048)]
    bad = Message("chunk", "s", body=b"b" * len(chunks[0].body), info=chunks[0].info)
    r = Reassembler()

    with pytest.raises(ProtocolError, match="announced sha256"):
        for m in [bad, *chunks[1:]]:
            r.add(m)


def test_topics_layout_and_validation() -> None:
    t = Topics("edgebert", "lab")

    assert t.update("sine", "dev-7") == "edgebert/lab/jobs/sine/updates/dev-7"
    assert t.updates("sine") == "edgebert/lab/jobs/sine/updates/+"
    with pytest.raises(ProtocolError, match="without"):
        Topics("edge/bert", "lab")
