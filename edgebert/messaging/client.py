"""``connect``: how every service and device joins a fleet's topics over MQTT.

One client-id convention (``{prefix}.{fleet}.{me}``, plus a suffix when one process runs several
clients with the same role), and for devices the retained "offline" status as MQTT last will, so
the aggregator and the provisioner see a device vanish without a goodbye.
"""

from __future__ import annotations

from edgebert.messaging.mqtt import BrokerConfig, MqttLoop, MqttTransport
from edgebert.messaging.protocol import Message, Topics
from edgebert.messaging.transport import Channel


def client_id(topics: Topics, me: str, suffix: str = "") -> str:
    return f"{topics.prefix}.{topics.fleet}.{me}" + (f".{suffix}" if suffix else "")


def connect(broker: BrokerConfig | str, topics: Topics, me: str, *, device: bool = False,
            loop: MqttLoop | None = None, retry: bool = False, suffix: str = "",
            connect_timeout: float = 10.0, status_topic: str | None = None, subscribe_qos: int = 1) -> Channel:
    """A ``Channel`` for ``me`` on ``broker``. ``device=True`` sets the last will (retained
    "offline" on ``topics.status(me)``, or on ``status_topic``: an edge aggregator's) and says
    "online" there on every connect (a node that died may have sent the will meanwhile);
    ``retry=True`` keeps trying while the broker is down instead of raising ``BrokerError``;
    ``subscribe_qos``: see ``MqttTransport``."""
    config = broker if isinstance(broker, BrokerConfig) else BrokerConfig(broker)
    status = status_topic or topics.status(me)
    will = birth = None
    if device or status_topic:  # "offline" as last will; "online" again on every (re)connect
        will = (status, Message("status", me, info={"status": "offline"}).to_bytes())
        birth = (status, Message("status", me, info={"status": "online"}).to_bytes())
    transport = MqttTransport(config, client_id(topics, me, suffix), loop, will=will, retry=retry,
                              connect_timeout=connect_timeout, subscribe_qos=subscribe_qos, birth=birth)
    return Channel(transport, topics, me)


__all__ = ["client_id", "connect"]
