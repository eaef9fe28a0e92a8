"""The host side of provisioning: the registry's best artifact for every device, over MQTT, recorded.

``plan`` asks the registry, for every device (of a fleet), for its best compatible artifact whose
files are at hand (``dcat:downloadURL``), or the artifact it is pinned to (``pin``). ``Provisioner.run``
then publishes a retained offer to each device — the signed manifest plus a release signed for
that device alone (``fleet.release``: family, version, issue time, expiry, pin) — sends the files a device asks for (chunked,
each with its sha256), and records every outcome the devices report (active, failed, rolled back)
in the registry under the device's own key for it — so a re-run, a replayed retained status or a
provisioner killed halfway never records a deployment twice. Offers are published again every
``reoffer_s`` seconds, which also covers a broker restart that lost retained messages; a device
that is offline gets its offer when it reconnects (while the provisioner runs, or on a re-run).
All registry calls happen on the caller's thread; MQTT handlers only queue events.

The provisioner believes the devices, not the registry: a device is "up to date" only when its own
(retained) status says it runs its target, and when the registry's record of what a device runs
differs from what the device reports, the registry is repaired from the report. A device whose
planning or offer fails gets an "error" row; the run goes on for the others.
"""

from __future__ import annotations

import queue
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgebert.errors import EdgeBertError, InputError
from edgebert.fleet.plan import DeviceRow, Shipment, plan, table
from edgebert.fleet.release import DEFAULT_TTL_S, Release
from edgebert.fleet.signing import signer
from edgebert.messaging.protocol import Message
from edgebert.messaging.transport import Channel
from edgebert.names import check_device_iri, device_name
from edgebert.progress import Progress

OUTCOME_STATUS = {"active": "active", "refused": "failed", "rolled-back": "rolled-back"}


@dataclass(frozen=True)
class ProvisionConfig:
    fleet: str | None = None       # only devices that are eb:memberOf this fleet (IRI or last name part)
    wait_s: float = 60.0           # how long to wait for devices to settle
    reoffer_s: float = 5.0         # offers are published again this often to devices not settled
    resend_s: float = 20.0         # a file asked for again after this long is sent again
    retry_failed: bool = False     # offer again an artifact that failed on a device before
    offer_ttl_s: float = DEFAULT_TTL_S  # a release expires this long after it is signed

    def __post_init__(self) -> None:
        if not (self.wait_s > 0 and self.reoffer_s > 0 and self.resend_s > 0 and 60 <= self.offer_ttl_s <= 366 * 86400):
            raise InputError("provision: expected positive wait, reoffer and resend times and an offer lifetime "
                             f"between 1 minute and 366 days, found {self.wait_s}, {self.reoffer_s}, {self.resend_s}, "
                             f"{self.offer_ttl_s}")












