"""Property-based tests (hypothesis) over every parser that reads what a peer or a user sends:
whatever the input, the answer is the parser's own error (one line) or a valid value, never
another exception, and valid values survive a round trip."""

from __future__ import annotations

import io
import json
import os
import string

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from edgebert.artifact import Manifest
from edgebert.errors import ArtifactError, DescriptionError, EdgeBertError, ProtocolError, RequestRefused
from edgebert.federated.auth import sign_update, verify_update
from edgebert.fleet.release import Release
from edgebert.messaging.protocol import MAGIC, Message, Reassembler
from registry.describe import tds_to_quads, validate_td_json
from registry.guard import check_json_depth, check_query

SETTINGS = settings(max_examples=int(os.environ.get("HYPOTHESIS_EXAMPLES", "150")), deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20)
json_values = st.recursive(json_scalars, lambda kids: st.lists(kids, max_size=4)
                           | st.dictionaries(st.text(max_size=8), kids, max_size=4), max_leaves=20)


def frame(header: object, body: bytes = b"") -> bytes:
    raw = json.dumps(header).encode()
    return MAGIC + len(raw).to_bytes(4, "big") + raw + body


# ---------------------------------------------------------------- wire messages
@SETTINGS
@given(st.binary(max_size=512))
def test_any_bytes_decode_to_a_message_or_a_protocol_error(data: bytes) -> None:
    try:
        Message.from_bytes(data)
    except ProtocolError as exc:
        assert "\n" not in str(exc)


@SETTINGS
@given(st.dictionaries(st.sampled_from(["v", "kind", "sender", "job", "round", "model_version", "samples", "metrics",
                                        "info", "msg_id", "sent_at", "sha256", "body_bytes"]), json_values),
       st.binary(max_size=64))
def test_any_header_decodes_to_a_message_or_a_protocol_error(header: dict, body: bytes) -> None:
    import hashlib

    header.setdefault("v", 1)
    if header.get("sha256") is None:  # often a consistent body, so the fields themselves are exercised
        header["sha256"], header["body_bytes"] = hashlib.sha256(body).hexdigest(), len(body)
    try:
        msg = Message.from_bytes(frame(header, body))
    except ProtocolError:
        return
    assert all(np.isfinite(v) for v in msg.metrics.values())
    assert isinstance(msg.samples, int) and msg.samples >= 0


def test_deeply_nested_headers_are_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="nested"):
        Message.from_bytes(MAGIC + (40_000).to_bytes(4, "big") + b"[" * 20_000 + b"]" * 20_000)


names = st.text(alphabet=string.ascii_letters + string.digits + "-_", min_size=1, max_size=12)
metrics = st.dictionaries(names, st.floats(allow_nan=False, allow_infinity=False, width=32), max_size=3)


@SETTINGS
@given(st.sampled_from(["update", "model", "status", "ack"]), names, st.integers(0, 2**40), st.integers(0, 2**31 - 1),
       metrics, st.lists(st.floats(-1e6, 1e6, width=32), min_size=1, max_size=8))
def test_messages_round_trip_and_an_authentic_update_verifies_only_unchanged(
        kind: str, sender: str, round_: int, samples: int, metrics_: dict, values: list) -> None:
    tensors = {"w": np.array(values, np.float32)} if kind in ("update", "model") else {}
    msg = Message(kind, sender, job="j", round=round_, samples=samples, metrics=metrics_, tensors=tensors)

    back = Message.from_bytes(msg.to_bytes())

    assert back == msg and all(np.array_equal(back.tensors[k], v) for k, v in tensors.items())
    if kind == "update":
        key = b"k" * 32
        signed = Message.from_bytes(sign_update(msg, key).to_bytes())
        assert verify_update(signed, key) is None
        assert verify_update(signed, b"x" * 32) is not None
        from dataclasses import replace
        assert verify_update(replace(signed, samples=samples + 1), key) is not None
        assert verify_update(replace(signed, round=round_ + 1), key) is not None


