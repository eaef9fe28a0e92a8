"""Checking the fleet's Ed25519 signatures on the device (pure: no crypto library).

``check_signature`` is what the device agent runs on an offered manifest; ``verify`` checks a
whole artifact directory (signature, every file's sha256, no unlisted file) and is what
``edgebert fleet verify`` runs. Signing lives on the host (``fleet.signing``).
"""

from __future__ import annotations

from pathlib import Path

from edgebert.artifact import MANIFEST, Artifact
from edgebert.errors import ArtifactError, InputError
from edgebert.fleet import ed25519

SIGNATURE = "manifest.sig"


def read_public_key(path: Path) -> bytes:
    """The raw 32-byte fleet public key from ``fleet.pub`` (PEM)."""
    try:
        return ed25519.public_key_from_pem(Path(path).read_bytes())
    except FileNotFoundError:
        raise InputError(f"{path}: expected the fleet's public key (PEM), found no such file") from None
    except ValueError as exc:
        raise InputError(f"{path}: {exc}, found something else") from None


def check_signature(manifest: bytes, signature: bytes, public_key: bytes, where: str) -> None:
    """ArtifactError unless ``signature`` is the fleet key's signature of ``manifest``."""
    if not signature:
        raise ArtifactError(f"{where}: expected a signed artifact ({SIGNATURE}), found no signature")
    if not ed25519.verify(public_key, manifest, signature):
        raise ArtifactError(f"{where}: expected a manifest signed by the fleet key, found a signature that "
                            "does not match (tampered manifest or foreign key)")


def verify(artifact_dir: Path, public_key_path: Path) -> Artifact:
    """The artifact, if ``manifest.sig`` is the fleet key's signature of its manifest and every
    file matches the manifest; ArtifactError saying what failed otherwise."""
    artifact_dir = Path(artifact_dir)
    public_key = read_public_key(public_key_path)
    sig_path = artifact_dir / SIGNATURE
    if not sig_path.is_file():
        raise ArtifactError(f"{artifact_dir}: expected a signed artifact ({SIGNATURE}), found no signature")
    manifest = artifact_dir / MANIFEST
    if not manifest.is_file():
        raise ArtifactError(f"{artifact_dir}: expected {MANIFEST}, found none")
    check_signature(manifest.read_bytes(), sig_path.read_bytes(), public_key, str(artifact_dir))
    art = Artifact.load(artifact_dir, verify=True)
    listed = set(art.manifest.files) | {MANIFEST, SIGNATURE}
    extra = sorted(p.name for p in artifact_dir.iterdir() if p.name not in listed)
    if extra:
        raise ArtifactError(f"{artifact_dir}: expected only the files the signed manifest lists, found unlisted "
                            f"{', '.join(extra[:5])}{' …' if len(extra) > 5 else ''}")
    return art
