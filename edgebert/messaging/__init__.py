"""Messaging: the wire protocol (``protocol``), transports and the ``Channel`` over them
(``transport``), MQTT on paho (``mqtt``, the only module importing paho), the embedded broker
(``broker``) and ``connect`` (``client``), which every service and device uses to join a fleet's
topics. Federated learning and provisioning both run on it."""
