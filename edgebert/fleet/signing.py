"""Ed25519 signatures for artifacts (RFC 8032).

The fleet key signs an artifact's ``manifest.json`` bytes into ``manifest.sig``; since the
manifest records the size and sha256 of every other file, verifying the signature and then every
hash covers the whole artifact. A missing, altered or foreign signature is refused.
Key generation and signing (host) use the ``cryptography`` package; verification (device) uses
our pure-Python verifier (``edgebert.fleet.ed25519``), so devices need no crypto library.
"""

from __future__ import annotations

from pathlib import Path

from edgebert.artifact import MANIFEST, Artifact
from edgebert.errors import ArtifactError, InputError
from edgebert.files import atomic_write
from edgebert.fleet import ed25519

SIGNATURE = "manifest.sig"


def keygen(out_dir: Path, force: bool = False) -> tuple[Path, Path]:
    """Write ``fleet.key`` (PEM, mode 0600) and ``fleet.pub`` (PEM); refuses to overwrite a key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    out_dir.mkdir(parents=True, exist_ok=True)
    key_path, pub_path = out_dir / "fleet.key", out_dir / "fleet.pub"
    if key_path.exists() and not force:
        raise InputError(f"{key_path}: expected no existing fleet key, found one (use --force to replace it)")
    key = Ed25519PrivateKey.generate()
    atomic_write(key_path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()), 0o600)
    atomic_write(pub_path, key.public_key().public_bytes(serialization.Encoding.PEM,
                                                         serialization.PublicFormat.SubjectPublicKeyInfo))
    return key_path, pub_path


def _load(path: Path, private: bool):  # noqa: ANN202 - cryptography key objects
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

    try:
        data = path.read_bytes()
        key = (serialization.load_pem_private_key(data, password=None) if private
               else serialization.load_pem_public_key(data))
    except FileNotFoundError:
        raise InputError(f"{path}: expected a PEM {'private' if private else 'public'} key, found no such file") from None
    except ValueError as exc:
        raise InputError(f"{path}: expected a PEM Ed25519 key, found: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey if private else Ed25519PublicKey):
        raise InputError(f"{path}: expected an Ed25519 key, found {type(key).__name__}")
    return key


def public_key_of(key_path: Path) -> bytes:
    """The raw 32-byte public key of the fleet's private key file."""
    from cryptography.hazmat.primitives import serialization

    return _load(key_path, private=True).public_key().public_bytes(serialization.Encoding.Raw,
                                                                   serialization.PublicFormat.Raw)


def sign_bytes(data: bytes, key_path: Path) -> bytes:
    """The fleet key's Ed25519 signature of ``data`` (a release, see ``fleet.release``)."""
    return _load(Path(key_path), private=True).sign(data)


def sign(artifact_dir: Path, key_path: Path) -> Path:
    """Verify the artifact's hashes, then sign its manifest into ``manifest.sig``."""
    art = Artifact.load(artifact_dir, verify=True)
    signature = _load(key_path, private=True).sign((art.path / MANIFEST).read_bytes())
    atomic_write(art.path / SIGNATURE, signature)
    return art.path / SIGNATURE


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
