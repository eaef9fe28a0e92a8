"""Step 3 (and 6): every device gets its best artifact over MQTT, recorded in the registry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgebert.progress import Progress


def provision(registry: Any, url: str, topics: Any, fleet_iri: str, key: Path, public_key: bytes,  # noqa: ANN401
              progress: Progress, label: str) -> list[Any]:
    from edgebert.fleet.provision import ProvisionConfig, Provisioner, plan
    from edgebert.messaging.client import connect

    rows = plan(registry, key, public_key, fleet_iri)
    channel = connect(url, topics, "provisioner")
    try:
        prov = Provisioner(registry, channel, rows, ProvisionConfig(fleet_iri, wait_s=120, reoffer_s=5), key)
        return prov.run(lambda s, d, t: progress(label, d, t))
    finally:
        channel.transport.close()