class Provisioner:
    def __init__(self, registry: Any, channel: Channel, rows: list[DeviceRow], config: ProvisionConfig,
                 private_key: Path) -> None:
        """``private_key``: the fleet key (``fleet.key``) that signs each device's release."""
        self.registry, self.ch, self.rows, self.config = registry, channel, rows, config
        self._sign = signer(Path(private_key))  # read once, not at every (re)offer
        self.by_name = {r.name: r for r in rows}
        self.events: queue.Queue[tuple[str, Message]] = queue.Queue()
        self.recorded = 0
        channel.subscribe(channel.topics.artifact_statuses(), lambda topic, msg: self.events.put((topic, msg)))

    # ---------------------------------------------------------------- messages
    def offer(self, row: DeviceRow) -> None:
        s = row.target
        assert s is not None
        release = Release.for_manifest(s.manifest_bytes, s.artifact.manifest, (row.name,), time.time(),
                                       self.config.offer_ttl_s, self.config.fleet, row.pin, self.config.retry_failed)
        data = release.to_bytes()
        info = {"artifact": s.artifact_id, "signature": s.signature.hex(), "files": list(s.files),
                "release": data.hex(), "release_signature": self._sign(data).hex()}
        self.ch.send(self.ch.topics.artifact_offer(row.name), Message("offer", "provisioner", info=info,
                                                                      body=s.manifest_bytes), retain=True)

    def send_files(self, row: DeviceRow, names: list[str]) -> None:
        s = row.target
        assert s is not None
        now = time.monotonic()
        for name in names:
            if name not in s.files or now - row.sent.get(name, -1e9) < self.config.resend_s:
                continue
            data = (s.artifact.path / name).read_bytes()
            self.ch.send(self.ch.topics.artifact_files(row.name),
                         Message("file", "provisioner", info={"artifact": s.artifact_id, "name": name}, body=data))
            row.sent[name] = now
            row.bytes_sent += len(data)

    # ---------------------------------------------------------------- device reports
    def handle(self, topic: str, msg: Message) -> None:
        row = self.by_name.get(msg.sender)
        if row is None or row.target is None or msg.kind != "status" or topic != self.ch.topics.artifact_status(row.name):
            return
        info, target = msg.info, row.target.artifact_id
        outcome = info.get("outcome") or {}
        about_target = outcome.get("artifact") == target
        if about_target and outcome.get("status") == "active" and info.get("artifact") == target:
            if not self._record(row, outcome) and self._repair(row, info):
                row.result = "active"
        elif about_target and outcome.get("status") in ("refused", "rolled-back"):
            new = self._record(row, outcome)
            if not new and (outcome.get("status") == "refused" or self.config.retry_failed):
                row.result = "pending"  # an old failure seen again: the device tries again on our offer
        elif info.get("artifact") == target:  # runs it (its own report); repair the registry if it disagrees
            row.result = "active" if self._repair(row, info) or row.result == "active" else "up to date"
        elif info.get("state") == "downloading" and info.get("target") == target:
            row.result = "downloading"
            self.send_files(row, [str(n) for n in info.get("need", [])])

    def _repair(self, row: DeviceRow, info: dict[str, Any]) -> bool:
        """Record the device's own report of what it runs when the registry says otherwise; True if repaired."""
        target = row.target
        assert target is not None
        if self.registry.active_artifact(row.iri) == target.artifact_iri:
            return False
        key = f"reported:{info.get('activation') or info.get('activated_at') or target.artifact_id}"
        when = str(info.get("activated_at") or "") or time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
        new = self.registry.record_outcome(key, row.iri, target.artifact_iri, "active", when)
        self.recorded += int(new)
        row.recorded = row.recorded or new
        row.note = "registry repaired from the device's report"
        return True

    def _record(self, row: DeviceRow, outcome: dict[str, Any]) -> bool:
        """Record the device's outcome for its target (once per outcome key); True if it was new."""
        status = str(outcome.get("status"))
        target = row.target
        assert target is not None
        from registry.describe import artifact_iri

        previous = outcome.get("previous")
        prev_iri = artifact_iri(str(previous)) if previous else None  # withdrawn artifacts keep their IRI
        new = self.registry.record_outcome(str(outcome.get("key")), row.iri, target.artifact_iri,
                                           OUTCOME_STATUS[status], str(outcome.get("at")), prev_iri)
        self.recorded += int(new)
        row.recorded = row.recorded or new
        row.previous = previous
        row.result = OUTCOME_STATUS[status] if new or status != "active" or row.result == "active" else "up to date"
        if new or status != "active":
            row.note = str(outcome.get("reason", ""))[:160]
        return bool(new)

    # ---------------------------------------------------------------- the run
    def run(self, progress: Progress = lambda step, done, total: None, watch: bool = False) -> list[DeviceRow]:
        todo = [r for r in self.rows if r.target is not None]
        for row in todo:  # every device gets the retained offer; only its own report settles it
            self._offer_safely(row)
        deadline = time.monotonic() + self.config.wait_s
        last_offer = time.monotonic()
        total = len(todo)
        progress("provision", sum(r.settled for r in todo), total)
        while watch or time.monotonic() < deadline:
            try:
                topic, msg = self.events.get(timeout=0.1)
            except queue.Empty:
                pass
            else:
                try:
                    self.handle(topic, msg)
                except Exception as exc:  # noqa: BLE001 - one device's odd report never stops the run
                    row = self.by_name.get(msg.sender)
                    if row is not None:
                        row.result, row.note = "error", str(exc)[:200]
            settled = sum(r.settled for r in todo)
            progress("provision", settled, total)
            if settled == total and not watch and self.events.empty():
                break
            if time.monotonic() - last_offer >= self.config.reoffer_s:
                last_offer = time.monotonic()
                for row in todo:
                    if not row.settled:
                        self._offer_safely(row)
        for row in todo:
            if not row.settled:
                row.note = ("offer retained: it installs when the device reconnects; re-run to record it"
                            if row.result == "pending" else "transfer unfinished; re-run to resume it")
                row.result = "offline" if row.result == "pending" else "incomplete"
        return self.rows


    def _offer_safely(self, row: DeviceRow) -> None:
        try:
            self.offer(row)
        except (EdgeBertError, ValueError, OSError) as exc:  # e.g. the broker refused this device's topic
            row.result, row.note = "error", f"offer failed: {str(exc)[:160]}"




__all__ = ["DeviceRow", "ProvisionConfig", "Provisioner", "Shipment", "check_device_iri", "device_name", "plan",
           "table"]
