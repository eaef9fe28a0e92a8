"""End-to-end authentication of federated updates: HMAC-SHA256 with a per-device key (pure, stdlib).

A broker's ACL says who may publish on a topic; without one (the embedded broker, a Mosquitto
without the generated ACL) anybody can publish as anybody. So every update carries, in
``info["auth"]``, an HMAC-SHA256 tag over what the aggregator acts on: sender, job, round, model
version, sample count, metrics, encoding and the sha256 of the tensor body. The key is the
device's own: ``update_key(password)`` derives it from the password that ``edgebert fleet
credentials`` gave the device (the broker stores only a PBKDF2 hash, so the broker cannot forge
updates), or a deployment hands each device a random 32-byte key. The aggregator holds every
device's key; an update whose tag does not verify with its sender's key is refused as
``unauthenticated``, and only keyed devices count as known. A replayed update is bound to its
round and job, so it is ``stale`` in any other round and a ``duplicate`` in its own.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import replace

from edgebert.messaging.protocol import Message, tensors_to_bytes

ALGORITHM = "hmac-sha256"
KEY_CONTEXT = b"edgebert federated update key v1"


def update_key(password: str) -> bytes:
    """A device's 32-byte update key, derived from its MQTT password (``fleet credentials``)."""
    return hmac.new(password.encode("utf-8"), KEY_CONTEXT, hashlib.sha256).digest()


def edge_key(aggregator_password: str, edge: str) -> bytes:
    """An edge aggregator's 32-byte key for its partial results, derived from the ``aggregator``
    service password (``fleet credentials``) and the edge's name: the root and each edge, run by
    the fleet's operator, derive it; a device, which holds only its own password, cannot."""
    return hmac.new(update_key(aggregator_password), b"edge partial key v1 " + edge.encode("utf-8"),
                    hashlib.sha256).digest()


def _signed_bytes(msg: Message, body_sha256: str) -> bytes:
    info = {k: v for k, v in msg.info.items() if k != "auth"}
    fields = [ALGORITHM, msg.kind, msg.sender, msg.job, msg.round, msg.model_version, msg.samples,
              sorted(msg.metrics.items()), info, body_sha256]
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), allow_nan=False).encode("utf-8")


def sign_update(msg: Message, key: bytes) -> Message:
    """``msg`` with its body serialised once and ``info["auth"]`` = the tag over it."""
    body = msg.body or tensors_to_bytes(msg.tensors)
    digest = hashlib.sha256(body).hexdigest()
    tag = hmac.new(key, _signed_bytes(msg, digest), hashlib.sha256).hexdigest()
    return replace(msg, body=body, info={**msg.info, "auth": {"alg": ALGORITHM, "tag": tag}})


def verify_update(msg: Message, key: bytes | None) -> str | None:
    """Why ``msg`` is not an authentic update from ``msg.sender`` (None if it is)."""
    if key is None:
        return f"no key for device {msg.sender!r}"
    auth = msg.info.get("auth")
    if not isinstance(auth, dict) or auth.get("alg") != ALGORITHM or not isinstance(auth.get("tag"), str):
        return f"expected an {ALGORITHM} tag in info.auth, found none"
    try:
        expected = hmac.new(key, _signed_bytes(msg, msg.body_sha256), hashlib.sha256).hexdigest()
    except (TypeError, ValueError):
        return "expected JSON-safe metrics and info, found others"
    if not hmac.compare_digest(expected, auth["tag"]):
        return f"expected a tag made with {msg.sender}'s key, found one that does not verify"
    return None
