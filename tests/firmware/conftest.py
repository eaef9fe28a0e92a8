"""Firmware fixtures: the digits and sine nets lowered, exported as C (host + Cortex-M4) and TFLM."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

M4_TOOLS = all(shutil.which(t) for t in ("arm-none-eabi-gcc", "arm-none-eabi-size", "qemu-system-arm"))
needs_m4 = pytest.mark.skipif(not M4_TOOLS, reason="the Cortex-M4 toolchain is not installed (bash "
                              "scripts/install-tools.sh: gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm)")


@pytest.fixture(scope="session")
def digits_program(digits_artifact):
    from edgebert.graph.form import Graph
    from firmware_export.lower import lower_mlp

    return lower_mlp(Graph.load(digits_artifact.path / "graph.safetensors"))


@pytest.fixture(scope="session")
def sine_artifact(tmp_path_factory: pytest.TempPathFactory):
    import edgebert
    from edgebert.model.tinyml import train

    model = train("sine", tmp_path_factory.mktemp("tinyml") / "sine", steps=300)[0]
    return edgebert.convert(model, tmp_path_factory.mktemp("art") / "sine-int8", "int8", model / "calibration.npy")


@pytest.fixture(scope="session")
def digits_inputs() -> np.ndarray:
    """2,000 inputs: every real digit (1,797) and 203 with noise beyond [0, 1] (saturating codes)."""
    from edgebert.model.tinyml import digits_data

    x, _ = digits_data()
    rng = np.random.default_rng(1)
    noisy = np.clip(x[:203] + rng.normal(0, 0.8, (203, 64)), -1.5, 2.5).astype(np.float32)
    return np.concatenate([x, noisy])


@pytest.fixture(scope="session")
def digits_c(digits_artifact, tmp_path_factory: pytest.TempPathFactory):
    """The digits artifact exported as C: measured on the Cortex-M4 when the toolchain is here."""
    from firmware_export.export import export

    return export(digits_artifact.path, "c", tmp_path_factory.mktemp("fw") / "digits-c", measure=M4_TOOLS)
