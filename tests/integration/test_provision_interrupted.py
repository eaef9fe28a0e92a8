"""A provisioning run interrupted halfway — the provisioner killed (SIGKILL) and the broker restarted
(losing every retained message) — completes on a re-run: every device on its artifact, no
deployment recorded twice. Real Mosquitto (started by the test), real embedded Oxigraph store, the
real CLI in a subprocess."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from registry.registry import open_registry

from ..fleetkit import Fleet, make_td
from ..net import free_port, port_open, wait_until

pytestmark = pytest.mark.skipif(shutil.which("mosquitto") is None, reason="mosquitto is not installed")


def start_mosquitto(port: int, conf: Path) -> subprocess.Popen:
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert wait_until(lambda: port_open(port), 10)
    return proc


def provision_cmd(store: Path, url: str, fleet: Fleet, wait: float) -> list[str]:
    return [sys.executable, "-m", "edgebert", "fleet", "provision", "--registry", str(store), "--broker", url,
            "--key", str(fleet.key), "--fleet", "lab", "--prefix", fleet.topics.prefix, "--wait", str(wait),
            "--reoffer", "1", "--quiet"]


def test_an_interrupted_run_completes_on_rerun_without_duplicates(fleet: Fleet, tmp_path: Path) -> None:
    fleet.topics = type(fleet.topics)(fleet.topics.prefix, "lab")
    port = free_port()
    url = f"mqtt://127.0.0.1:{port}"
    broker = start_mosquitto(port, tmp_path / "mosquitto.conf")
    store = tmp_path / "registry"
    names = ["m4-1", "m4-2", "pi-1", "gw-1", "m4-3", "pi-2"]
    reg = open_registry(str(store))
    reg.add_artifact(fleet.bert)
    reg.add_artifact(fleet.digits)
    reg.add_tds([make_td(n, fleet.bert_family) for n in names])
    reg.close()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    try:
        agents = {n: fleet.agent(n, url) for n in names[:4]}  # m4-3 and pi-2 are offline for now
        first = subprocess.Popen(provision_cmd(store, url, fleet, 60), env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE)
        assert wait_until(lambda: sum(a.engine is not None for a in agents.values()) >= 2, 60)
        first.send_signal(signal.SIGKILL)  # halfway: some devices done, two never seen
        first.wait(10)
        broker.terminate()
        broker.wait(10)
        broker = start_mosquitto(port, tmp_path / "mosquitto.conf")  # retained offers and statuses are gone
        agents.update({n: fleet.agent(n, url) for n in names[4:]})

        second = subprocess.run(provision_cmd(store, url, fleet, 60), env=env, capture_output=True, text=True,
                                timeout=180)

        assert second.returncode == 0, second.stdout + second.stderr
        assert all(a.engine is not None for a in agents.values())
        reg = open_registry(str(store))
        deps = reg.deployments()
        reg.close()
        assert sorted(d["device"] for d in deps) == sorted(f"urn:dev:{n}" for n in names)  # one record per device
        assert all(d["status"] == "active" for d in deps)
        for n, agent in agents.items():
            assert agent.engine.manifest.artifact_id == (fleet.digits_id if n.startswith("m4") else fleet.bert_id)

        third = subprocess.run(provision_cmd(store, url, fleet, 20), env=env, capture_output=True, text=True,
                               timeout=120)
        assert third.returncode == 0 and f"up to date: {len(names)}" in third.stdout, third.stdout
        reg = open_registry(str(store))
        assert len(reg.deployments()) == len(names)
        reg.close()
    finally:
        broker.terminate()
        broker.wait(10)
