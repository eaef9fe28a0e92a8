"""The federated-learning wire protocol (docs/protocol.md): topics, messages, chunking.

Every MQTT payload is ``MAGIC | u32 header length | JSON header | body``. The body is
safetensors bytes (tensors) or a raw slice of a larger payload (chunks); the header carries the
protocol version, kind, sender, job, round, model version, the body's sha256, sample count and
metrics. Nothing is ever pickled. Payloads larger than ``max_message_bytes`` travel as chunks,
each with its own sha256 and the whole payload's sha256; a receiver that misses chunks asks for
them again on the sender's resend topic.
"""

from __future__ import annotations

import hashlib
import json
import struct
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgebert.errors import InputError, ProtocolError
from edgebert.tensors import from_bytes, to_bytes

PROTOCOL_VERSION = 1
MAGIC = b"EBF1"
KINDS = ("job", "model", "update", "status", "ack", "chunk", "resend", "offer", "file", "partial")
TENSOR_KINDS = ("job", "model", "update", "partial")
MAX_HEADER_BYTES = 64 * 1024
DEFAULT_MAX_MESSAGE_BYTES = 256 * 1024
DEFAULT_MAX_PAYLOAD_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class Topics:
    """Topic layout: ``{prefix}/{fleet}/…``."""

    prefix: str = "edgebert"
    fleet: str = "default"

    def __post_init__(self) -> None:
        for part in (self.prefix, self.fleet):
            if not part or any(c in part for c in "+#/") or part.startswith("$"):
                raise ProtocolError(f"topics: expected a prefix and fleet without '+', '#', '/' or a leading '$', "
                                    f"found {part!r}")

    @property
    def root(self) -> str:
        return f"{self.prefix}/{self.fleet}"

    def job(self, job: str) -> str:  # retained JobAnnouncement
        return f"{self.root}/jobs/{job}"

    def model(self, job: str) -> str:  # retained current global model (+ round, participants, deadline)
        return f"{self.root}/jobs/{job}/model"

    def update(self, job: str, device: str) -> str:  # device -> aggregator
        return f"{self.root}/jobs/{job}/updates/{device}"

    def updates(self, job: str) -> str:
        return f"{self.root}/jobs/{job}/updates/+"

    def ack(self, job: str, device: str) -> str:  # aggregator -> device
        return f"{self.root}/jobs/{job}/acks/{device}"

    def status(self, device: str) -> str:  # retained "online"; last will "offline"
        return f"{self.root}/devices/{device}/status"

    def statuses(self) -> str:
        return f"{self.root}/devices/+/status"

    # hierarchical rounds (docs/scale.md): the root's model goes to the edges; edge ``e`` re-announces it
    # to its slice of the fleet, collects its devices' updates and sends the root one partial result
    def edge_model(self, job: str, edge: str) -> str:  # retained: the round's model + the edge's participants
        return f"{self.root}/jobs/{job}/edges/{edge}/model"

    def edge_update(self, job: str, edge: str, device: str) -> str:  # device -> its edge
        return f"{self.root}/jobs/{job}/edges/{edge}/updates/{device}"

    def edge_updates(self, job: str, edge: str) -> str:
        return f"{self.root}/jobs/{job}/edges/{edge}/updates/+"

    def edge_status(self, job: str, edge: str) -> str:  # retained "online"; last will "offline"
        return f"{self.root}/jobs/{job}/edges/{edge}/status"

    def edge_statuses(self, job: str) -> str:
        return f"{self.root}/jobs/{job}/edges/+/status"

    def call(self, job: str, device: str) -> str:  # edge -> one participant: the round's model
        return f"{self.root}/jobs/{job}/calls/{device}"

    def partial(self, job: str, edge: str) -> str:  # edge -> root
        return f"{self.root}/jobs/{job}/partials/{edge}"

    def partials(self, job: str) -> str:
        return f"{self.root}/jobs/{job}/partials/+"

    def resend(self, sender: str) -> str:  # requests for missing chunks of sender's payloads
        return f"{self.root}/resend/{sender}"

    # provisioning (docs/fleet.md): provisioner -> device offer (retained) and files; device -> status (retained)
    def artifact_offer(self, device: str) -> str:
        return f"{self.root}/artifacts/{device}/offer"

    def artifact_files(self, device: str) -> str:
        return f"{self.root}/artifacts/{device}/files"

    def artifact_status(self, device: str) -> str:
        return f"{self.root}/artifacts/{device}/status"

    def artifact_statuses(self) -> str:
        return f"{self.root}/artifacts/+/status"

    def artifacts_of(self, device: str) -> str:  # everything provisioning sends one device
        return f"{self.root}/artifacts/{device}/#"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tensors_to_bytes(tensors: dict[str, np.ndarray]) -> bytes:
    return to_bytes(tensors)


