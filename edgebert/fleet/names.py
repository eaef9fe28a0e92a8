"""Device IRIs and their MQTT ids (pure): the id is the IRI's last part and must be one safe topic level."""

from __future__ import annotations

from edgebert.errors import InputError
from edgebert.fleet.slots import SAFE_NAME


def device_name(iri: str) -> str:
    """A device's MQTT id: the last part of its IRI (``urn:dev:pi-007`` -> ``pi-007``)."""
    return iri.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1].rsplit("#", 1)[-1]


def check_device_iri(iri: str) -> str:
    """The device's MQTT id if it is safe as one topic level (letters, digits, '.', '_', '-'), else InputError."""
    name = device_name(iri)
    if not SAFE_NAME.match(name) or any(c in iri for c in "+#\x00"):
        raise InputError(f"device {iri[:200]!r}: expected an IRI whose last part (its MQTT id) has only letters, "
                         f"digits, '.', '_' and '-' and no '+' or '#' anywhere, found {name[:200]!r}")
    return name
