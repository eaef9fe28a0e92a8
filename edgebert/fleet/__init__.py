"""Fleet provisioning and security: signed artifacts (host signs, devices verify with a pure-Python
Ed25519), per-device MQTT credentials/ACL/TLS, the device agent and the provisioner (docs/fleet.md)."""
