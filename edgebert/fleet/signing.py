"""Ed25519 signing for artifacts and releases (RFC 8032), on the host.

The fleet key signs an artifact's ``manifest.json`` bytes into ``manifest.sig``; since the
manifest records the size and sha256 of every other file, verifying the signature and then every
hash covers the whole artifact. Key generation and signing use the ``cryptography`` package;
checking (device) is ``fleet.verify`` on our pure-Python verifier, so devices need no crypto library.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from edgebert.artifact import MANIFEST, Artifact
from edgebert.errors import InputError
from edgebert.files import atomic_write
from edgebert.fleet.verify import SIGNATURE, check_signature, read_public_key, verify

__all__ = ["SIGNATURE", "check_signature", "keygen", "public_key_of", "read_public_key", "sign", "sign_bytes", "signer",
           "verify"]


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


def signer(key_path: Path) -> Callable[[bytes], bytes]:
    """The fleet key, read once: a function giving its Ed25519 signature of any bytes."""
    return _load(Path(key_path), private=True).sign


def sign_bytes(data: bytes, key_path: Path) -> bytes:
    """The fleet key's Ed25519 signature of ``data`` (a release, see ``fleet.release``)."""
    return signer(key_path)(data)


def sign(artifact_dir: Path, key_path: Path) -> Path:
    """Verify the artifact's hashes, then sign its manifest into ``manifest.sig``."""
    art = Artifact.load(artifact_dir, verify=True)
    signature = _load(key_path, private=True).sign((art.path / MANIFEST).read_bytes())
    atomic_write(art.path / SIGNATURE, signature)
    return art.path / SIGNATURE


