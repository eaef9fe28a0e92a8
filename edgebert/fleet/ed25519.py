"""Ed25519 signature verification (RFC 8032, section 5.1.7) in pure Python: pure maths, no I/O.

Devices verify artifacts with this so that the device side needs no crypto library (the runtime's
dependency rule: numpy, onnxruntime or LiteRT, paho-mqtt, safetensors). Verification handles only
public data, so it need not be constant-time; signing stays on the host (``cryptography``).
Points are kept in extended twisted-Edwards coordinates (X:Y:Z:T) with x = X/Z, y = Y/Z, xy = T/Z.
"""

from __future__ import annotations

import base64
import hashlib

from edgebert.errors import InputError

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493  # order of the base point
D = -121665 * pow(121666, P - 2, P) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)

Point = tuple[int, int, int, int]
IDENTITY: Point = (0, 1, 1, 0)
# SubjectPublicKeyInfo DER of an Ed25519 key: SEQ { SEQ { OID 1.3.101.112 }, BIT STRING (32 bytes) }
_SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")


def _add(p: Point, q: Point) -> Point:
    x1, y1, z1, t1 = p
    x2, y2, z2, t2 = q
    a = (y1 - x1) * (y2 - x2) % P
    b = (y1 + x1) * (y2 + x2) % P
    c = 2 * D * t1 * t2 % P
    d = 2 * z1 * z2 % P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def _mul(k: int, p: Point) -> Point:
    out = IDENTITY
    while k:
        if k & 1:
            out = _add(out, p)
        p = _add(p, p)
        k >>= 1
    return out


def _equal(p: Point, q: Point) -> bool:
    return (p[0] * q[2] - q[0] * p[2]) % P == 0 and (p[1] * q[2] - q[1] * p[2]) % P == 0


def decode_point(data: bytes) -> Point | None:
    """The point a 32-byte encoding names, or None if it names none (RFC 8032, 5.1.3)."""
    if len(data) != 32:
        return None
    value = int.from_bytes(data, "little")
    sign, y = value >> 255, value & ((1 << 255) - 1)
    if y >= P:
        return None
    x2 = (y * y - 1) * pow(D * y * y + 1, P - 2, P) % P
    x = pow(x2, (P + 3) // 8, P)
    if (x * x - x2) % P:
        x = x * SQRT_M1 % P
    if (x * x - x2) % P:
        return None
    if x == 0 and sign:
        return None
    if x & 1 != sign:
        x = P - x
    return (x, y, 1, x * y % P)


BASE = decode_point((4 * pow(5, P - 2, P) % P).to_bytes(32, "little"))


def verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """True iff ``signature`` is a valid Ed25519 signature of ``message`` under ``public_key``."""
    if len(public_key) != 32 or len(signature) != 64:
        return False
    a, r = decode_point(public_key), decode_point(signature[:32])
    s = int.from_bytes(signature[32:], "little")
    if a is None or r is None or s >= L or BASE is None:
        return False
    k = int.from_bytes(hashlib.sha512(signature[:32] + public_key + message).digest(), "little") % L
    # [S]B = R + [k]A, checked with the cofactor as RFC 8032 allows: [8][S]B = [8]R + [8][k]A
    left = _mul(8 * s, BASE)
    right = _mul(8, _add(r, _mul(k, a)))
    return _equal(left, right)


def public_key_from_pem(text: str | bytes) -> bytes:
    """The 32 raw bytes of an Ed25519 public key in PEM (SubjectPublicKeyInfo); ValueError if not one."""
    if isinstance(text, bytes):
        text = text.decode("ascii", errors="replace")
    lines = [ln.strip() for ln in text.strip().splitlines()]
    if len(lines) < 3 or lines[0] != "-----BEGIN PUBLIC KEY-----" or lines[-1] != "-----END PUBLIC KEY-----":
        raise InputError("expected a PEM 'PUBLIC KEY' block")
    try:
        der = base64.b64decode("".join(lines[1:-1]), validate=True)
    except ValueError:
        raise InputError("expected base64 between the PEM lines") from None
    if len(der) != 44 or not der.startswith(_SPKI_PREFIX):
        raise InputError("expected an Ed25519 SubjectPublicKeyInfo (44 bytes, OID 1.3.101.112)")
    return der[12:]