@SETTINGS
@given(st.lists(st.tuples(st.integers(-2, 5), st.integers(-1, 6), st.binary(max_size=8)), max_size=12))
def test_the_reassembler_never_fails_with_anything_but_a_protocol_error(chunks: list) -> None:
    r = Reassembler(max_payload_bytes=1000, max_pending=2)
    for index, count, body in chunks:
        msg = Message("chunk", "s", body=body, info={"payload": "p", "index": index, "count": count,
                                                      "payload_sha256": "0" * 64, "payload_bytes": 16})
        try:
            r.add(msg)
        except ProtocolError:
            pass


# ---------------------------------------------------------------- the device's stream
@pytest.fixture(scope="module")
def device_factory(digits_artifact):  # noqa: ANN001, ANN201
    from edgebert.runtime import Engine
    from edgebert.runtime.device import Device, DeviceConfig

    engine = Engine.load(digits_artifact.path)
    return lambda: Device(engine, DeviceConfig())


stream_values = json_values | st.fixed_dictionaries({"x": st.lists(st.floats() | st.integers() | st.text(max_size=3),
                                                                   min_size=0, max_size=70)},
                                                    optional={"y": json_values})


@SETTINGS
@given(st.lists(st.one_of(stream_values.map(json.dumps), st.text(max_size=40), st.just("[" * 5000)), max_size=6))
def test_every_stream_line_gets_exactly_one_strict_json_reply(device_factory, lines: list[str]) -> None:  # noqa: ANN001
    lines = [line.replace("\n", " ").replace("\r", " ") for line in lines]
    device = device_factory()
    out = io.StringIO()

    errors = device.run_stream(lines, out)

    replies = out.getvalue().splitlines()
    assert len(replies) == sum(1 for line in lines if line.strip()) and errors <= len(replies)
    for reply in replies:
        parsed = json.loads(reply, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
        assert "found one that raised" not in parsed.get("error", ""), parsed  # every bad line is foreseen
    assert all(np.isfinite(w).all() for w in device.learner.W)


# ---------------------------------------------------------------- Thing Descriptions
@SETTINGS
@given(json_values | st.fixed_dictionaries(
    {"@context": st.just(["https://www.w3.org/2022/wot/td/v1.1"]), "id": st.text(max_size=20) | st.just("urn:dev:a"),
     "title": json_values, "securityDefinitions": json_values, "security": json_values,
     "eb:ramBytes": json_values, "eb:flashBytes": json_values}, optional={"properties": json_values}))
def test_any_json_is_a_valid_td_or_a_description_error(td: object) -> None:
    try:
        validate_td_json(td)
        tds_to_quads([td])  # type: ignore[list-item]
    except DescriptionError as exc:
        assert "\n" not in str(exc)


@SETTINGS
@given(st.text(max_size=300))
def test_query_guard_and_depth_check_never_fail_otherwise(text: str) -> None:
    for fn in (lambda: check_query(text), lambda: check_json_depth(text.encode(), 8)):
        try:
            fn()
        except RequestRefused:
            pass


@SETTINGS
@given(st.text(max_size=200).map(lambda t: f"SELECT * WHERE {{ {t} SERVICE <http://x/> {{ ?s ?p ?o }} }}"))
def test_a_service_keyword_outside_strings_and_iris_is_always_refused(query: str) -> None:
    assume('"' not in query and "'" not in query and "#" not in query and "<" not in query.split("SERVICE")[0])
    with pytest.raises(RequestRefused):
        check_query(query)


# ---------------------------------------------------------------- releases
@SETTINGS
@given(st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()))
def test_any_release_bytes_parse_or_are_an_artifact_error(data: bytes) -> None:
    try:
        Release.from_bytes(data)
    except ArtifactError:
        pass


def test_a_release_round_trips(digits_artifact) -> None:  # noqa: ANN001
    manifest_bytes = (digits_artifact.path / "manifest.json").read_bytes()
    manifest = Manifest.from_json(manifest_bytes.decode())
    release = Release.for_manifest(manifest_bytes, manifest, ("d1", "d2"), 1_700_000_000.0, pin=True)

    assert Release.from_bytes(release.to_bytes()) == release
    with pytest.raises(EdgeBertError, match="issued <= expires"):
        Release.for_manifest(manifest_bytes, manifest, ("d1",), 1e9, ttl_s=-1)
