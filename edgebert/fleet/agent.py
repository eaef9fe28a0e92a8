"""The device side of provisioning (torch-free; no crypto library): receive, verify, activate, roll back.

1. An **offer** (retained, from the provisioner) carries the artifact's ``manifest.json`` and its
   Ed25519 signature, and a signed **release** (``fleet.release``): target devices, family and
   version, issue time, expiry, pin. The agent checks both signatures with the fleet's public key
   before anything else, then that the release names this device and this manifest, has not
   expired and does not go below the highest version of its family committed here (unless it is
   a signed pin); an offer failing any of these is refused and nothing is downloaded.
2. The agent answers with its **status** (retained): what it runs, and which of the manifest's
   device files it still needs (files already staged and intact are not asked for again, so an
   interrupted transfer resumes).
3. Each **file** is checked against the signed manifest's size and sha256 as it arrives and
   staged on disk; a mismatch refuses the artifact (the one running is untouched).
4. When every file is in: install, switch on trial, load it and run one inference (self-test);
   commit if that works, otherwise roll back to the previous artifact. The outcome is reported
   with a key of its own, which the registry uses so that a report seen twice is recorded once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import numpy as np

from edgebert.artifact import Manifest
from edgebert.errors import ArtifactError, EdgeBertError
from edgebert.fleet import ed25519
from edgebert.fleet.release import Release, artifact_family, artifact_version, check_fresh, check_release
from edgebert.fleet.slots import ArtifactSlots, Pointer, check_name
from edgebert.fleet.verify import check_signature
from edgebert.messaging.protocol import Message
from edgebert.messaging.transport import Channel
from edgebert.runtime.engine import Engine

SelfTest = Callable[[Engine], None]


def default_self_test(engine: Engine) -> None:
    """Load worked; now one inference, whose outputs must be finite."""
    out = engine.embed(["self-test"]) if engine.is_text else engine.output(np.zeros(engine.input_dim or 1, np.float32))
    if not np.all(np.isfinite(out)):
        raise ArtifactError("self-test: expected finite outputs from one inference, found NaN or inf")


class DeviceAgent:
    def __init__(self, channel: Channel, slots: ArtifactSlots, public_key: bytes,
                 self_test: SelfTest = default_self_test, threads: int = 1,
                 on_change: Callable[[dict[str, Any]], None] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.ch, self.slots, self.public_key, self.self_test, self.threads = channel, slots, public_key, self_test, threads
        self.me = channel.me
        self.on_change = on_change or (lambda status: None)
        self.engine: Engine | None = None
        self.refusals: list[str] = []
        self.clock = clock
        self._offer: tuple[bytes, bytes, Manifest, list[str], Release] | None = None
        self._lock = threading.RLock()
        self._start()
        t = channel.topics
        channel.subscribe(t.artifact_offer(self.me), self._on_offer)
        channel.subscribe(t.artifact_files(self.me), self._on_file)
        self.publish_status()

    # ---------------------------------------------------------------- start-up
    def _start(self) -> None:
        pointer = self.slots.pointer()
        if pointer.state == "trial":  # crashed between switch and self-test: that artifact never proved itself
            pointer = self.slots.rollback(pointer, "self-test: the device restarted before the self-test finished")
        if pointer.current:
            try:
                self.engine = Engine.load(self.slots.path(pointer.current), self.threads)
                manifest = Manifest.from_json((self.slots.path(pointer.current) / "manifest.json").read_text("utf-8"))
                self.slots.raise_floor(artifact_family(manifest), artifact_version(manifest))  # seed a missing floor
            except (EdgeBertError, OSError) as exc:  # the artifact on disk went bad
                self.refusals.append(str(exc))
                self.engine = None

    # ---------------------------------------------------------------- inference
    def predict(self, x: Any) -> np.ndarray:
        with self._lock:
            if self.engine is None:
                raise ArtifactError(f"device {self.me}: expected an active artifact, found none yet")
            engine = self.engine
        return engine.embed([x]) if engine.is_text else engine.output(x)

    # ---------------------------------------------------------------- status
    def status(self, need: list[str] | None = None, target: str | None = None) -> dict[str, Any]:
        p = self.slots.pointer()
        return {"state": "downloading" if need else "idle" if p.current is None else "active",
                "artifact": p.current, "previous": p.previous, "activation": p.activation,
                "activated_at": p.activated_at, "target": target, "need": need or [],
                "outcome": asdict(p.outcome) if p.outcome else None}

    def publish_status(self, need: list[str] | None = None, target: str | None = None) -> dict[str, Any]:
        info = self.status(need, target)
        self.ch.send(self.ch.topics.artifact_status(self.me), Message("status", self.me, info=info), retain=True)
        self.on_change(info)
        return info

    # ---------------------------------------------------------------- offers and files
    def _refuse(self, artifact_id: str, reason: str) -> None:
        self.refusals.append(reason)
        if self._offer is not None and self._offer[2].artifact_id == artifact_id:
            self._offer = None  # a refused replay of another artifact leaves a download in progress alone
        self.slots.refuse(artifact_id, reason)
        self.publish_status(target=artifact_id)

    def _on_offer(self, topic: str, msg: Message) -> None:
        if msg.kind != "offer":
            return
        with self._lock:
            offered = str(msg.info.get("artifact", ""))
            try:
                signature = bytes.fromhex(str(msg.info.get("signature", "")))
            except ValueError:
                signature = b""
            try:
                check_signature(msg.body, signature, self.public_key, f"offer of {offered or '(no id)'}")
                manifest = Manifest.from_json(msg.body.decode("utf-8", errors="replace"), "offered manifest")
                if manifest.artifact_id != offered:
                    raise ArtifactError(f"offer: expected the signed manifest's id {manifest.artifact_id!r}, "
                                        f"found {offered!r}")
                check_name("artifact id", manifest.artifact_id)
                names = [check_name("file name", n) for n in manifest.device_files()]
                release = self._release(msg, manifest)
            except EdgeBertError as exc:
                self._refuse(offered, str(exc))
                return
            pointer = self.slots.pointer()
            if pointer.current == offered:
                self._offer = None
                self.publish_status(target=offered)
                return
            try:
                check_fresh(release, self.clock(), pointer.floors)
            except EdgeBertError as exc:
                self._refuse(offered, str(exc))
                return
            last = pointer.outcome
            if last and last.artifact == offered and last.final and not release.retry:
                self.publish_status(target=offered)  # this artifact failed its self-test here: report that again
                return
            need = self.slots.staged(manifest, names)
            self._offer = (msg.body, signature, manifest, names, release)
            if need:
                self.ch.request_missing()
                self.publish_status(need=need, target=offered)
            else:
                self._activate()

    def _release(self, msg: Message, manifest: Manifest) -> Release:
        """The offer's release, if the fleet key signed it and it is about this manifest and device."""
        try:
            data = bytes.fromhex(str(msg.info.get("release", "")))
            sig = bytes.fromhex(str(msg.info.get("release_signature", "")))
        except ValueError:
            data, sig = b"", b""
        if not data:
            raise ArtifactError("offer: expected a signed release (target, version, expiry), found none")
        if len(sig) != 64 or not ed25519.verify(self.public_key, data, sig):
            raise ArtifactError("offer: expected a release signed by the fleet key, found a signature that does not "
                                "match (tampered release or foreign key)")
        release = Release.from_bytes(data)
        check_release(release, msg.body, manifest, self.me)
        return release

    def _on_file(self, topic: str, msg: Message) -> None:
        if msg.kind != "file":
            return
        with self._lock:
            if self._offer is None or msg.info.get("artifact") != self._offer[2].artifact_id:
                return  # not what this device was offered (or already done)
            manifest, names = self._offer[2], self._offer[3]
            name = str(msg.info.get("name", ""))
            try:
                if name not in names:
                    raise ArtifactError(f"file {name!r}: expected one of the signed manifest's files {names}, "
                                        "found another")
                self.slots.stage_file(manifest, name, msg.body)
            except EdgeBertError as exc:
                self._refuse(manifest.artifact_id, str(exc))
                return
            if not self.slots.staged(manifest, names):
                self._activate()

    def _activate(self) -> None:
        assert self._offer is not None
        manifest_bytes, signature, manifest, _, release = self._offer
        self._offer = None
        self.slots.install(manifest_bytes, signature, manifest)
        trial: Pointer = self.slots.begin_trial(manifest.artifact_id, release.family, release.version, release.pin)
        try:
            engine = Engine.load(self.slots.path(manifest.artifact_id), self.threads)
            self.self_test(engine)
        except Exception as exc:  # noqa: BLE001 - any failure of the new artifact means: roll back
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            self.refusals.append(reason)
            self.slots.rollback(trial, f"self-test: {reason}")
            self.publish_status(target=manifest.artifact_id)
            return
        self.engine = engine
        self.slots.commit(trial)
        self.publish_status(target=manifest.artifact_id)
