"""Who may do what on the registry server: bearer tokens with read / write / admin scopes.

Tokens come from a file (``--tokens FILE``; it must not be readable by group or others, like an
SSH key) or from ``$EDGEBERT_REGISTRY_TOKENS``; one token per line (``;`` separates entries in the
environment variable) as ``SCOPE TOKEN`` where SCOPE is ``read``, ``write`` or ``admin`` (each
includes the ones before it); ``#`` starts a comment. Tokens are compared in constant time.

Without tokens, a server bound to a loopback address lets every local client read and write (a
developer's registry); bound beyond loopback it serves reads and refuses every write — writes need
a configured token.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from edgebert.errors import InputError

SCOPES = ("read", "write", "admin")
ENV = "EDGEBERT_REGISTRY_TOKENS"
MIN_TOKEN_CHARS = 16


def _parse(text: str, where: str) -> dict[str, str]:
    tokens: dict[str, str] = {}
    for n, raw in enumerate(text.replace(";", "\n").splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 2 or parts[0] not in SCOPES or len(parts[1]) < MIN_TOKEN_CHARS:
            raise InputError(f"{where} entry {n}: expected 'SCOPE TOKEN' with SCOPE one of {SCOPES} and a token of at "
                             f"least {MIN_TOKEN_CHARS} characters, found {len(parts)} field(s)")
        tokens[parts[1]] = parts[0]
    return tokens


def is_loopback(host: str) -> bool:
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Access:
    tokens: dict[str, str] = field(default_factory=dict)  # token -> scope
    loopback: bool = True

    @classmethod
    def load(cls, host: str, path: str | Path | None = None, environ: dict[str, str] | None = None) -> Access:
        environ = dict(os.environ) if environ is None else environ
        tokens: dict[str, str] = {}
        if path is not None:
            path = Path(path)
            try:
                mode = stat.S_IMODE(path.stat().st_mode)
                text = path.read_text(encoding="utf-8")
            except FileNotFoundError:
                raise InputError(f"{path}: expected a token file, found no such file") from None
            if mode & 0o077:
                raise InputError(f"{path}: expected a private token file (mode 0600), found mode {oct(mode)}: "
                                 f"chmod 600 {path}")
            tokens.update(_parse(text, str(path)))
        if environ.get(ENV):
            tokens.update(_parse(environ[ENV], f"${ENV}"))
        return cls(tokens, is_loopback(host))

    def scope_of(self, authorization: str | None) -> str | None:
        """The scope a request's ``Authorization`` header grants (None: no valid token)."""
        if not authorization or not authorization.startswith("Bearer "):
            return None
        given = authorization[7:].strip().encode()
        for token, scope in self.tokens.items():
            if hmac.compare_digest(token.encode(), given):
                return scope
        return None

    def allows(self, needed: str, authorization: str | None) -> tuple[bool, int, str]:
        """(allowed, status if not, why) for a request needing scope ``needed``."""
        if not self.tokens:
            if self.loopback or needed == "read":
                return True, 200, ""
            return False, 403, ("writes are closed on a registry bound beyond loopback without tokens; "
                                "configure --tokens to allow them")
        scope = self.scope_of(authorization)
        if scope is None:
            return False, 401, "expected 'Authorization: Bearer <token>' with a configured token, found none or another"
        if SCOPES.index(scope) < SCOPES.index(needed):
            return False, 403, f"expected a token with scope {needed!r}, found one with {scope!r}"
        return True, 200, ""


__all__ = ["Access", "SCOPES", "is_loopback"]
