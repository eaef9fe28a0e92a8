"""The peer for benchmarks/federated.py (d): the 1000-device sine workload in Flower's simulation.

Same model (the 1-40-40-1 numpy MLP of edgebert.federated.tasks), same device tasks and local
work (32 SGD steps on 10 samples), FedAvg strategy with 10% of the nodes per round; Flower's own
Ray-backed simulation engine. Round time = wall time of the run divided by the rounds (Flower's
start-up excluded by timing from the first round's configuration to the end).
"""

from __future__ import annotations

import time

import numpy as np


def run_flower(rounds: int, devices: int, per_round: int, steps: int = 32) -> dict:
    from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
    from flwr.clientapp import ClientApp
    from flwr.serverapp import Grid, ServerApp
    from flwr.serverapp.strategy import FedAvg
    from flwr.simulation import run_simulation

    from edgebert.federated.tasks import DeviceTask, adapt, new_learner

    client = ClientApp()

    @client.train()
    def train(msg: Message, context: Context) -> Message:
        node = int(context.node_config["partition-id"])
        learner = new_learner("sine")
        learner.set_weights(msg.content["arrays"].to_numpy_ndarrays_dict()
                            if hasattr(msg.content["arrays"], "to_numpy_ndarrays_dict")
                            else dict(zip(sorted(learner.get_weights()), msg.content["arrays"].to_numpy_ndarrays(),
                                          strict=True)))
        round_ = int(msg.content["config"]["server-round"])
        x, y = DeviceTask("sine", node).round_data(round_, 10)
        adapt(learner, x, y, steps)  # the same local work as edgebert's devices (32 steps: Reptile's)
        weights = learner.get_weights()
        content = RecordDict({"arrays": ArrayRecord([weights[k] for k in sorted(weights)]),
                              "metrics": MetricRecord({"num-examples": 10})})
        return Message(content=content, reply_to=msg)

    times: dict[str, float] = {}
    server = ServerApp()

    @server.main()
    def main(grid: Grid, context: Context) -> None:
        init = new_learner("sine").get_weights()
        strategy = FedAvg(fraction_train=per_round / devices, fraction_evaluate=0.0, min_train_nodes=per_round,
                          min_available_nodes=devices)
        times["start"] = time.perf_counter()
        strategy.start(grid=grid, initial_arrays=ArrayRecord([init[k] for k in sorted(init)]), num_rounds=rounds)
        times["end"] = time.perf_counter()

    t0 = time.perf_counter()
    run_simulation(server_app=server, client_app=client, num_supernodes=devices,
                   backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0}})
    total = time.perf_counter() - t0
    rounds_s = (times["end"] - times["start"]) if "end" in times else float("nan")
    return {"round_s": rounds_s / rounds, "rounds": rounds, "devices": devices, "per_round": per_round,
            "steps": steps, "with_startup_s": total, "engine": "ray", "numpy": np.__version__}


if __name__ == "__main__":  # one run in its own process (benchmarks/scale.py): JSON on the last line
    import argparse
    import json

    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--per-round", type=int, default=100)
    parser.add_argument("--steps", type=int, default=32)
    a = parser.parse_args()
    print(json.dumps(run_flower(a.rounds, a.devices, a.per_round, a.steps)))
