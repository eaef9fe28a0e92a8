"""The demo job: from a checkpoint to a registered, provisioned, learning fleet, and a report.

The story, one step per module (each a progress bar): convert the compact BERT and the TinyML
nets (``convert``); register them and a simulated fleet in the registry; provision every device
with its best artifact over MQTT, signed, chunked, self-tested (``provision``); federated Reptile
rounds on the vibration devices, starting from the model they were provisioned with
(``federate``); online adaptation on the camera and text devices (``adapt``); the meta-learned
model converted into a new artifact version, which the registry reports as an update for the
devices running the old one, installed by a second provisioning pass; registry questions
(``ask``); the report (``report``). The output directory appears only when everything worked.
"""

from __future__ import annotations

import uuid
from contextlib import ExitStack
from dataclasses import asdict
from pathlib import Path
from typing import Any

from edgebert.demo.adapt import adapt_digits, adapt_text, text_sensor
from edgebert.demo.ask import ask
from edgebert.demo.config import MARKER, DemoConfig, Log, Timer
from edgebert.demo.convert import artifact_summary, convert_models, meta_artifact
from edgebert.demo.federate import federate
from edgebert.demo.fleet import DemoFleet, fleet_plan, thing_description
from edgebert.demo.provision import provision
from edgebert.errors import EdgeBertError, InputError
from edgebert.files import atomic_dir
from edgebert.progress import Progress

ARTIFACT_KEYS = ("text", "sine", "digits", "sine_fw", "digits_fw", "digits_bin", "digits_bin_fw", "student", "student_fw")


def run_demo(cfg: DemoConfig, progress: Progress, log: Log) -> dict[str, Any]:
    from edgebert.demo.report import write_report

    out = Path(cfg.out)
    if out.exists() and not (out / MARKER).exists():
        raise InputError(f"{out}: expected a new directory or an earlier demo's output, found something else "
                         "(choose another --out)")
    with atomic_dir(out, "the report") as work:
        (work / MARKER).write_text("written by edgebert demo\n")
        result = _story(cfg, work, progress, log)
        write_report(work, result)
    return result


def _story(cfg: DemoConfig, work: Path, progress: Progress, log: Log) -> dict[str, Any]:
    from edgebert.fleet.signing import keygen, public_key_of
    from edgebert.messaging.broker import EmbeddedBroker
    from edgebert.messaging.mqtt import BrokerConfig, MqttTransport
    from edgebert.messaging.protocol import Topics
    from registry.registry import open_registry

    plan_, run_id, timer = fleet_plan(cfg.devices), uuid.uuid4().hex[:8], Timer({})
    with ExitStack() as stack:
        registry = open_registry(cfg.registry or str(work / "registry"))  # bad stores and brokers fail first
        stack.callback(registry.close)
        if cfg.broker is not None:
            MqttTransport(BrokerConfig(cfg.broker), f"edgebert-demo-check-{run_id}").close()
        arts = timer.run("convert", convert_models, work, cfg.model, progress, log)
        fleet_iri = f"urn:edgebert:fleet:demo-{run_id}"
        iris = timer.run("register", _register, registry, plan_, arts, run_id, fleet_iri)
        broker = stack.enter_context(EmbeddedBroker()) if cfg.broker is None else None
        url, topics = broker.url if broker else str(cfg.broker), Topics("edgebert-demo", f"run-{run_id}")
        key, _ = keygen(work / "keys")
        fleet = DemoFleet(url, topics, [n for n, _ in plan_], work / "devices", public_key_of(key))
        stack.callback(fleet.close)
        rows = timer.run("provision", provision, registry, url, topics, fleet_iri, key, public_key_of(key), progress,
                         "provision fleet")
        _all_active(rows)
        by_role = {role: [n for n, k in plan_ if k.role == role] for role in ("sine", "digits", "text", "text-mcu")}
        init = fleet.agents[by_role["sine"][0]].engine.trainable_weights()  # type: ignore[union-attr]
        fed = timer.run("federate", federate, fleet, url, topics, by_role["sine"], init, cfg.rounds, cfg.meta_step,
                        cfg.seed, work, progress)
        adaptation = timer.run("adapt", lambda: {
            "digits": adapt_digits(fleet, by_role["digits"], cfg.digits_samples, cfg.seed, progress),
            "text": adapt_text(fleet, by_role["text"], cfg.text_samples, cfg.seed, progress),
            "text_mcu": text_sensor(fleet, by_role["text-mcu"], arts["text"], progress)})
        meta, outdated, rows2 = timer.run("update", _update, registry, work, fed.pop("final_weights"), iris, url,
                                          topics, fleet_iri, key, progress)
        questions = timer.run("ask", ask, registry, plan_, iris, arts, meta, outdated)
        result = {
            "config": {**asdict(cfg), "out": str(cfg.out)}, "run_id": run_id,
            "broker": BrokerConfig(url).redacted() + (" (embedded)" if broker else ""),
            "registry": cfg.registry or f"{Path(cfg.out) / 'registry'} (embedded Oxigraph)",
            "artifacts": {k: artifact_summary(arts[k]) for k in _unique(arts)} | {"sine_meta": artifact_summary(meta)},
            "student_distill": arts["student_distill"],
            "train_metrics": arts["train_metrics"], "fleet": _fleet_rows(plan_, rows, rows2, fleet), "federated": fed,
            "adaptation": adaptation, "registry_answers": questions, "timings_s": timer.stages,
        }
    result["timings_s"]["total"] = round(sum(timer.stages.values()), 2)
    return result


