"""``edgebert fleet credentials|keygen|sign|verify|provision|agent``: security and provisioning."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edgebert.cli.common import broker_config, progress_bar, write_json
from edgebert.errors import InputError


def cmd_fleet_credentials(args: argparse.Namespace) -> int:
    from edgebert.fleet.security import TlsFiles, write_broker_config
    from edgebert.messaging.protocol import Topics

    tls_parts = (args.tls_cert, args.tls_key, args.tls_ca)
    if any(tls_parts) and not all(tls_parts):
        raise InputError("TLS: expected --tls-cert, --tls-key and --tls-ca together, found only some of them")
    tls = TlsFiles(Path(args.tls_cert), Path(args.tls_key), Path(args.tls_ca), args.tls_port) if all(tls_parts) else None
    devices = list(args.devices)
    if args.devices_file:
        devices += [d.strip() for d in Path(args.devices_file).read_text(encoding="utf-8").splitlines() if d.strip()]
    if not devices:
        raise InputError("devices: expected at least one device id (--devices or --devices-file), found none")
    paths = write_broker_config(Path(args.out), Topics(args.prefix, args.fleet), devices, args.port,
                                broker_user=args.broker_user, tls=tls)
    print(f"wrote {', '.join(str(p) for p in paths.values())} for {len(devices)} devices "
          f"(passwords only in {paths['credentials.json']}, mode 0600)")
    print(f"start the broker: mosquitto -c {paths['mosquitto.conf']}")
    return 0


def cmd_fleet_keygen(args: argparse.Namespace) -> int:
    from edgebert.fleet.signing import keygen

    key, pub = keygen(Path(args.out), force=args.force)
    print(f"wrote {key} (private, mode 0600) and {pub} (give this one to the devices)")
    return 0


def cmd_fleet_sign(args: argparse.Namespace) -> int:
    from edgebert.fleet.signing import sign

    print(f"signed: {sign(Path(args.artifact), Path(args.key))}")
    return 0


def cmd_fleet_verify(args: argparse.Namespace) -> int:
    from edgebert.fleet.signing import verify

    art = verify(Path(args.artifact), Path(args.pub))
    print(f"verified: {art.manifest.artifact_id} (signature and {len(art.manifest.files)} file hashes)")
    return 0


def cmd_fleet_provision(args: argparse.Namespace) -> int:
    from edgebert.fleet.provision import ProvisionConfig, Provisioner, plan, table
    from edgebert.fleet.signing import public_key_of
    from edgebert.messaging.client import connect
    from edgebert.messaging.protocol import Topics
    from registry.registry import open_registry

    key = Path(args.key)
    config = ProvisionConfig(args.fleet, args.wait, args.reoffer, retry_failed=args.retry_failed,
                             offer_ttl_s=args.offer_ttl * 3600.0)
    reg = open_registry(args.registry)
    try:
        rows = plan(reg, key, public_key_of(key), args.fleet, args.pin)
        topics = Topics(args.prefix, args.fleet or "default")
        channel = connect(broker_config(args), topics, "provisioner")
        print(f"provisioning {len(rows)} devices through {broker_config(args).redacted()} "
              f"(topics {topics.root}/artifacts/…)", file=sys.stderr)
        try:
            with progress_bar(not args.quiet) as progress:
                rows = Provisioner(reg, channel, rows, config, key).run(progress, args.watch)
        finally:
            channel.transport.close()
    finally:
        reg.close()
    print(table(rows))
    if args.json:
        write_json(Path(args.json), {"devices": [
            {"device": r.iri, "name": r.name, "artifact": r.target.artifact_iri if r.target else None,
             "result": r.result, "previous": r.previous, "bytes_sent": r.bytes_sent, "note": r.note} for r in rows]})
    unsettled = [r for r in rows if r.result not in ("active", "up to date")]
    if unsettled:
        print(f"edgebert: {len(unsettled)} of {len(rows)} devices are not on their artifact (see the table); "
              "re-running is safe", file=sys.stderr)
        return 1
    return 0


def cmd_fleet_agent(args: argparse.Namespace) -> int:
    import signal
    import threading

    from edgebert.fleet.agent import DeviceAgent
    from edgebert.fleet.slots import ArtifactSlots
    from edgebert.fleet.verify import read_public_key
    from edgebert.messaging.client import connect
    from edgebert.messaging.protocol import Message, Topics

    topics = Topics(args.prefix, args.fleet)
    public_key = read_public_key(Path(args.pub))
    channel = connect(broker_config(args), topics, args.device, device=True, retry=True)
    transport = channel.transport
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())

    def show(status: dict) -> None:
        print(json.dumps({"device": args.device, **status}), flush=True)

    agent = DeviceAgent(channel, ArtifactSlots(Path(args.state)), public_key,
                        on_change=show)
    transport.publish(topics.status(args.device), Message("status", args.device, info={"status": "online"}).to_bytes(),
                      retain=True)
    try:
        while not stop.wait(1.0):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        transport.close()
    return 0 if agent.engine is not None or not args.require_artifact else 1


def add_parser(sub: argparse._SubParsersAction) -> None:
    fl = sub.add_parser("fleet", help="fleet security and provisioning")
    flsub = fl.add_subparsers(dest="fleet_command", required=True)
    fc = flsub.add_parser("credentials", help="per-device MQTT credentials, a Mosquitto password file and ACL",
                          description="Each device may publish only under its own topics and read only what is "
                                      "meant for it or its fleet; writes passwd, acl, mosquitto.conf and "
                                      "credentials.json (mode 0600) into --out.")
    fc.add_argument("--devices", nargs="*", default=[], help="device ids")
    fc.add_argument("--devices-file", help="a file with one device id per line")
    fc.add_argument("--prefix", default="edgebert")
    fc.add_argument("--fleet", default="default")
    fc.add_argument("--port", type=int, default=1883)
    fc.add_argument("--out", required=True, help="directory for the generated files")
    fc.add_argument("--broker-user", help="the user Mosquitto runs as (it must be able to read the 0600 password file)")
    fc.add_argument("--tls-cert", help="server certificate (PEM): adds a TLS listener; devices use mqtts://")
    fc.add_argument("--tls-key", help="the server certificate's private key (PEM)")
    fc.add_argument("--tls-ca", help="the CA certificate devices trust (PEM)")
    fc.add_argument("--tls-port", type=int, default=8883, help="TLS listener port (default 8883)")
    fc.set_defaults(func=cmd_fleet_credentials)
    fk = flsub.add_parser("keygen", help="create the fleet's Ed25519 signing key (fleet.key, fleet.pub)")
    fk.add_argument("--out", required=True, help="directory for fleet.key (0600) and fleet.pub")
    fk.add_argument("--force", action="store_true", help="replace an existing key")
    fk.set_defaults(func=cmd_fleet_keygen)
    fsg = flsub.add_parser("sign", help="sign an artifact's manifest with the fleet key (writes manifest.sig)")
    fsg.add_argument("artifact")
    fsg.add_argument("--key", required=True, help="fleet.key")
    fsg.set_defaults(func=cmd_fleet_sign)
    fvf = flsub.add_parser("verify", help="check an artifact's signature and every file's sha256")
    fvf.add_argument("artifact")
    fvf.add_argument("--pub", required=True, help="fleet.pub")
    fvf.set_defaults(func=cmd_fleet_verify)

    _add_provision(flsub)
    _add_agent(flsub)


def _add_provision(flsub: argparse._SubParsersAction) -> None:
    fp = flsub.add_parser("provision", help="put each registered device's best artifact on it, over MQTT",
                          description="For every device in the registry (or --fleet), the best compatible "
                                      "artifact is offered (signed, retained), sent in sha256-checked chunks, "
                                      "verified and self-tested by the device, and each outcome is recorded in "
                                      "the registry once. Each offer carries a release signed for that device "
                                      "alone, with the artifact's family and version and an expiry: a device "
                                      "refuses an offer meant for another device, an expired one, and any "
                                      "version at or below one it has committed (replayed old offers cannot "
                                      "downgrade it) unless the release is a pin (--pin). Re-running is safe: a "
                                      "device counts as up to date only when its own report says so, the registry "
                                      "is repaired from device reports, and no deployment is recorded twice. Exit "
                                      "1 if some devices are not on their artifact when --wait runs out.")
    fp.add_argument("--registry", required=True, help="registry store: a directory, memory, or a SPARQL endpoint URL")
    fp.add_argument("--broker", default="mqtt://127.0.0.1:1883",
                    help="mqtt[s]://host:port (password in $EDGEBERT_MQTT_PASSWORD)")
    fp.add_argument("--username", default="provisioner", help="MQTT user (default: provisioner)")
    fp.add_argument("--ca-file", help="CA certificate for mqtts:// brokers")
    fp.add_argument("--key", required=True, help="fleet.key: artifacts not signed yet are signed with it")
    fp.add_argument("--fleet", help="only devices that are members of this fleet (and its topics); default: all")
    fp.add_argument("--prefix", default="edgebert", help="topic prefix")
    fp.add_argument("--wait", type=float, default=60.0, help="seconds to wait for devices (default 60)")
    fp.add_argument("--reoffer", type=float, default=5.0, help="seconds between offers to devices not done yet")
    fp.add_argument("--retry-failed", action="store_true", help="offer again artifacts that failed on a device")
    fp.add_argument("--pin", metavar="ARTIFACT",
                    help="pin every device this artifact (IRI or id) fits to it, even below the version it runs: "
                         "the only way to downgrade on purpose (each pin is signed for its device)")
    fp.add_argument("--offer-ttl", type=float, default=168.0, metavar="HOURS",
                    help="hours an offer stays valid (default 168 = 7 days); a device refuses it after that")
    fp.add_argument("--watch", action="store_true", help="keep serving (devices coming online later) until Ctrl-C")
    fp.add_argument("--json", help="write the result table as JSON here")
    fp.add_argument("--quiet", action="store_true", help="no progress bar")
    fp.set_defaults(func=cmd_fleet_provision)


def _add_agent(flsub: argparse._SubParsersAction) -> None:
    fa = flsub.add_parser("agent", help="run a device's provisioning agent (receives, verifies, activates artifacts)",
                          description="Connects as the device, answers signed offers, downloads and checks the "
                                      "files, self-tests the new artifact and rolls back if it fails. Prints one "
                                      "JSON line per status change; stops on Ctrl-C or SIGTERM.")
    fa.add_argument("--device", required=True, help="device id (its MQTT user and topic name)")
    fa.add_argument("--broker", default="mqtt://127.0.0.1:1883", help="password in $EDGEBERT_MQTT_PASSWORD")
    fa.add_argument("--username", help="MQTT user (default: none; with per-device credentials: the device id)")
    fa.add_argument("--ca-file", help="CA certificate for mqtts:// brokers")
    fa.add_argument("--pub", required=True, help="the fleet's public key (fleet.pub)")
    fa.add_argument("--state", required=True, help="the device's state directory (artifacts, active.json)")
    fa.add_argument("--prefix", default="edgebert")
    fa.add_argument("--fleet", default="default")
    fa.add_argument("--require-artifact", action="store_true", help="exit 1 if no artifact is active at the end")
    fa.set_defaults(func=cmd_fleet_agent)
