"""Which artifact each device should run: the registry's best compatible one whose files are at
hand, signed with the fleet key (or the artifact a ``--pin`` names), one row per device; and the
final table. The provisioner (``fleet.provision``) then delivers and records it."""

from __future__ import annotations

import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgebert.artifact import MANIFEST, Artifact
from edgebert.errors import EdgeBertError, InputError
from edgebert.fleet.signing import SIGNATURE, check_signature, sign
from edgebert.names import check_device_iri, device_name


@dataclass(frozen=True)
class Shipment:
    """A signed artifact ready to send: manifest bytes, signature, and the device's files."""

    artifact_iri: str
    artifact: Artifact
    manifest_bytes: bytes
    signature: bytes
    files: tuple[str, ...]

    @property
    def artifact_id(self) -> str:
        return self.artifact.manifest.artifact_id

    @property
    def bytes(self) -> int:
        return sum(self.artifact.manifest.files[n].bytes for n in self.files)


@dataclass
class DeviceRow:
    iri: str
    name: str
    target: Shipment | None = None
    note: str = ""
    result: str = "pending"   # pending | active | up to date | failed | rolled-back | offline | no match | error
    pin: bool = False         # the target is a signed pin (may go below the device's committed version)
    previous: str | None = None
    recorded: bool = False
    sent: dict[str, float] = field(default_factory=dict)
    bytes_sent: int = 0

    @property
    def settled(self) -> bool:
        return self.result not in ("pending", "downloading")


def _local_dir(url: str | None) -> Path | None:
    if not url:
        return None
    u = urllib.parse.urlparse(url)
    if u.scheme != "file":
        return None
    return Path(urllib.request.url2pathname(u.path))


def load_shipment(artifact_iri: str, path: Path, private_key: Path, public_key: bytes) -> Shipment:
    """The artifact at ``path``, verified, signed with the fleet key if it is not signed yet, and
    its signature checked against the fleet's public key."""
    art = Artifact.load(path, verify=True)
    if not (path / SIGNATURE).is_file():
        sign(path, private_key)
    manifest_bytes, signature = (path / MANIFEST).read_bytes(), (path / SIGNATURE).read_bytes()
    check_signature(manifest_bytes, signature, public_key, f"{path} (sign it again: edgebert fleet sign)")
    return Shipment(artifact_iri, art, manifest_bytes, signature, tuple(art.manifest.device_files()))


def plan(registry: Any, private_key: Path, public_key: bytes, fleet: str | None = None,
         pin: str | None = None) -> list[DeviceRow]:
    """One row per device: its best compatible artifact that has files at hand, or why none.
    With ``pin`` (an artifact IRI or id), every device that the artifact fits is pinned to it (a
    signed pin: it may be below what the device runs); the others are planned as usual."""
    devices = registry.fleet_devices(fleet)
    if not devices:
        where = f" in fleet {fleet!r}" if fleet else ""
        raise InputError(f"registry: expected registered devices{where}, found none")
    pinned = registry.resolve(pin) if pin else None
    rows, names, shipments = [], {}, {}
    for d in devices:
        name = device_name(d["device"])
        row = DeviceRow(d["device"], name)
        rows.append(row)
        try:
            check_device_iri(d["device"])
            if name in names:
                raise InputError(f"devices {names[name]} and {d['device']}: expected distinct last IRI parts "
                                 f"(their MQTT ids), found {name!r} twice")
            names[name] = d["device"]
            matches = registry.match(d["device"], latest_only=pinned is None)
            if pinned is not None and any(m.artifact == pinned for m in matches):
                matches, row.pin = [m for m in matches if m.artifact == pinned], True
            elif pinned is not None:
                matches = registry.match(d["device"], latest_only=True)
            for m in matches:
                path = _local_dir(registry.artifact_location(m.artifact))
                if path is None or not (path / MANIFEST).is_file():
                    continue
                if m.artifact not in shipments:
                    shipments[m.artifact] = load_shipment(m.artifact, path, private_key, public_key)
                row.target = shipments[m.artifact]
                break
        except EdgeBertError as exc:  # one bad device (or artifact) never stops the fleet's run
            row.target, row.result, row.note = None, "error", str(exc)[:200]
            continue
        if row.target is None:
            row.result = "no match"
            unknown = registry.unknown_capabilities(d["device"]) if not matches else []
            row.note = (f"cannot be matched: its description states no {', '.join(unknown)}" if unknown else
                        "no compatible artifact" if not matches else
                        f"{len(matches)} compatible artifact(s), none with files at hand")
    return rows


def table(rows: list[DeviceRow]) -> str:
    """The final table, one line per device."""
    head = f"{'device':<22} {'artifact':<40} {'result':<12} {'sent':>10}  note"
    lines = [head, "-" * len(head)]
    for r in rows:
        art = r.target.artifact_id if r.target else "-"
        sent = f"{r.bytes_sent / 1e6:.2f} MB" if r.bytes_sent else "-"
        lines.append(f"{r.name:<22} {art:<40} {r.result:<12} {sent:>10}  {r.note}")
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.result] = counts.get(r.result, 0) + 1
    lines.append("  ".join(f"{k}: {v}" for k, v in sorted(counts.items())))
    return "\n".join(lines)
