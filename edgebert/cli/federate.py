"""``edgebert federate simulate|serve``: federated meta-learning over MQTT."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from edgebert.cli.common import progress_bar, write_json
from edgebert.errors import InputError

if TYPE_CHECKING:
    from edgebert.federated.aggregator import Aggregator, JobConfig
    from edgebert.messaging.transport import Transport


def _sim_report(result: dict) -> str:
    ev = result["evaluation"]
    edges = result["config"].get("edges", 0)
    who = "root" if edges else "agg"
    lines = [f"{'round':>5} {'wall s':>8} {'devices':>11} {'closed by':>10} {who + ' bytes in':>14}"]
    for r in result["rounds"]:
        used, chosen = (r["devices_accepted"], r["devices_selected"]) if edges else (r["accepted"], r["selected"])
        lines.append(f"{r['round']:>5} {r['wall_s']:>8.3f} {used:>5}/{chosen:<5} {r['closed_by']:>10} "
                     f"{r['bytes_in']:>14}")
    shape = f"{edges} edges" if edges else "flat"
    lines.append(f"broker {result['broker']} ({shape}); {result['config']['devices']} devices connected in "
                 f"{result['connect_s']:.1f} s; round wall time median {result['round_wall_s']['median']:.3f} s, "
                 f"p95 {result['round_wall_s']['p95']:.3f} s; "
                 f"{ev['shots']}-shot {ev['metric']} on {ev['unseen_devices']} unseen devices: "
                 f"initial {ev['initial']:.4f} -> final {ev['final']:.4f}")
    return "\n".join(lines)


def cmd_federate_simulate(args: argparse.Namespace) -> int:
    from edgebert.federated.simulate import SimConfig, simulate

    cfg = SimConfig(args.task, args.devices, args.per_round, args.rounds, args.algorithm, args.broker,
                    args.inner_steps, args.inner_lr, int8_updates=args.int8_updates, seed=args.seed,
                    robust=args.robust, edges=args.edges, subscribe_qos=args.subscribe_qos, deadline_s=args.deadline,
                    processes=args.processes)
    with progress_bar(not args.quiet) as progress:
        result = simulate(cfg, progress)
    weights = result.pop("final_weights")
    if args.report:
        write_json(Path(args.report), result)
    if args.model_out:
        from edgebert.tensors import save_tensors

        save_tensors(Path(args.model_out), weights)
    print(_sim_report(result))
    return 0


def cmd_federate_serve(args: argparse.Namespace) -> int:
    from edgebert.federated.aggregator import Aggregator, JobConfig
    from edgebert.federated.edge import EdgeAggregator
    from edgebert.federated.hierarchy import edge_name
    from edgebert.federated.root import ROOT, RootAggregator
    from edgebert.federated.tasks import new_learner
    from edgebert.messaging.client import connect
    from edgebert.messaging.mqtt import BrokerConfig
    from edgebert.messaging.protocol import Topics

    if args.role != "flat" and args.edges < 1:
        raise InputError(f"--role {args.role}: expected --edges N (the job's edge aggregators, N >= 1), found "
                         f"{args.edges}")
    if args.role == "edge" and not 0 <= args.edge < args.edges:
        raise InputError(f"--role edge: expected --edge K with 0 <= K < --edges ({args.edges}), found {args.edge}")
    job = JobConfig(args.job, args.task, args.algorithm, args.rounds, args.fraction, args.min_participants,
                    args.quorum, args.deadline, args.server_step, args.robust, args.clip, seed=args.seed)
    topics = Topics(args.prefix, args.fleet)
    keys = edge_keys = None  # read before connecting: a bad file is one clear line, not a half-started service
    if args.credentials:
        from edgebert.fleet.security import device_update_keys, edge_update_keys

        keys = device_update_keys(Path(args.credentials))
        if args.role != "flat":
            edge_keys = edge_update_keys(Path(args.credentials), args.edges)  # partials are signed and checked
    elif args.role != "root":
        print("warning: no --credentials: updates are not authenticated (any client that can publish on the broker "
              "can send an update as any device)", file=sys.stderr)
    me = {"flat": "aggregator", "root": ROOT, "edge": edge_name(args.edge)}[args.role]
    channel = connect(BrokerConfig(args.broker, args.username, os.environ.get("EDGEBERT_MQTT_PASSWORD")), topics,
                      me, suffix=args.job, subscribe_qos=args.subscribe_qos,
                      status_topic=topics.edge_status(args.job, me) if args.role == "edge" else None)
    transport = channel.transport
    if args.role == "root":
        if edge_keys is None:
            print("warning: no --credentials: partial results are not authenticated (any client that can publish "
                  "on the broker can send a partial as any edge)", file=sys.stderr)
        root = RootAggregator(channel, job, new_learner(args.task, seed=args.seed).get_weights(), Path(args.state),
                              args.edges, edge_keys=edge_keys)
        print(f"job {args.job}: root of {args.edges} edges, round {root.round}/{job.rounds}, state in {args.state}, "
              f"broker {transport.config.redacted()}", file=sys.stderr)
        weights = root.drive()
        return _finish(args, job, root, weights, transport)
    if args.role == "edge":
        edge = EdgeAggregator(channel, job, args.edge, args.edges, Path(args.state), device_keys=keys,
                              devices=sorted(keys) if keys else None,
                              edge_key=edge_keys[edge_name(args.edge)] if edge_keys else None)
        print(f"job {args.job}: {edge.edge} of {args.edges}, state in {args.state}, broker "
              f"{transport.config.redacted()}", file=sys.stderr)
        edge.serve()
        return _finish(args, job, edge, None, transport)
    agg = Aggregator(channel, job, new_learner(args.task, seed=args.seed).get_weights(),
                     Path(args.state), device_keys=keys)
    print(f"job {args.job}: round {agg.round}/{job.rounds}, state in {args.state}, broker {transport.config.redacted()}",
          file=sys.stderr)
    weights = agg.run(wait_for_devices=args.wait)
    return _finish(args, job, agg, weights, transport)


def _finish(args: argparse.Namespace, job: JobConfig, agg: Aggregator, weights: dict | None,
            transport: Transport) -> int:
    if args.metrics:
        write_json(Path(args.metrics), {"job": job.to_info(), "rounds": agg.metrics()})
    if args.model_out and weights is not None:
        from edgebert.tensors import save_tensors

        save_tensors(Path(args.model_out), weights)
    print(f"job {args.job}: finished {agg.round} rounds")
    transport.close(flush_s=60.0)  # type: ignore[call-arg]
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    fd = sub.add_parser("federate", help="federated meta-learning (Reptile, FedAvg) over MQTT")
    fsub = fd.add_subparsers(dest="federate_command", required=True)
    fs = fsub.add_parser("simulate", help="N device clients and the aggregator (or a root and E edges) on this "
                                          "machine, through a real broker or broker cluster",
                         description="Each device has its own MQTT connection; without --broker an embedded broker "
                                     "(amqtt) is started. With --edges E the round is hierarchical: E edge "
                                     "aggregators each serve a hashed slice of the devices and send the root one "
                                     "partial result (docs/scale.md). The report has per-round wall time, bytes in "
                                     "at the aggregator (or root), participants and the few-shot score on unseen "
                                     "devices.",
                         epilog="example: edgebert federate simulate --devices 10000 --per-round 1000 --edges 3 "
                                "--algorithm fedavg --subscribe-qos 0 --broker mqtt://127.0.0.1:1883,mqtt://127.0.0.1:1884")
    fs.add_argument("--task", choices=("sine", "digits"), default="sine")
    fs.add_argument("--devices", type=int, default=100)
    fs.add_argument("--per-round", type=int, default=10)
    fs.add_argument("--rounds", type=int, default=10)
    fs.add_argument("--algorithm", choices=("reptile", "fedavg"), default="reptile")
    fs.add_argument("--broker", help="mqtt://host:port, or a cluster's nodes as URL,URL,... (each device starts on "
                                     "one of them and moves to another when its node dies; default: an embedded "
                                     "broker)")
    fs.add_argument("--edges", type=int, default=0, help="edge aggregators between the devices and the root "
                                                         "(default 0: one flat aggregator)")
    fs.add_argument("--subscribe-qos", type=int, choices=(0, 1), default=1,
                    help="QoS of every client's subscriptions; 0 keeps no per-subscription state in the broker "
                         "(NATS: no JetStream consumer each, and no message stored in JetStream on its way), which "
                         "a 10,000-device fleet needs there; what is lost when a node dies is sent again when the "
                         "aggregators call whoever is missing")
    fs.add_argument("--deadline", type=float, default=60.0, help="seconds per round")
    fs.add_argument("--processes", action="store_true",
                    help="run the aggregator (or the root and each edge) as `federate serve` processes, as deployed, "
                         "instead of threads beside the simulated devices (on a multi-core machine they then do not "
                         "wait for the devices' Python)")
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
    fv = fsub.add_parser("serve", help="run a job's aggregator (flat, or the root or one edge of hierarchical "
                                       "rounds) against a broker (resumes from --state)",
                         description="--role flat (default) runs the one aggregator. Hierarchical rounds run one "
                                     "--role root and --edges N processes of --role edge --edge K (K = 0..N-1), each "
                                     "with its own --state; the devices join with the same N. The root hears only "
                                     "the edges' partial results; an edge that dies is not waited for (its MQTT last "
                                     "will), and restarted on its --state it resumes mid-round (docs/scale.md).",
                         epilog="example: edgebert federate serve --role edge --edges 3 --edge 0 --job j "
                                "--state edge0/ --broker mqtt://10.0.0.1:1883,mqtt://10.0.0.2:1883")
    fv.add_argument("--broker", default="mqtt://127.0.0.1:1883", help="mqtt[s]://[user@]host:port; password in "
                                                                       "$EDGEBERT_MQTT_PASSWORD")
    fv.add_argument("--username")
    fv.add_argument("--prefix", default="edgebert")
    fv.add_argument("--fleet", default="default")
    fv.add_argument("--job", required=True)
    fv.add_argument("--role", choices=("flat", "root", "edge"), default="flat")
    fv.add_argument("--edges", type=int, default=0, help="the job's edge aggregators (--role root/edge)")
    fv.add_argument("--edge", type=int, default=0, help="which edge this is, 0..edges-1 (--role edge)")
    fv.add_argument("--subscribe-qos", type=int, choices=(0, 1), default=1,
                    help="QoS of this service's subscriptions; 0 on a NATS cluster, where a QoS 1 subscription is a "
                         "JetStream consumer that cannot be made again for seconds after a node dies (what is lost "
                         "meanwhile is sent again: the round is announced again to whoever is missing)")
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
                                          "so impersonation fails even on a broker without ACLs; with --role "
                                          "root/edge the edges' partials are signed too, with keys derived from the "
                                          "'aggregator' service password")
    fv.add_argument("--seed", type=int, default=0)
    fv.add_argument("--state", required=True, help="state directory (created; resumed from if it holds a job)")
    fv.add_argument("--wait", type=float, default=60.0, help="seconds to wait for enough devices")
    fv.add_argument("--metrics", help="write per-round metrics JSON here")
    fv.add_argument("--model-out", help="write the final global model (safetensors) here")
    fv.set_defaults(func=cmd_federate_serve)
