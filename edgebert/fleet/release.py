"""Signed releases: what binds an artifact to a device, a version floor and a time (pure; device-safe).

An artifact's own signature (``manifest.sig``) says the fleet built it; it says nothing about
*which* device should run it, *whether it is newer* than what that device runs, or *when* the
offer was made — so a captured offer could be replayed to downgrade a device or to install an
artifact meant for other devices. Like TUF's targets metadata and Uptane's director metadata, the
provisioner therefore signs, per offer, a **release**: the artifact id and the sha256 of its
manifest, its family and monotonic version, the target devices (and fleet), the issue time and an
expiry, and whether it is an explicit **pin** (the only way to go below a version on purpose).

The device (``fleet.agent``) checks the release signature with the fleet key, that it names this
device, that it has not expired, and that its version is above the highest version of that
family the device has committed (kept in ``active.json``, written atomically with the switch) —
unless the release is a pin. A rollback after a failed self-test is the only other way back.

The version of an artifact is its manifest's creation time in microseconds since the epoch (the
converter stamps it; the registry orders a family's versions by the same ``schema:dateCreated``),
so it is inside the signed manifest and needs no counter service.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from datetime import datetime, timezone

from edgebert.artifact import Manifest
from edgebert.errors import ArtifactError

RELEASE_TYPE = "edgebert-release-v1"
MAX_RELEASE_BYTES = 16 * 1024
DEFAULT_TTL_S = 7 * 24 * 3600.0


def artifact_version(manifest: Manifest) -> int:
    """The artifact's version: its creation time, microseconds since the epoch (0 if it has none)."""
    if not manifest.created:
        return 0
    try:
        when = datetime.fromisoformat(manifest.created)
    except ValueError:
        raise ArtifactError(f"manifest: expected an ISO 8601 'created' time, found {manifest.created!r}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    delta = when - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def artifact_family(manifest: Manifest) -> str:
    return str(manifest.source.get("name") or manifest.architecture.get("type") or "unknown")


@dataclass(frozen=True)
class Release:
    artifact: str
    manifest_sha256: str
    family: str
    version: int
    devices: tuple[str, ...]
    issued: float
    expires: float
    fleet: str | None = None
    pin: bool = False
    retry: bool = False  # offer again an artifact that failed its self-test on the device
    type: str = RELEASE_TYPE

    def __post_init__(self) -> None:
        checks = [(self.type == RELEASE_TYPE, f"type {RELEASE_TYPE!r}"),
                  (isinstance(self.artifact, str) and 0 < len(self.artifact) <= 200, "an artifact id"),
                  (isinstance(self.manifest_sha256, str) and len(self.manifest_sha256) == 64, "a manifest sha256"),
                  (isinstance(self.family, str) and 0 < len(self.family) <= 200, "a family name"),
                  (isinstance(self.version, int) and not isinstance(self.version, bool) and 0 <= self.version < 2**63,
                   "a version in [0, 2**63)"),
                  (isinstance(self.devices, tuple) and 0 < len(self.devices) <= 100_000
                   and all(isinstance(d, str) and d for d in self.devices), "a list of target devices"),
                  (all(isinstance(t, (int, float)) and not isinstance(t, bool) for t in (self.issued, self.expires))
                   and self.issued <= self.expires, "issued <= expires (unix seconds)"),
                  (self.fleet is None or isinstance(self.fleet, str), "a fleet name or null"),
                  (isinstance(self.pin, bool) and isinstance(self.retry, bool), "pin and retry as booleans")]
        for ok, what in checks:
            if not ok:
                raise ArtifactError(f"release: expected {what}, found {self!r}"[:300])

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":")).encode("utf-8")

    @classmethod
    def from_bytes(cls, data: bytes) -> Release:
        if len(data) > MAX_RELEASE_BYTES:
            raise ArtifactError(f"release: expected at most {MAX_RELEASE_BYTES} bytes, found {len(data)}")
        try:
            raw = json.loads(data.decode("utf-8"))
            if not isinstance(raw, dict):
                raise TypeError("not an object")
            raw["devices"] = tuple(raw.get("devices") or ())
            return cls(**raw)
        except ArtifactError:
            raise
        except (ValueError, TypeError, RecursionError) as exc:
            raise ArtifactError(f"release: expected the signed release JSON, found an invalid one ({exc})"[:300]) from None

    @classmethod
    def for_manifest(cls, manifest_bytes: bytes, manifest: Manifest, devices: tuple[str, ...], now: float,
                     ttl_s: float = DEFAULT_TTL_S, fleet: str | None = None, pin: bool = False,
                     retry: bool = False) -> Release:
        return cls(manifest.artifact_id, hashlib.sha256(manifest_bytes).hexdigest(), artifact_family(manifest),
                   artifact_version(manifest), tuple(devices), now, now + ttl_s, fleet, pin, retry)


def check_release(release: Release, manifest_bytes: bytes, manifest: Manifest, me: str) -> None:
    """ArtifactError unless ``release`` is about exactly this manifest and names device ``me``."""
    if release.artifact != manifest.artifact_id or release.manifest_sha256 != hashlib.sha256(manifest_bytes).hexdigest():
        raise ArtifactError(f"release: expected it to name the offered manifest {manifest.artifact_id!r}, "
                            f"found {release.artifact!r} with another manifest hash")
    if release.family != artifact_family(manifest) or release.version != artifact_version(manifest):
        raise ArtifactError(f"release: expected family {artifact_family(manifest)!r} version "
                            f"{artifact_version(manifest)} from the manifest, found {release.family!r} {release.version}")
    if me not in release.devices:
        shown = ", ".join(release.devices[:3]) + (" …" if len(release.devices) > 3 else "")
        raise ArtifactError(f"release: expected an offer meant for device {me!r}, found one for {shown}")


def check_fresh(release: Release, now: float, floors: dict[str, int]) -> None:
    """ArtifactError if the release expired or would take the device below what it committed."""
    if now > release.expires:
        when = datetime.fromtimestamp(release.expires, timezone.utc).isoformat(timespec="seconds")
        raise ArtifactError(f"release: expected an offer valid now, found one that expired at {when} (replayed?)")
    floor = floors.get(release.family)
    if floor is not None and release.version <= floor and not release.pin:
        raise ArtifactError(f"release: expected {release.family} above version {floor} (committed on this device), "
                            f"found version {release.version}: a downgrade needs a signed pin")


__all__ = ["DEFAULT_TTL_S", "Release", "artifact_family", "artifact_version", "check_fresh", "check_release"]
