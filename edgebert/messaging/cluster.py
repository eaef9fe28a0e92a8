"""A clustered MQTT broker on this machine: N nodes of NATS (its server speaks MQTT 3.1.1 and
clusters with routes; MQTT sessions and retained messages live in JetStream, replicated over the
nodes), for tests, benchmarks and trying a fleet against a broker that loses a node.

    with NatsCluster(Path("work/cluster"), nodes=3) as cluster:
        broker = cluster.url          # "mqtt://127.0.0.1:p0,mqtt://127.0.0.1:p1,mqtt://127.0.0.1:p2"
        cluster.kill(1)               # SIGKILL one node; clients on it move to the others
        cluster.restart(1)

Production clusters (EMQX, HiveMQ, VerneMQ, RabbitMQ's MQTT plugin, NATS) are run by their own
tools; edgebert only needs their nodes' URLs (docs/scale.md).
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from edgebert.errors import BrokerError
from edgebert.messaging.broker import free_port


def _open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


class NatsCluster:
    def __init__(self, root: Path, nodes: int = 3, name: str = "edgebert") -> None:
        if nodes < 1:
            raise BrokerError(f"cluster: expected at least one node, found {nodes}")
        self.root, self.nodes, self.name = Path(root), nodes, name
        self.client_ports = [free_port() for _ in range(nodes)]
        self.route_ports = [free_port() for _ in range(nodes)]
        self.mqtt_ports = [free_port() for _ in range(nodes)]
        self.procs: list[subprocess.Popen | None] = [None] * nodes

    @property
    def urls(self) -> list[str]:
        return [f"mqtt://127.0.0.1:{p}" for p in self.mqtt_ports]

    @property
    def url(self) -> str:
        """Every node's URL, as ``--broker`` takes a cluster."""
        return ",".join(self.urls)

    def _config(self, i: int) -> Path:
        routes = ", ".join(f"nats-route://127.0.0.1:{p}" for p in self.route_ports)
        path = self.root / f"node{i}.conf"
        path.write_text(f"""server_name: {self.name}-{i}
listen: 127.0.0.1:{self.client_ports[i]}
jetstream {{ store_dir: "{self.root / f'js{i}'}" }}
cluster {{
  name: {self.name}
  listen: 127.0.0.1:{self.route_ports[i]}
  routes: [ {routes} ]
}}
mqtt {{ listen: 127.0.0.1:{self.mqtt_ports[i]} }}
""")
        return path

    def _spawn(self, i: int) -> None:
        exe = shutil.which("nats-server")
        if exe is None:
            raise BrokerError("cluster: expected `nats-server` on PATH (Debian package nats-server), found none")
        log = (self.root / f"node{i}.log").open("ab")
        self.procs[i] = subprocess.Popen([exe, "-c", str(self._config(i))], stdout=log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 30.0, nodes: list[int] | None = None) -> None:
        """Until every (given) node accepts an MQTT session (JetStream elected and ready)."""
        import paho.mqtt.client as paho

        deadline = time.monotonic() + timeout
        for i in nodes if nodes is not None else range(self.nodes):
            while True:
                if self.procs[i] is not None and self.procs[i].poll() is not None:
                    raise BrokerError(f"cluster node {i}: exited with {self.procs[i].returncode} "
                                      f"(log: {self.root / f'node{i}.log'})")
                if _open(self.mqtt_ports[i]):
                    probe = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"edgebert-probe-{i}")
                    try:
                        if probe.connect("127.0.0.1", self.mqtt_ports[i], 5) == 0:
                            probe.loop(timeout=1.0)
                            if probe.is_connected():
                                probe.disconnect()
                                break
                    except OSError:
                        pass
                if time.monotonic() > deadline:
                    raise BrokerError(f"cluster node {i}: expected it to accept MQTT within {timeout:.0f} s, found "
                                      f"it not ready (log: {self.root / f'node{i}.log'})")
                time.sleep(0.2)

    def start(self) -> NatsCluster:
        self.root.mkdir(parents=True, exist_ok=True)
        for i in range(self.nodes):
            self._spawn(i)
        self.wait_ready()
        return self

    def kill(self, i: int) -> None:
        """The node dies at once (SIGKILL): no goodbye to its clients or its routes."""
        proc = self.procs[i]
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)

    def restart(self, i: int, timeout: float = 30.0) -> None:
        self.kill(i)
        self._spawn(i)
        self.wait_ready(timeout, [i])

    def stop(self) -> None:
        for proc in self.procs:
            if proc is not None and proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            if proc is not None:
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()

    def __enter__(self) -> NatsCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = ["NatsCluster"]
