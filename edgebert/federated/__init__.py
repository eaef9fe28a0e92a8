"""Federated (meta-)learning over MQTT: pure aggregation maths, protocol messages, transports,
the aggregator and the device client."""
