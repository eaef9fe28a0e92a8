"""``edgebert federate simulate|serve``: federated meta-learning over MQTT."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from edgebert.cli.common import progress_bar, write_json
from edgebert.errors import InputError


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
        write_json(Path(args.metrics), {"job": job.to_info(), "rounds": agg.metrics()})
    if args.model_out:
        from edgebert.tensors import save_tensors

        save_tensors(Path(args.model_out), weights)
    print(f"job {args.job}: finished {agg.round} rounds")
    transport.close()
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
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
