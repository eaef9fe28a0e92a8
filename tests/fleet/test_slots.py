"""The device's artifact store: staging resumes, bad files are refused, a crash on trial rolls back."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgebert.artifact import Manifest
from edgebert.errors import ArtifactError
from edgebert.fleet.agent import DeviceAgent
from edgebert.fleet.signing import sign
from edgebert.fleet.slots import ArtifactSlots
from edgebert.messaging.protocol import Topics
from edgebert.messaging.transport import Channel, InMemoryBus

from ..fleetkit import Fleet


def install(slots: ArtifactSlots, art_dir: Path) -> Manifest:
    manifest = Manifest.from_json((art_dir / "manifest.json").read_text())
    names = manifest.device_files()
    assert slots.staged(manifest, names) == names
    for name in names[:1]:
        slots.stage_file(manifest, name, (art_dir / name).read_bytes())
    assert slots.staged(manifest, names) == names[1:]  # a resumed download asks only for the rest
    for name in names[1:]:
        slots.stage_file(manifest, name, (art_dir / name).read_bytes())
    slots.install((art_dir / "manifest.json").read_bytes(), (art_dir / "manifest.sig").read_bytes(), manifest)
    return manifest


def test_staging_checks_every_file_against_the_manifest(fleet: Fleet, tmp_path: Path) -> None:
    slots = ArtifactSlots(tmp_path / "dev")
    manifest = Manifest.from_json((fleet.digits / "manifest.json").read_text())
    data = (fleet.digits / "model.onnx").read_bytes()

    with pytest.raises(ArtifactError, match="truncated"):
        slots.stage_file(manifest, "model.onnx", data[:-1])
    with pytest.raises(ArtifactError, match="tampered"):
        slots.stage_file(manifest, "model.onnx", data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(ArtifactError, match="unlisted"):
        slots.stage_file(manifest, "evil.so", b"x")
    with pytest.raises(ArtifactError, match="plain name"):
        slots.stage_file(manifest, "../escape", b"x")
    assert not any((tmp_path / "dev" / "staging").rglob("*.onnx"))


def test_a_device_that_crashed_during_the_self_test_rolls_back_on_restart(fleet: Fleet, tmp_path: Path) -> None:
    for art in (fleet.digits, fleet.bert):
        sign(art, fleet.key)
    slots = ArtifactSlots(tmp_path / "dev")
    first = install(slots, fleet.digits)
    slots.commit(slots.begin_trial(first.artifact_id))
    second = install(slots, fleet.bert)
    slots.begin_trial(second.artifact_id)  # ... and the power goes off here

    agent = DeviceAgent(Channel(InMemoryBus().client("d"), Topics(), "d"), ArtifactSlots(tmp_path / "dev"),
                        fleet.public_key)

    assert agent.engine is not None and agent.engine.manifest.artifact_id == first.artifact_id
    pointer = agent.slots.pointer()
    assert (pointer.current, pointer.state, pointer.outcome.status) == (first.artifact_id, "active", "rolled-back")
    assert "restarted" in pointer.outcome.reason and not (tmp_path / "dev" / "artifacts" / second.artifact_id).exists()


def test_the_version_floor_rises_only_with_a_commit_and_survives_a_crash_on_trial(fleet: Fleet, tmp_path: Path) -> None:
    from edgebert.fleet.release import artifact_family, artifact_version

    sign(fleet.digits, fleet.key)
    slots = ArtifactSlots(tmp_path / "dev")
    m = install(slots, fleet.digits)
    family, version = artifact_family(m), artifact_version(m)
    slots.begin_trial(m.artifact_id, family, version)  # power lost before the self-test ...

    agent = DeviceAgent(Channel(InMemoryBus().client("d"), Topics(), "d"), ArtifactSlots(tmp_path / "dev"),
                        fleet.public_key)

    assert agent.slots.pointer().floors == {}  # ... so that version was never committed
    install(slots, fleet.digits)
    done = slots.commit(slots.begin_trial(m.artifact_id, family, version))
    assert done.floors == {family: version} and ArtifactSlots(tmp_path / "dev").pointer().floors == {family: version}
    pinned = slots.commit(slots.begin_trial(m.artifact_id, family, version - 5, pin=True))
    assert pinned.floors == {family: version - 5}  # a pin sets the floor, also downwards
    assert slots.commit(slots.begin_trial(m.artifact_id, family, version - 9)).floors == {family: version - 5}