def _register(registry: Any, plan_: list, arts: dict[str, Any], run_id: str, fleet_iri: str) -> dict[str, str]:  # noqa: ANN401
    """Step 2: the artifacts and the fleet's Thing Descriptions into the registry; the devices' IRIs."""
    family = {"sine": "sine", "digits": "digits", "text": arts["text_name"], "text-mcu": arts["student_name"]}
    iris = {name: f"urn:edgebert:demo:{run_id}:{name}" for name, _ in plan_}
    for key in _unique(arts):
        registry.add_artifact(arts[key].path)
    registry.add_tds([thing_description(iris[n], n, k, fleet_iri, family[k.role]) for n, k in plan_])
    return iris


def _unique(arts: dict[str, Any]) -> list[str]:
    """ARTIFACT_KEYS without repeats (a BERT-Tiny-sized text model is its own student)."""
    keys: list[str] = []
    for key in ARTIFACT_KEYS:
        if all(arts[key].path != arts[k].path for k in keys):
            keys.append(key)
    return keys


def _all_active(rows: list[Any]) -> None:
    missing = [r.name for r in rows if r.result not in ("active", "up to date")]
    if missing:
        raise EdgeBertError(f"provisioning: expected every device on its artifact, found {len(missing)} not: "
                            f"{', '.join(missing[:5])}")


def _update(registry: Any, work: Path, weights: dict, iris: dict[str, str], url: str, topics: Any,  # noqa: ANN401
            fleet_iri: str, key: Path, progress: Progress) -> tuple[Any, list[dict[str, Any]], list[Any]]:
    """Step 6: the meta-learned model as a new version; who the registry says needs it; installing it."""
    from edgebert.fleet.signing import public_key_of

    meta, meta_fw = meta_artifact(work, weights, progress)
    registry.add_artifact(meta.path)
    registry.add_artifact(meta_fw.path)
    ours = set(iris.values())
    outdated = [o for o in registry.outdated() if o["device"] in ours]
    rows = provision(registry, url, topics, fleet_iri, key, public_key_of(key), progress, "provision update")
    return meta_fw, outdated, rows  # the microcontrollers' form is what the vibration devices install


def _fleet_rows(plan_: list, rows: list[Any], rows2: list[Any], fleet: DemoFleet) -> list[dict[str, Any]]:
    kinds, final, out = dict(plan_), {r.name: r for r in rows2}, []
    for r in rows:
        k, f, agent = kinds[r.name], final[r.name], fleet.agents[r.name]
        memory = agent.engine.manifest.memory if agent.engine else {}
        measured = bool(memory.get("measured"))
        out.append({
            "device": r.name, "iri": r.iri, "kind": k.label, "role": k.role, "ram_bytes": k.ram,
            "flash_bytes": k.flash, "first_artifact": r.target.artifact_id if r.target else None,
            "first_result": r.result, "artifact": agent.engine.manifest.artifact_id if agent.engine else None,
            "runtime": agent.engine.manifest.runtime if agent.engine else None,
            "result": f.result, "previous": agent.slots.pointer().previous, "bytes_sent": r.bytes_sent + f.bytes_sent,
            "measured_flash_bytes": memory.get("flash_bytes") if measured else None,
            "measured_ram_bytes": memory.get("peak_ram_bytes") if measured else None,
            "fits": (memory["flash_bytes"] <= k.flash and memory["peak_ram_bytes"] <= k.ram) if measured else None})
    return out


__all__ = ["DemoConfig", "run_demo"]
