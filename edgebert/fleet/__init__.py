"""Fleet provisioning and security (issue 6, in progress): per-device MQTT credentials and ACLs."""