def tensors_from_bytes(body: bytes) -> dict[str, np.ndarray]:
    try:
        return from_bytes(body)
    except InputError as exc:
        raise ProtocolError(f"body: {exc}") from None


@dataclass(frozen=True)
class Message:
    """One protocol message. ``tensors`` is the body for job/model/update kinds."""

    kind: str
    sender: str
    job: str = ""
    round: int = 0
    model_version: int = 0
    samples: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    tensors: dict[str, np.ndarray] = field(default_factory=dict, compare=False, repr=False)
    body: bytes = field(default=b"", compare=False, repr=False)  # raw body (chunks)
    body_sha256: str = field(default="", compare=False, repr=False)  # set on decode: the verified body's sha256
    msg_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    sent_at: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ProtocolError(f"kind: expected one of {KINDS}, found {self.kind!r}")
        if not isinstance(self.sender, str) or not self.sender or any(c in self.sender for c in "+#/"):
            raise ProtocolError(f"sender: expected a non-empty id without '+', '#', '/', found {self.sender!r}")
        for name in ("round", "model_version", "samples"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ProtocolError(f"{name}: expected a non-negative integer, found {value!r}")

    def to_bytes(self) -> bytes:
        body = self.body or tensors_to_bytes(self.tensors)
        header = {"v": PROTOCOL_VERSION, "kind": self.kind, "sender": self.sender, "job": self.job,
                  "round": self.round, "model_version": self.model_version, "samples": self.samples,
                  "metrics": self.metrics, "info": self.info, "msg_id": self.msg_id, "sent_at": self.sent_at,
                  "sha256": _sha(body), "body_bytes": len(body)}
        raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
        return MAGIC + struct.pack(">I", len(raw)) + raw + body

    @classmethod
    def from_bytes(cls, data: bytes, max_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES) -> Message:
        """Decode and verify; raises ProtocolError saying what was wrong."""
        if len(data) > max_bytes:
            raise ProtocolError(f"payload: expected at most {max_bytes} bytes, found {len(data)}")
        if len(data) < 8 or data[:4] != MAGIC:
            raise ProtocolError(f"payload: expected the {MAGIC!r} magic, found {data[:4]!r}")
        (n,) = struct.unpack(">I", data[4:8])
        if n > MAX_HEADER_BYTES or 8 + n > len(data):
            raise ProtocolError(f"header: expected at most {MAX_HEADER_BYTES} bytes within the payload, found {n}")
        try:
            h = json.loads(data[8:8 + n].decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ProtocolError(f"header: expected UTF-8 JSON, found: {exc}") from None
        except RecursionError:
            raise ProtocolError("header: expected JSON nested at most a few levels, found deeper nesting") from None
        if not isinstance(h, dict):
            raise ProtocolError("header: expected a JSON object")
        if h.get("v") != PROTOCOL_VERSION:
            raise ProtocolError(f"header: expected protocol version {PROTOCOL_VERSION}, found {h.get('v')!r}")
        body = data[8 + n:]
        if h.get("body_bytes") != len(body) or h.get("sha256") != _sha(body):
            raise ProtocolError("body: expected the length and sha256 in the header, found different ones (truncated or altered)")
        try:
            kind = h["kind"]
            tensors = tensors_from_bytes(body) if kind in TENSOR_KINDS else {}
            metrics = {str(k): float(v) for k, v in (h.get("metrics") or {}).items()}
            if not all(np.isfinite(v) for v in metrics.values()):
                raise ValueError("metrics must be finite numbers")
            return cls(kind=kind, sender=h["sender"], job=str(h.get("job", "")), round=h.get("round", 0),
                       model_version=h.get("model_version", 0), samples=h.get("samples", 0), metrics=metrics,
                       info=dict(h.get("info") or {}), tensors=tensors, body=b"" if tensors else body,
                       msg_id=str(h.get("msg_id", "")), sent_at=float(h.get("sent_at", 0.0)),
                       body_sha256=str(h["sha256"]))
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
            raise ProtocolError(f"header: expected the protocol's fields, found a bad one ({exc!r})") from None


# ---------------------------------------------------------------- chunking (pure)
def split(payload: bytes, sender: str, max_message_bytes: int) -> list[bytes]:
    """``payload`` as one message if it fits, else as chunk messages that each fit."""
    if len(payload) <= max_message_bytes:
        return [payload]
    overhead = 1024  # header of a chunk message
    size = max_message_bytes - overhead
    if size <= 0:
        raise ProtocolError(f"max_message_bytes: expected more than {overhead}, found {max_message_bytes}")
    msg_id, total = uuid.uuid4().hex, _sha(payload)
    parts = [payload[i:i + size] for i in range(0, len(payload), size)]
    return [Message("chunk", sender, body=part, msg_id=f"{msg_id}:{i}",
                    info={"payload": msg_id, "index": i, "count": len(parts), "payload_sha256": total,
                          "payload_bytes": len(payload)}).to_bytes() for i, part in enumerate(parts)]


@dataclass
class _Partial:
    count: int
    sha256: str
    size: int
    parts: dict[int, bytes] = field(default_factory=dict)
    first_seen: float = field(default_factory=time.monotonic)


class Reassembler:
    """Collects chunks; returns the whole payload once every chunk is in and its sha256 matches."""

    def __init__(self, max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES, max_pending: int = 64) -> None:
        self.max_payload_bytes, self.max_pending = max_payload_bytes, max_pending
        self._pending: dict[tuple[str, str], _Partial] = {}

    def add(self, chunk: Message) -> bytes | None:
        info = chunk.info
        try:
            key = (chunk.sender, str(info["payload"]))
            index, count, total, size = int(info["index"]), int(info["count"]), str(info["payload_sha256"]), \
                int(info["payload_bytes"])
        except (KeyError, TypeError, ValueError):
            raise ProtocolError("chunk: expected payload, index, count, payload_sha256 and payload_bytes") from None
        if size > self.max_payload_bytes:
            raise ProtocolError(f"chunk: expected a payload of at most {self.max_payload_bytes} bytes, found {size}")
        if not 0 <= index < count:
            raise ProtocolError(f"chunk: expected index in [0, {count}), found {index}")
        partial = self._pending.get(key)
        if partial is None:
            if len(self._pending) >= self.max_pending:  # forget the oldest incomplete payload
                del self._pending[min(self._pending, key=lambda k: self._pending[k].first_seen)]
            partial = self._pending[key] = _Partial(count, total, size)
        if (partial.count, partial.sha256, partial.size) != (count, total, size):
            raise ProtocolError("chunk: expected the same count and payload sha256 as its siblings")
        partial.parts[index] = chunk.body
        if len(partial.parts) < partial.count:
            return None
        del self._pending[key]
        payload = b"".join(partial.parts[i] for i in range(partial.count))
        if len(payload) != partial.size or _sha(payload) != partial.sha256:
            raise ProtocolError("chunked payload: expected the announced sha256, found a different one")
        return payload

    def missing(self, older_than: float = 0.0) -> dict[tuple[str, str], list[int]]:
        """(sender, payload id) -> missing chunk indices, for payloads pending at least ``older_than`` s."""
        now = time.monotonic()
        return {k: [i for i in range(p.count) if i not in p.parts]
                for k, p in self._pending.items() if now - p.first_seen >= older_than}
