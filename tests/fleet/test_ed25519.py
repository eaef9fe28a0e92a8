"""Our pure-Python Ed25519 verifier against RFC 8032's vectors and the ``cryptography`` package."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgebert.fleet import ed25519

# RFC 8032, section 7.1, TEST 1 (empty message) and TEST 2 (one byte)
VECTORS = [
    ("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
     "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"),
    ("3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
     "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"),
]


@pytest.mark.parametrize(("pub", "msg", "sig"), VECTORS)
def test_rfc8032_vectors_verify_and_any_changed_bit_does_not(pub: str, msg: str, sig: str) -> None:
    pub_b, msg_b, sig_b = bytes.fromhex(pub), bytes.fromhex(msg), bytes.fromhex(sig)

    assert ed25519.verify(pub_b, msg_b, sig_b)
    assert not ed25519.verify(pub_b, msg_b + b"x", sig_b)
    for i in (0, 31, 32, 63):
        bad = bytearray(sig_b)
        bad[i] ^= 0x01
        assert not ed25519.verify(pub_b, msg_b, bytes(bad))


def test_agrees_with_cryptography_on_random_keys_and_messages() -> None:
    for n in range(5):
        key = Ed25519PrivateKey.generate()
        pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        raw = ed25519.public_key_from_pem(pem)
        msg = bytes(range(n * 37 % 256)) * (n + 1)
        assert ed25519.verify(raw, msg, key.sign(msg))
        assert not ed25519.verify(raw, msg, Ed25519PrivateKey.generate().sign(msg))


def test_non_canonical_s_bad_points_and_bad_lengths_are_refused() -> None:
    pub, msg, sig = (bytes.fromhex(v) for v in VECTORS[0])
    s = int.from_bytes(sig[32:], "little")
    assert not ed25519.verify(pub, msg, sig[:32] + (s + ed25519.L).to_bytes(32, "little"))  # malleated S
    assert not ed25519.verify(b"\xff" * 32, msg, sig)  # y >= p: no point
    assert not ed25519.verify(pub[:31], msg, sig) and not ed25519.verify(pub, msg, sig[:63])
    with pytest.raises(ValueError, match="PEM"):
        ed25519.public_key_from_pem("not a key")
