"""``edgebert registry --store SPEC <command>``: the semantic registry from the shell."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from edgebert.errors import InputError

DEFAULT_STORE = os.environ.get("EDGEBERT_REGISTRY", ".edgebert-registry")


def _print(args: argparse.Namespace, data: Any, lines: list[str]) -> None:
    if args.json:
        print(json.dumps(data, indent=2, default=str))
    else:
        print("\n".join(lines) if lines else "(none)")


def _sparql_text(text: str) -> str:
    if text == "-":
        return sys.stdin.read()
    if text.startswith("@"):
        return Path(text[1:]).read_text(encoding="utf-8")
    return text


def run(args: argparse.Namespace) -> int:
    from registry.registry import open_registry

    if args.reg_command == "serve":
        from registry.access import Access
        from registry.guard import Limits
        from registry.server import ServerConfig, serve

        if bool(args.tls_cert) != bool(args.tls_key):
            raise InputError("--tls-cert and --tls-key: expected both (a certificate and its key), found one")
        for path in (args.tls_cert, args.tls_key):
            if path and not Path(path).is_file():
                raise InputError(f"{path}: expected a PEM file, found no such file")
        try:
            limits = Limits(max_body_bytes=args.max_body, query_timeout_s=args.query_timeout,
                            max_result_rows=args.max_rows)
        except ValueError as exc:
            raise InputError(f"--max-body, --query-timeout, --max-rows: {exc}") from None
        config = ServerConfig(limits, Access.load(args.host, args.tokens), tuple(args.allow_service))
        serve(args.store, args.host, args.port, config, args.tls_cert, args.tls_key)
        return 0
    reg = open_registry(args.store)
    try:
        return _dispatch(args, reg)
    finally:
        reg.close()  # an embedded store's directory lock is released when the command ends


def _dispatch(args: argparse.Namespace, reg: Any) -> int:
    cmd = args.reg_command
    if cmd == "add-device":
        ids = reg.add_device_file(args.file)
        _print(args, {"added": ids}, [f"added device {i}" for i in ids])
    elif cmd == "add-artifact":
        iri = reg.add_artifact(args.artifact_dir)
        _print(args, {"added": iri}, [f"added artifact {iri}"])
    elif cmd == "import":
        n = reg.import_file(args.file)
        _print(args, {"imported_triples": n}, [f"imported {n} triples from {args.file}"])
    elif cmd == "match":
        matches = [m.to_dict() for m in reg.match(args.device)]
        unknown = reg.unknown_capabilities(args.device)
        reason = (f"cannot be matched: its description states no {', '.join(unknown)}" if unknown else None)
        _print(args, {"device": reg.resolve(args.device), "matches": matches, "unknown_capabilities": unknown,
                      "reason": reason}, [
            f"{i + 1:>3}. {m['id'] or m['artifact']}  runtime={m['runtime']} precision={m['precision'] or '-'} "
            f"ram={m['ram_bytes']} flash={m['flash_bytes']} fidelity={m['fidelity'] if m['fidelity'] is not None else '-'}"
            for i, m in enumerate(matches)] or ([f"(none) {reason}"] if reason else []))
    elif cmd == "devices-for":
        rows = reg.devices_for(args.artifact)
        unmatchable = reg.unmatchable_devices()
        _print(args, {"artifact": reg.resolve(args.artifact), "devices": rows, "unmatchable": unmatchable},
               [f"{r['id'] or ''}  {r['device']}  ram={r['ram_bytes']} flash={r['flash_bytes']}" for r in rows]
               + ([f"({len(unmatchable)} device(s) cannot be matched: their descriptions lack capabilities; "
                   "--json lists them)"] if unmatchable else []))
    elif cmd == "deploy":
        dep = reg.record_deployment(args.device, args.artifact, args.status)
        _print(args, {"deployment": dep}, [f"recorded {dep}"])
    elif cmd == "deployments":
        rows = reg.deployments(args.device)
        _print(args, rows, [f"{r['device']}  {r['artifact']}  {r['status']}  {r['time']}" for r in rows])
    elif cmd == "outdated":
        rows = reg.outdated()
        _print(args, rows, [f"{r['device']}: {r['current']} -> {r['newer']}" for r in rows])
    elif cmd == "lineage":
        rows = reg.lineage(args.artifact)
        _print(args, rows, [f"{'  ' * int(r['depth'])}{r['entity']} ({(r['type'] or '').rsplit('#', 1)[-1]}) "
                            f"{r['name'] or ''}" for r in rows])
    elif cmd == "query":
        rows = reg.query(_sparql_text(args.sparql))
        _print(args, rows, ["\t".join(str(v) for v in r.values()) for r in rows])
    elif cmd == "export-td":
        td = reg.get_td(args.device)
        text = json.dumps(td, indent=2)
        if args.out:
            Path(args.out).write_text(text + "\n", encoding="utf-8")
        else:
            print(text)
    elif cmd == "dump":
        reg.dump(args.file)
        print(f"dumped the store to {args.file}")
    elif cmd == "restore":
        reg.restore(args.file)
        print(f"restored the store from {args.file}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("registry", help="the semantic registry of models, artifacts, devices and deployments",
                       description="An RDF knowledge graph (W3C WoT TD, SOSA/SSN, S3N/SeLoC-ML, PROV-O) answering "
                                   "'which artifact fits this device', 'what runs where', 'who needs an update'.")
    p.add_argument("--store", default=DEFAULT_STORE,
                   help="'memory', a directory (embedded Oxigraph, created if missing) or a SPARQL 1.1 endpoint "
                        "URL such as http://127.0.0.1:7878/query (default: $EDGEBERT_REGISTRY or ./.edgebert-registry)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    r = p.add_subparsers(dest="reg_command", required=True)
    r.add_parser("add-device", help="add or replace devices: TD 1.1 JSON-LD (.json/.jsonld) or RDF (.ttl…)"
                 ).add_argument("file")
    r.add_parser("add-artifact", help="add an artifact directory (its sha256s are verified)").add_argument("artifact_dir")
    r.add_parser("import", help="import any RDF file as is (e.g. SeLoC-ML/S3N descriptions)").add_argument("file")
    r.add_parser("match", help="compatible artifacts for a device, best first").add_argument("device")
    r.add_parser("devices-for", help="devices that can run an artifact").add_argument("artifact")
    d = r.add_parser("deploy", help="record that an artifact runs on a device")
    d.add_argument("device")
    d.add_argument("artifact")
    d.add_argument("--status", default="active", choices=("pending", "active", "failed", "rolled-back", "superseded"))
    r.add_parser("deployments", help="what runs where").add_argument("device", nargs="?")
    r.add_parser("outdated", help="devices whose deployed artifact has a newer compatible version")
    r.add_parser("lineage", help="what an artifact was derived from").add_argument("artifact")
    r.add_parser("query", help="raw SPARQL (text, @FILE or - for stdin)").add_argument("sparql")
    e = r.add_parser("export-td", help="a device as a W3C WoT TD 1.1 JSON-LD document")
    e.add_argument("device")
    e.add_argument("--out", help="write to this file instead of stdout")
    r.add_parser("dump", help="write the whole store to FILE (.nq or .trig)").add_argument("file")
    r.add_parser("restore", help="replace the store's content with FILE (.nq or .trig)").add_argument("file")
    s = r.add_parser("serve", help="serve the W3C WoT TD Directory API over HTTP",
                     description="A W3C WoT Discovery 1.0 TD Directory: /things (PUT, POST for anonymous TDs, "
                                 "GET, PATCH with a JSON Merge Patch, DELETE, paged listing; TDs enriched with their "
                                 "registration, a 'registration': {'ttl': S} makes one expire), /events (Server-Sent "
                                 "Events, ?diff=true, Last-Event-ID), /search/jsonpath, /.well-known/wot (the "
                                 "directory's TD); a SPARQL 1.1 Protocol endpoint at /search/sparql and /sparql "
                                 "(SELECT/ASK/CONSTRUCT/DESCRIBE; JSON, XML, CSV, TSV, JSON-LD, Turtle, N-Triples by "
                                 "Accept; default-graph-uri/named-graph-uri; updates need the admin scope); device "
                                 "matching (/devices/{id}/matches). Access: without "
                                 "--tokens, a server on a loopback address lets local clients read and write; bound "
                                 "beyond loopback (e.g. --host 0.0.0.0) it serves reads only. With tokens (a 0600 "
                                 "file of 'SCOPE TOKEN' lines, or $EDGEBERT_REGISTRY_TOKENS with ';' between "
                                 "entries; scopes read < write < admin) every request needs 'Authorization: Bearer "
                                 "TOKEN'. Limits: request bodies (--max-body), JSON depth 32, 1,000 affordances per "
                                 "TD, queries (--query-timeout, --max-rows, two at a time, 503 when busy), 64 event "
                                 "subscribers. SPARQL "
                                 "SERVICE is refused unless its endpoint is given with --allow-service. Errors are "
                                 "RFC 7807 problem+json. See docs/registry.md and docs/security.md.")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: loopback only)")
    s.add_argument("--port", type=int, default=8081)
    s.add_argument("--tokens", metavar="FILE", help="bearer tokens with scopes, one 'SCOPE TOKEN' per line (mode 0600)")
    s.add_argument("--tls-cert", metavar="PEM", help="serve HTTPS with this certificate (needs --tls-key)")
    s.add_argument("--tls-key", metavar="PEM", help="the certificate's private key")
    s.add_argument("--allow-service", metavar="IRI", action="append", default=[],
                   help="a SPARQL endpoint that SERVICE may call (repeatable; default: SERVICE is refused)")
    s.add_argument("--max-body", type=int, default=1_000_000, metavar="BYTES",
                   help="largest request body (default 1,000,000; larger is 413)")
    s.add_argument("--query-timeout", type=float, default=10.0, metavar="S", help="seconds per query (default 10)")
    s.add_argument("--max-rows", type=int, default=10_000, help="largest query result in rows (default 10,000)")
    p.set_defaults(func=run)
