"""Build the exported C for a Cortex-M4 and measure it under QEMU (mps2-an386).

Three images from the same sources:
- a bare inference image (start-up, one ``eb_model_run``, nothing else): its text + data is the
  flash an application needs for the model (weights + inference code, libm's ``roundf`` included);
- a bare learning image (the same plus one head learning step): flash with on-device learning;
- the test application (newlib + semihosting): runs the test inputs, prints the int8 features and
  outputs, the head's weights after learning, the stack high-water marks (painted stack) and
  SysTick counts, which ``-icount shift=0`` makes deterministic; a calibration loop of known length
  converts ticks to instructions.
RAM = the model's static RAM (its arena, from ``arm-none-eabi-size`` of the object) + the measured
stack peak of one inference; with learning, + the head's state and the learning step's stack peak.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from edgebert.errors import ToolchainError
from firmware_export import toolchain
from firmware_export.c99 import test_data

M4_FILES = ("startup.c", "link.ld", "eb_measure.h", "bare_main.c", "main.c", "bare_text_main.c", "text_main.c")
TICK_LIMIT = 0x00F00000  # SysTick is 24 bits: counts near a wrap cannot be trusted
STACK_SLACK = 64  # bytes above the painted region (the test's own frame): counted as used


@dataclass(frozen=True)
class M4Figures:
    inference_flash_bytes: int           # bare inference image: text + data
    inference_ram_bytes: int             # model static RAM + inference stack peak
    arena_bytes: int
    stack_bytes: int
    instructions_per_inference: int
    learn_flash_bytes: int               # bare image with one head learning step
    learn_ram_bytes: int                 # ram_bytes + head state + learning stack peak beyond inference
    head_state_bytes: int
    learn_stack_bytes: int
    instructions_per_learning_step: int
    compiler: str

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class M4Run:
    figures: M4Figures
    features: np.ndarray     # (n, features) int8, as printed by the Cortex-M4 build
    outputs: np.ndarray      # (n, outputs) int8
    head_weights: np.ndarray | None
    head_bias: np.ndarray | None


def _stage(sources: dict[str, str], work: Path) -> None:
    for name, text in sources.items():
        (work / name).write_text(text, encoding="utf-8")
    for name in M4_FILES:
        (work / name).write_text(resources.files("firmware_export").joinpath("c", "m4", name).read_text("utf-8"),
                                 encoding="utf-8")


def _value(out: str, key: str) -> list[str]:
    m = re.search(rf"^{key} (.*)$", out, re.MULTILINE)
    if m is None:
        raise ToolchainError(f"QEMU run: expected a '{key}' line from the test application, found none")
    return m.group(1).split()


def _parse(out: str, n: int, n_feat: int, n_out: int, learn: bool) -> tuple:
    rows = [line[2:].split(" | ") for line in out.splitlines() if line.startswith("o ")]
    if len(rows) != n:
        raise ToolchainError(f"QEMU run: expected {n} output lines, found {len(rows)}")
    feats = np.array([[int(v) for v in r[0].split()] for r in rows], np.int8).reshape(n, n_feat)
    outs = np.array([[int(v) for v in r[1].split()] for r in rows], np.int8).reshape(n, n_out)
    w = b = None
    if learn:
        w = np.array([float(v) for v in _value(out, "w")], np.float32).reshape(n_feat, n_out)
        b = np.array([float(v) for v in _value(out, "b")], np.float32)
    return feats, outs, w, b


def _compiler() -> str:
    import subprocess

    first = subprocess.run([toolchain.tool("arm-none-eabi-gcc"), "--version"], capture_output=True, text=True,
                           check=False).stdout.splitlines()
    return first[0] if first else "arm-none-eabi-gcc"


def measure(sources: dict[str, str], x: np.ndarray, labels: np.ndarray, lr: float = 0.01, normalize: bool = True,
            learn: bool = True) -> M4Run:
    """Build the three images from ``sources`` (c99.sources), run the test application on ``x``
    (and learn from ``labels``), and return the figures and what the Cortex-M4 computed."""
    if x.ndim != 2 or len(x) == 0 or len(labels) != len(x):
        raise ToolchainError(f"M4 test: expected (n, inputs) inputs with n labels, found {x.shape} and {len(labels)}")
    n_feat, n_out = sources_dim(sources, "FEATURES"), sources_dim(sources, "OUTPUTS")
    work = Path(tempfile.mkdtemp(prefix="edgebert-m4-"))
    try:
        _stage(sources, work)
        (work / "eb_test_data.c").write_text(test_data(x, labels, learn, lr, normalize), encoding="utf-8")
        model_obj = toolchain.size(toolchain.m4_object(work, "edgebert_model.c", "edgebert_model.o"))
        api_obj = toolchain.size(toolchain.m4_object(work, "eb_api.c", "eb_api.o"))
        bare = toolchain.size(toolchain.m4_image(work, ["bare_main.c", "edgebert_model.c"], "bare.elf"))
        bare_learn = toolchain.size(toolchain.m4_image(work, ["bare_main.c", "edgebert_model.c", "eb_api.c"],
                                                       "bare_learn.elf", defines=("EB_LEARN",)))
        app = toolchain.m4_image(work, ["main.c", "eb_api.c", "edgebert_model.c", "eb_test_data.c"], "app.elf",
                                 semihosting=True)
        out = toolchain.qemu(app)
        ticks, expected = (int(v) for v in _value(out, "calibrate"))
        per_tick = expected / max(ticks, 1)
        infer_ticks, n = (int(v) for v in _value(out, "infer_ticks"))
        stack = int(_value(out, "infer_stack")[0]) + STACK_SLACK
        learn_instr = learn_stack = head = 0
        if learn:
            learn_ticks, _ = (int(v) for v in _value(out, "learn_ticks"))
            learn_instr = round(learn_ticks * per_tick / n)
            learn_stack = int(_value(out, "learn_stack")[0]) + STACK_SLACK
            head = int(_value(out, "head_state_bytes")[0])
        feats, outs, w, b = _parse(out, n, n_feat, n_out, learn)
        arena = model_obj.ram
        figures = M4Figures(
            inference_flash_bytes=bare.flash, inference_ram_bytes=arena + stack, arena_bytes=arena, stack_bytes=stack,
            instructions_per_inference=round(infer_ticks * per_tick / n), learn_flash_bytes=bare_learn.flash,
            learn_ram_bytes=arena + api_obj.ram + max(stack, learn_stack), head_state_bytes=head,
            learn_stack_bytes=learn_stack, instructions_per_learning_step=learn_instr, compiler=_compiler())
        return M4Run(figures, feats, outs, w, b)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def sources_dim(sources: dict[str, str], name: str) -> int:
    m = re.search(rf"#define EB_MODEL_{name} (\d+)", sources["edgebert_model.h"])
    if m is None:
        raise ToolchainError(f"edgebert_model.h: expected EB_MODEL_{name}, found none")
    return int(m.group(1))


@dataclass(frozen=True)
class M4TextFigures:
    flash_bytes: int                  # bare image (start-up, one encoding, the real embedding): text + data
    ram_bytes: int                    # the model's static buffers + the encoding's stack peak
    arena_bytes: int
    stack_bytes: int
    instructions_per_inference: int   # for the longest test sentence
    tokens: int                       # its length
    instructions_per_token: int
    compiler: str

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class M4TextRun:
    figures: M4TextFigures
    outputs: list[np.ndarray]         # int32 (out,) per sentence, as printed by the Cortex-M4 build
    codes: list[int]                  # eb_text_run's return code per sentence


def text_test_data(sentences: list[np.ndarray]) -> str:
    """eb_test_data.c for the text application: the sentences' ids back to back and their lengths."""
    from firmware_export.c99 import c_array

    flat = np.concatenate([np.asarray(s, np.int64) for s in sentences])
    return (f"/* eb_test_data.c - generated test sentences; do not edit. */\n#include <stdint.h>\n"
            f"{c_array('int32_t', 'eb_test_ids', flat, static=False)}\n"
            f"{c_array('int', 'eb_test_lens', np.array([len(s) for s in sentences]), static=False)}\n"
            f"const int eb_test_n = {len(sentences)};\n")


