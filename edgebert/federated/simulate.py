"""``edgebert federate simulate``: N device clients (each its own MQTT connection) and the aggregator,
or the root and E edge aggregators (``edges``), on one machine, through a real broker (the embedded
one unless a URL is given; a comma-separated list of URLs is a cluster's nodes)."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgebert.errors import BrokerError, EdgeBertError, InputError
from edgebert.federated.aggregate import DEFAULT_RULE, Weights
from edgebert.federated.aggregator import Aggregator, JobConfig
from edgebert.federated.auth import edge_key, update_key
from edgebert.federated.client import DeviceClient
from edgebert.federated.edge import EdgeAggregator
from edgebert.federated.hierarchy import edge_name, edge_of
from edgebert.federated.root import ROOT, RootAggregator
from edgebert.federated.tasks import DeviceTask, few_shot_score, new_learner
from edgebert.files import atomic_write
from edgebert.messaging.broker import EmbeddedBroker
from edgebert.messaging.client import connect
from edgebert.messaging.mqtt import BrokerConfig, MqttLoop
from edgebert.messaging.protocol import Topics
from edgebert.progress import Progress
from edgebert.tensors import load_tensors


@dataclass(frozen=True)
class SimConfig:
    task: str = "sine"
    devices: int = 100
    per_round: int = 10
    rounds: int = 10
    algorithm: str = "reptile"
    broker: str | None = None
    inner_steps: int | None = None  # default: 32 for Reptile, 1 (one local epoch on its 10 samples) for FedAvg
    inner_lr: float = 0.01
    shots: int = 10
    eval_devices: int = 50
    int8_updates: bool = False
    seed: int = 0
    deadline_s: float = 60.0
    robust: str = DEFAULT_RULE
    edges: int = 0  # 0: one flat aggregator; E: a root and E edge aggregators (docs/scale.md)
    subscribe_qos: int = 1  # every client's subscriptions (0: no per-subscription broker state; see MqttTransport)
    connect_timeout_s: float = 600.0
    processes: bool = False  # the aggregator (root and edges) as `edgebert federate serve` processes, as deployed

    def __post_init__(self) -> None:
        if not 0 < self.per_round <= self.devices or self.rounds <= 0:
            raise InputError(f"expected 0 < --per-round <= --devices and --rounds > 0, found {self.per_round}, "
                             f"{self.devices}, {self.rounds}")
        if not 0 <= self.edges <= self.per_round:
            raise InputError(f"--edges: expected 0 (flat) to --per-round ({self.per_round}), found {self.edges}")

    @property
    def k(self) -> int:
        return self.inner_steps or (32 if self.algorithm == "reptile" else 1)


def _digits() -> tuple[np.ndarray, np.ndarray]:
    from edgebert.model.tinyml import digits_data

    return digits_data()


def _wait_connected(clients: list[DeviceClient], timeout: float, progress: Progress) -> None:
    deadline = time.monotonic() + timeout
    for i, c in enumerate(clients):
        if not c.ch.transport.connected.wait(max(0.0, deadline - time.monotonic())):
            up = sum(x.ch.transport.connected.is_set() for x in clients)
            raise BrokerError(f"simulate: expected {len(clients)} devices connected within {timeout:.0f} s, "
                              f"found {up}")
        progress("connect", i + 1, len(clients))


class _Services:
    """The aggregator, or the root and the edges, as `edgebert federate serve` processes (their own
    interpreters: on a multi-core machine they do not wait for the simulated devices' Python)."""

    def __init__(self, cfg: SimConfig, job: JobConfig, url: str, topics: Topics, state: Path,
                 passwords: dict[str, str], aggregator_password: str) -> None:
        self.cfg, self.state = cfg, state
        self._mtime, self._logs = 0, 0
        credentials = state / "credentials.json"  # the devices' keys, as `fleet credentials` would hand them
        state.mkdir(parents=True, exist_ok=True)
        services = {"aggregator": aggregator_password}  # the edges' partials are signed with keys derived from it
        atomic_write(credentials, json.dumps({**passwords, **services}), mode=0o600)
        base = [sys.executable, "-m", "edgebert", "federate", "serve", "--broker", url, "--prefix", topics.prefix,
                "--fleet", topics.fleet, "--job", job.job, "--task", job.task, "--algorithm", job.algorithm,
                "--rounds", str(job.rounds), "--fraction", repr(job.fraction), "--min-participants",
                str(job.min_participants), "--deadline", repr(job.deadline_s), "--robust", job.robust, "--seed",
                str(job.seed), "--subscribe-qos", str(cfg.subscribe_qos)]
        self.main = state / (ROOT if cfg.edges else "aggregator")
        roles = [["--role", "edge", "--edges", str(cfg.edges), "--edge", str(e), "--state", str(state / edge_name(e)),
                  "--credentials", str(credentials)] for e in range(cfg.edges)]
        roles.append(["--role", "root", "--edges", str(cfg.edges), "--credentials", str(credentials)] if cfg.edges else
                     ["--role", "flat", "--credentials", str(credentials), "--wait", "60"])
        roles[-1] += ["--state", str(self.main), "--metrics", str(state / "metrics.json"),
                      "--model-out", str(state / "final.safetensors")]
        self.procs = [subprocess.Popen(base + r, stdout=(state / f"service{i}.log").open("wb"),
                                       stderr=subprocess.STDOUT) for i, r in enumerate(roles)]

    def _closed(self) -> int:
        """Rounds the aggregator has closed (read from its state file only when that changed)."""
        try:
            mtime = (self.main / "state.json").stat().st_mtime_ns
            if mtime != self._mtime:
                self._mtime, self._logs = mtime, len(json.loads((self.main / "state.json").read_text())["logs"])
        except (OSError, ValueError, KeyError):
            pass
        return self._logs

    def drive(self, on_round: Callable[[int, Weights], None]) -> Weights:
        seen = 0
        try:
            while self.procs[-1].poll() is None:
                for n in range(seen + 1, self._closed() + 1):
                    on_round(n, {})
                seen = max(seen, self._closed())
                for p in self.procs[:-1]:
                    if p.poll() not in (None, 0):
                        raise EdgeBertError(f"simulate: an edge exited with {p.returncode} (log in {self.state})")
                time.sleep(0.1)
            if self.procs[-1].returncode != 0:
                log = (self.state / f"service{len(self.procs) - 1}.log").read_text(errors="replace")[-500:]
                raise EdgeBertError(f"simulate: the aggregator exited with {self.procs[-1].returncode}: {log}")
            for n in range(seen + 1, self._closed() + 1):
                on_round(n, {})
            for p in self.procs[:-1]:
                p.wait(60)
            return load_tensors(self.state / "final.safetensors")[0]
        finally:
            for p in self.procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()

    def metrics(self) -> list[dict[str, Any]]:
        return list(json.loads((self.state / "metrics.json").read_text())["rounds"])

    def edge_logs(self) -> list[list[dict[str, Any]]]:
        return [json.loads((self.state / edge_name(e) / "state.json").read_text())["logs"]
                for e in range(self.cfg.edges)]


def simulate(cfg: SimConfig, progress: Progress = lambda s, d, t: None, state_dir: Path | None = None) -> dict[str, Any]:
    broker = EmbeddedBroker().start() if cfg.broker is None else None
    url = broker.url if broker else str(cfg.broker)
    topics = Topics("edgebert-sim", f"run-{uuid.uuid4().hex[:8]}")  # isolated on a shared broker
    dx, dy = _digits() if cfg.task == "digits" else (None, None)

    def task(i: int) -> DeviceTask:
        return DeviceTask(cfg.task, cfg.seed * 1_000_003 + i, dx, dy)

    device_loop = MqttLoop()
    loops = [device_loop]
    passwords = {f"dev{i:05d}": secrets.token_hex(16) for i in range(cfg.devices)}  # as `fleet credentials` hands out
    keys = {name: update_key(pw) for name, pw in passwords.items()}
    aggregator_password = secrets.token_hex(16)
    edge_keys = {edge_name(e): edge_key(aggregator_password, edge_name(e)) for e in range(cfg.edges)}
    clients: list[DeviceClient] = []
    tmp = tempfile.TemporaryDirectory() if state_dir is None else None
    state = Path(state_dir or tmp.name)  # type: ignore[union-attr]
    edges: list[EdgeAggregator] = []
    try:
        t0 = time.perf_counter()
        for i in range(cfg.devices):  # every device connects at once; then they are waited for
            name = f"dev{i:05d}"
            channel = connect(url, topics, name, device=True, loop=device_loop, retry=True,
                              subscribe_qos=cfg.subscribe_qos)
            clients.append(DeviceClient(channel, cfg.task, new_learner(cfg.task, cfg.inner_lr, i),
                                        task(i).round_data, inner_steps=cfg.k, shots=cfg.shots,
                                        int8_updates=cfg.int8_updates, update_key=keys[name], edges=cfg.edges))
        _wait_connected(clients, cfg.connect_timeout_s, progress)
        connect_s = time.perf_counter() - t0
        job = JobConfig(cfg.task, cfg.task, cfg.algorithm, cfg.rounds, fraction=cfg.per_round / cfg.devices,
                        min_participants=cfg.per_round, deadline_s=cfg.deadline_s, inner_steps=cfg.k,
                        inner_lr=cfg.inner_lr, shots=cfg.shots, seed=cfg.seed, robust=cfg.robust)
        init = new_learner(cfg.task, cfg.inner_lr, seed=cfg.seed).get_weights()
        agg: Aggregator | _Services
        if cfg.processes:
            agg = _Services(cfg, job, url, topics, state, passwords, aggregator_password)
        elif cfg.edges:
            for e in range(cfg.edges):
                name = edge_name(e)
                loops.append(MqttLoop())
                edges.append(EdgeAggregator(
                    connect(url, topics, name, loop=loops[-1], status_topic=topics.edge_status(job.job, name),
                            subscribe_qos=cfg.subscribe_qos),
                    job, e, cfg.edges, state / name, device_keys={d: k for d, k in keys.items()
                                                                  if edge_of(d, cfg.edges) == name},
                    devices=sorted(keys), edge_key=edge_keys[name]))
                threading.Thread(target=edges[-1].serve, daemon=True, name=f"edgebert-{name}").start()
            loops.append(MqttLoop())
            agg = RootAggregator(connect(url, topics, ROOT, loop=loops[-1], subscribe_qos=cfg.subscribe_qos), job,
                                 init, state / ROOT, cfg.edges, edge_keys=edge_keys)
        else:
            loops.append(MqttLoop())
            agg = Aggregator(connect(url, topics, "aggregator", loop=loops[-1], subscribe_qos=cfg.subscribe_qos),
                             job, init, state,
                             devices=sorted(keys), device_keys=keys)
        unseen = [task(10_000_000 + i) for i in range(cfg.eval_devices)]
        evaluation = [few_shot_score(cfg.task, init, unseen, cfg.shots)]
        final = agg.drive(lambda n, weights: progress("round", n, cfg.rounds))
        wall = time.perf_counter() - t0
        evaluation.append(few_shot_score(cfg.task, final, unseen, cfg.shots))
        device_bytes = sum(c.ch.sent_bytes + c.ch.received_bytes for c in clients)
        rounds = agg.metrics()
        bytes_per_round = {"aggregator": float(np.mean([r["bytes_in"] + r["bytes_out"] for r in rounds])),
                           "aggregator_in": float(np.mean([r["bytes_in"] for r in rounds])),
                           "devices": device_bytes / max(1, len(rounds))}
        edge_logs = agg.edge_logs() if isinstance(agg, _Services) else [[asdict(x) for x in e.logs] for e in edges]
        if edge_logs:
            bytes_per_round["edges_in"] = [float(np.mean([r["bytes_in"] for r in logs])) if logs else 0.0
                                           for logs in edge_logs]
        return {
            "config": asdict(cfg), "broker": BrokerConfig(url).redacted(), "connect_s": connect_s, "wall_s": wall,
            "rounds": rounds,
            "round_wall_s": {"median": float(np.median([r["wall_s"] for r in rounds])),
                             "p95": float(np.percentile([r["wall_s"] for r in rounds], 95)),
                             "max": float(np.max([r["wall_s"] for r in rounds]))},
            "bytes_per_round": bytes_per_round,
            "evaluation": {"metric": "mse" if cfg.task == "sine" else "accuracy", "unseen_devices": cfg.eval_devices,
                           "shots": cfg.shots, "initial": evaluation[0], "final": evaluation[-1]},
            "final_weights": final,
        }
    finally:
        for loop in loops:
            loop.stop()
        if broker is not None:
            broker.stop()
        if tmp is not None:
            tmp.cleanup()
