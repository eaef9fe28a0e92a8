"""A device's artifact store on disk: staged downloads, the active artifact and the previous one.

Layout under the device's state directory::

    staging/<artifact id>/<file>   files as they arrive, each checked against the signed manifest
    artifacts/<artifact id>/       complete, verified artifacts (at most the active and the previous)
    active.json                    {"current", "previous", "state": "active" | "trial", "activation",
                                    "floors": {family: highest committed version}, ...}

Switching is a rename of ``active.json`` (atomic); a crash while a new artifact is on trial
(between the switch and its self-test) is rolled back on the next start. The version floors live
in the same file, so committing an artifact and raising its family's floor are one atomic write:
no crash can leave a device that runs version N with a floor below N. Nothing here imports
torch or a crypto library.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import uuid
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

from edgebert.artifact import MANIFEST, Manifest, sha256_path
from edgebert.errors import ArtifactError
from edgebert.files import atomic_write
from edgebert.names import SAFE_NAME


def check_name(kind: str, name: str) -> str:
    """A file or artifact name that is safe as one path component, or ArtifactError."""
    if not isinstance(name, str) or not SAFE_NAME.match(name) or name in (".", ".."):
        raise ArtifactError(f"{kind}: expected a plain name (letters, digits, '.', '_', '-'), found {name!r}")
    return name


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


@dataclass(frozen=True)
class Outcome:
    """The last provisioning outcome, kept on disk so that a restarted device reports the same one."""

    key: str
    artifact: str
    status: str  # active | refused | rolled-back
    reason: str = ""
    previous: str | None = None
    final: bool = False  # the verified artifact itself failed (self-test): offering it again would fail again
    at: str = field(default_factory=now)


@dataclass(frozen=True)
class Pointer:
    current: str | None = None
    previous: str | None = None
    state: str = "active"  # active | trial
    activation: str = ""
    activated_at: str = ""
    outcome: Outcome | None = None
    floors: dict[str, int] = field(default_factory=dict)  # family -> highest committed version (or pinned)
    trial_release: dict[str, int | str | bool] = field(default_factory=dict)  # family, version, pin of the trial


class ArtifactSlots:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.staging, self.artifacts = self.root / "staging", self.root / "artifacts"
        for d in (self.staging, self.artifacts):
            d.mkdir(parents=True, exist_ok=True)
        self.pointer_path = self.root / "active.json"

    # ---------------------------------------------------------------- pointer
    def pointer(self) -> Pointer:
        if not self.pointer_path.is_file():
            return Pointer()
        try:
            raw = json.loads(self.pointer_path.read_text(encoding="utf-8"))
            outcome_raw = raw.pop("outcome", None)
            outcome = Outcome(**outcome_raw) if outcome_raw else None
            return Pointer(outcome=outcome, **raw)
        except (ValueError, TypeError) as exc:
            raise ArtifactError(f"{self.pointer_path}: expected the device's artifact pointer, found: {exc}") from None

    def _save(self, pointer: Pointer) -> None:
        atomic_write(self.pointer_path, json.dumps(asdict(pointer), indent=2))

    def path(self, artifact_id: str) -> Path:
        return self.artifacts / check_name("artifact id", artifact_id)

    # ---------------------------------------------------------------- staging
    def staged(self, manifest: Manifest, needed: list[str]) -> list[str]:
        """Which of ``needed`` are still missing from staging (a staged file whose hash is wrong is dropped)."""
        stage = self.staging / check_name("artifact id", manifest.artifact_id)
        missing = []
        for name in needed:
            path = stage / check_name("file name", name)
            entry = manifest.files[name]
            if path.is_file() and path.stat().st_size == entry.bytes and sha256_path(path) == entry.sha256:
                continue
            path.unlink(missing_ok=True)
            missing.append(name)
        return missing

    def stage_file(self, manifest: Manifest, name: str, data: bytes) -> None:
        entry = manifest.files.get(check_name("file name", name))
        if entry is None:
            raise ArtifactError(f"file {name}: expected a file listed in the signed manifest, found an unlisted one")
        if len(data) != entry.bytes:
            raise ArtifactError(f"file {name}: expected {entry.bytes} bytes, found {len(data)} (truncated or altered)")
        if hashlib.sha256(data).hexdigest() != entry.sha256:
            raise ArtifactError(f"file {name}: expected sha256 {entry.sha256[:16]}… from the signed manifest, "
                                "found a different one (tampered)")
        stage = self.staging / check_name("artifact id", manifest.artifact_id)
        stage.mkdir(parents=True, exist_ok=True)
        atomic_write(stage / name, data)

    def install(self, manifest_bytes: bytes, signature: bytes, manifest: Manifest) -> Path:
        """Move a completely staged artifact into ``artifacts/`` (with its manifest and signature)."""
        stage = self.staging / check_name("artifact id", manifest.artifact_id)
        atomic_write(stage / MANIFEST, manifest_bytes)
        atomic_write(stage / "manifest.sig", signature)
        target = self.path(manifest.artifact_id)
        if target.exists():
            shutil.rmtree(target)
        stage.rename(target)
        return target

    def discard_staging(self, artifact_id: str) -> None:
        shutil.rmtree(self.staging / check_name("artifact id", artifact_id), ignore_errors=True)

    # ---------------------------------------------------------------- switching
    def begin_trial(self, artifact_id: str, family: str = "", version: int = -1, pin: bool = False) -> Pointer:
        """Point at the new artifact, on trial until ``commit``; the old current becomes previous."""
        old = self.pointer()
        trial = Pointer(artifact_id, old.current, "trial", uuid.uuid4().hex, now(), old.outcome, dict(old.floors),
                        {"family": family, "version": version, "pin": pin} if family else {})
        self._save(trial)
        return trial

    def raise_floor(self, family: str, version: int) -> Pointer:
        """Record ``version`` as committed for ``family`` if it is higher (an artifact installed before
        floors existed seeds its own)."""
        old = self.pointer()
        if old.floors.get(family, -1) >= version:
            return old
        new = replace(old, floors={**old.floors, family: version})
        self._save(new)
        return new

    def commit(self, pointer: Pointer) -> Pointer:
        floors = dict(pointer.floors)
        rel = pointer.trial_release
        if rel:
            family, version = str(rel["family"]), int(rel["version"])
            floors[family] = version if rel.get("pin") else max(version, floors.get(family, -1))
        done = replace(pointer, state="active", floors=floors, trial_release={},
                       outcome=Outcome(pointer.activation, pointer.current or "", "active", previous=pointer.previous))
        self._save(done)
        self._trim(done)
        return done

    def rollback(self, pointer: Pointer, reason: str) -> Pointer:
        """Back to the artifact that was current before the trial; the failed one is deleted."""
        failed = pointer.current or ""
        restored = Pointer(pointer.previous, None, "active", uuid.uuid4().hex if pointer.previous else "", now(),
                           Outcome(uuid.uuid4().hex, failed, "rolled-back", reason, pointer.previous, final=True),
                           dict(pointer.floors))
        self._save(restored)
        if failed and failed != restored.current:
            shutil.rmtree(self.path(failed), ignore_errors=True)
        return restored

    def refuse(self, artifact_id: str, reason: str) -> Pointer:
        """Record a refused artifact (bad signature, hash or file) without touching what runs; a
        later offer of the same id is tried again (the bytes, not the artifact, may have been bad)."""
        old = self.pointer()
        if SAFE_NAME.match(artifact_id or ""):
            self.discard_staging(artifact_id)
        refused = replace(old, outcome=Outcome(uuid.uuid4().hex, artifact_id, "refused", reason, old.current))
        self._save(refused)
        return refused

    def _trim(self, pointer: Pointer) -> None:
        keep = {pointer.current, pointer.previous}
        for d in self.artifacts.iterdir():
            if d.name not in keep:
                shutil.rmtree(d, ignore_errors=True)