def measure_text(sources: dict[str, str], sentences: list[np.ndarray]) -> M4TextRun:
    """Build the bare and the test image of a text encoder's C sources (c99_text.sources), encode
    ``sentences`` (token id arrays) on the emulated Cortex-M4, and return figures and outputs."""
    if not sentences or any(len(s) == 0 for s in sentences):
        raise ToolchainError("M4 text test: expected non-empty sentences, found an empty one")
    n_out = int(re.search(r"#define EB_TEXT_OUT (\d+)", sources["edgebert_model.h"]).group(1))  # type: ignore[union-attr]
    work = Path(tempfile.mkdtemp(prefix="edgebert-m4-"))
    try:
        _stage(sources, work)
        (work / "eb_test_data.c").write_text(text_test_data(sentences), encoding="utf-8")
        model_obj = toolchain.size(toolchain.m4_object(work, "edgebert_model.c", "edgebert_model.o"))
        bare = toolchain.size(toolchain.m4_image(work, ["bare_text_main.c", "edgebert_model.c"], "bare.elf"))
        app = toolchain.m4_image(work, ["text_main.c", "edgebert_model.c", "eb_test_data.c"], "app.elf",
                                 semihosting=True)
        out = toolchain.qemu(app, timeout=600.0)
        ticks, expected = (int(v) for v in _value(out, "calibrate"))
        per_tick = expected / max(ticks, 1)
        rows = [line[2:].split(" | ") for line in out.splitlines() if line.startswith("o ")]
        if len(rows) != len(sentences):
            raise ToolchainError(f"QEMU run: expected {len(sentences)} output lines, found {len(rows)}")
        codes, lens, counts, outputs = [], [], [], []
        for head, values in rows:
            rc, n, t = (int(v) for v in head.split())
            if t >= TICK_LIMIT:
                raise ToolchainError(f"QEMU run: expected SysTick counts below {TICK_LIMIT}, found {t}")
            codes.append(rc)
            lens.append(n)
            counts.append(t)
            outputs.append(np.array([int(v) for v in values.split()], np.int64).reshape(n_out))
        longest = int(np.argmax(lens))
        instr = round(counts[longest] * per_tick)
        stack = int(_value(out, "infer_stack")[0]) + STACK_SLACK
        figures = M4TextFigures(flash_bytes=bare.flash, ram_bytes=model_obj.ram + stack, arena_bytes=model_obj.ram,
                                stack_bytes=stack, instructions_per_inference=instr, tokens=lens[longest],
                                instructions_per_token=round(instr / lens[longest]), compiler=_compiler())
        return M4TextRun(figures, outputs, codes)
    finally:
        shutil.rmtree(work, ignore_errors=True)


__all__ = ["M4Figures", "M4Run", "M4TextFigures", "M4TextRun", "measure", "measure_text", "text_test_data"]
