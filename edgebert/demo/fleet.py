"""The simulated fleet of the demo: device kinds and their W3C WoT Thing Descriptions (pure data).

Kinds are classes of real hardware; their memory, CPU and runtime figures drive the registry's
matching. In the demo every device runs on this host, each with its own MQTT connection, state
directory and data stream: the Cortex-M4 kinds run the exported C firmware (its host build, the
same C as their Cortex-M4 build, measured under QEMU), the others ONNX Runtime.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgebert.errors import InputError


@dataclass(frozen=True)
class Kind:
    key: str
    label: str
    ram: int
    flash: int
    arch: str
    mhz: int
    role: str  # sine | digits | text: which data stream the device sees (and which model family it wants)
    sensor: str
    runtimes: tuple[str, ...] = ("onnxruntime",)  # microcontrollers run exported firmware (C99 or TFLite Micro)
    precisions: tuple[str, ...] = ("int8", "fp32")


MCU_RUNTIMES = ("c99", "tflite-micro")
KINDS = {
    "m4s": Kind("m4s", "Cortex-M4 class, vibration sensor", 256_000, 1_000_000, "cortex-m4", 80, "sine", "accelerometer",
              MCU_RUNTIMES),
    "m4c": Kind("m4c", "Cortex-M4 class, 8x8 camera", 256_000, 1_000_000, "cortex-m4", 80, "digits", "camera-8x8",
              MCU_RUNTIMES),
    # a camera node whose application leaves 11 KB of flash to the model: the int8 digits firmware
    # (12.5 KB measured) does not fit, the binarized one (9.0 KB) does - the registry decides by the
    # measured sizes
    "m4b": Kind("m4b", "Cortex-M4 class, 8x8 camera, 11 KB model flash", 16_000, 11_264, "cortex-m4", 80, "digits",
                "camera-8x8", MCU_RUNTIMES, ("int8", "binary")),
    "m4t": Kind("m4t", "Cortex-M4 class, keyword sensor", 256_000, 1_000_000, "cortex-m4", 80, "text-mcu",
                "microphone-kws", MCU_RUNTIMES),
    "pi": Kind("pi", "Raspberry-Pi class", 1_000_000_000, 16_000_000_000, "aarch64", 1500, "text", "microphone-asr"),
    "gw": Kind("gw", "gateway class", 8_000_000_000, 128_000_000_000, "x86_64", 2400, "text", "message-bus"),
}
MIN_DEVICES = 6


def fleet_plan(n: int) -> list[tuple[str, Kind]]:
    """``n`` device names and kinds: ~42% vibration M4s (they do federated meta-learning), ~16% camera
    M4s (one of them, from 7 devices on, a low-flash one that runs the binarized net), ~8%
    keyword-sensor M4s (a distilled text encoder's firmware), ~16% gateways, the rest Pis."""
    if n < MIN_DEVICES:
        raise InputError(f"--devices: expected at least {MIN_DEVICES} (every kind, and enough for federated rounds), "
                         f"found {n}")
    counts = {"m4s": max(3, round(n * 0.42)), "m4c": max(1, round(n * 0.16)), "m4b": 1 if n > MIN_DEVICES else 0,
              "m4t": max(1, round(n * 0.08)), "gw": max(1, round(n * 0.16))}
    counts["pi"] = n - sum(counts.values())
    if counts["pi"] < 0:
        counts["m4s"] += counts["pi"]
        counts["pi"] = 0
    return [(f"{key}-{i + 1:03d}", KINDS[key]) for key in ("m4s", "m4c", "m4b", "m4t", "pi", "gw") for i in range(counts[key])]


def thing_description(iri: str, name: str, kind: Kind, fleet_iri: str, family: str) -> dict:
    return {
        "@context": ["https://www.w3.org/2022/wot/td/v1.1"], "id": iri, "title": f"{kind.label} {name}",
        "securityDefinitions": {"basic_sc": {"scheme": "basic", "in": "header"}}, "security": "basic_sc",
        "eb:ramBytes": kind.ram, "eb:flashBytes": kind.flash, "eb:cpuArchitecture": kind.arch,
        "eb:cpuClockHz": kind.mhz * 1_000_000, "eb:supportsRuntime": [{"@id": f"eb:{r}"} for r in kind.runtimes],
        "eb:supportsPrecision": [{"@id": f"eb:{p}"} for p in kind.precisions], "eb:memberOf": {"@id": fleet_iri},
        "eb:wantsFamily": family,
        "properties": {"status": {"type": "string", "readOnly": True,
                                  "forms": [{"href": f"mqtt://broker/edgebert/{name}/status", "op": "observeproperty"}]}},
    }


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
