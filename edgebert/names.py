"""Names that cross boundaries (pure): a device IRI's MQTT id, and what is safe as one path
component or topic level. Shared by the fleet, the device's artifact store and the registry."""

from __future__ import annotations

import re

from edgebert.errors import InputError

SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")  # one path component / topic level


def local_name(iri: str) -> str:
    """An IRI's last part, after the last '/', ':' or '#' (``urn:dev:pi-007`` -> ``pi-007``)."""
    return iri.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1].rsplit("#", 1)[-1]


def device_name(iri: str) -> str:
    """A device's MQTT id: the last part of its IRI."""
    return local_name(iri)


def check_device_iri(iri: str) -> str:
    """The device's MQTT id if it is safe as one topic level (letters, digits, '.', '_', '-'), else InputError."""
    name = device_name(iri)
    if not SAFE_NAME.match(name) or any(c in iri for c in "+#\x00"):
        raise InputError(f"device {iri[:200]!r}: expected an IRI whose last part (its MQTT id) has only letters, "
                         f"digits, '.', '_' and '-' and no '+' or '#' anywhere, found {name[:200]!r}")
    return name
