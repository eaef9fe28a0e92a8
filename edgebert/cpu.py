"""Which integer kernel ONNX Runtime gets on this CPU, and ONNX Runtime run as another x86 CPU.

ONNX Runtime (MLAS) picks its u8 x s8 GEMM by CPU features: VNNI (``VPDPBUSD``, exact), AVX2 or
AVX-512BW without VNNI (``VPMADDUBSW``: adjacent product pairs saturate at int16, see
``edgebert.graph.avx2``), SSE4.1 or ARM64 (exact). ``integer_kernel()`` names the path
this machine has; the converter's report and the benchmarks print it.

``run_as_cpu`` runs an ONNX model in ONNX Runtime under QEMU's user-mode emulator with another
x86 CPU model (default an AVX2 Haswell without VNNI): the real kernels of a CPU this machine is
not, for tests and benchmarks (``apt-get install qemu-user``). Slow (emulated), exact.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgebert.errors import EdgeBertError

# Haswell without the features QEMU's TCG cannot emulate (they only make it print warnings)
AVX2_CPU = "Haswell-noTSX,-pcid,-x2apic,-tsc-deadline,-invpcid"


@dataclass(frozen=True)
class KernelPath:
    name: str  # "x86-vnni" | "x86-avx2" | "x86-avx512bw" | "x86-sse" | "arm64" | "unknown"
    exact: bool  # does u8 x s8 accumulate exactly whatever the codes?
    description: str

    def to_dict(self) -> dict:
        return {"name": self.name, "exact_u8s8": self.exact, "description": self.description}


def _x86_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def integer_kernel(flags: set[str] | None = None, machine: str | None = None) -> KernelPath:
    """The u8 x s8 GEMM path ONNX Runtime takes here (from /proc/cpuinfo flags on Linux)."""
    machine = (machine or platform.machine()).lower()
    if machine in ("aarch64", "arm64"):
        return KernelPath("arm64", True, "ARM64 (UDOT/SDOT or widening multiply): exact int32 accumulation")
    if machine not in ("x86_64", "amd64", "x64"):
        return KernelPath("unknown", False, f"{machine}: integer kernel path unknown")
    flags = _x86_flags() if flags is None else flags
    if not flags:
        return KernelPath("unknown", False, "x86-64 with unknown CPU features (no /proc/cpuinfo)")
    if flags & {"avx512_vnni", "avx_vnni"}:
        return KernelPath("x86-vnni", True, "x86-64 with VNNI (VPDPBUSD): exact int32 accumulation")
    if "avx512bw" in flags:
        return KernelPath("x86-avx512bw", False, "x86-64 AVX-512BW without VNNI (VPMADDUBSW): "
                          "u8 x s8 product pairs saturate at int16")
    if "avx2" in flags:
        return KernelPath("x86-avx2", False, "x86-64 AVX2 without VNNI (VPMADDUBSW): "
                          "u8 x s8 product pairs saturate at int16")
    return KernelPath("x86-sse", True, "x86-64 SSE (16-bit widening multiply): exact int32 accumulation")


def qemu_x86() -> str | None:
    """The qemu-x86_64 user-mode emulator, when installed on an x86-64 Linux host."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return None
    return shutil.which("qemu-x86_64")


_RUNNER = """
import sys, numpy as np, onnxruntime as ort
model, feeds_path, out_path = sys.argv[1:4]
opts = ort.SessionOptions(); opts.intra_op_num_threads = 1; opts.inter_op_num_threads = 1
opts.log_severity_level = 3
sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
with np.load(feeds_path, allow_pickle=False) as f:
    arrays = {k: f[k] for k in f.files}
names = [o.name for o in sess.get_outputs()]
out = {}
for b in sorted({k.split("/")[0] for k in arrays}, key=int):
    feeds = {k.split("/", 1)[1]: v for k, v in arrays.items() if k.split("/")[0] == b}
    out.update({b + "/" + n: v for n, v in zip(names, sess.run(None, feeds))})
np.savez(out_path, **out)
"""


def run_as_cpu(model: bytes | str | Path, feeds: dict[str, np.ndarray] | list[dict[str, np.ndarray]],
               cpu: str = AVX2_CPU, timeout: float = 600.0) -> Any:
    """Run ``model`` on ``feeds`` in ONNX Runtime (one thread) under ``qemu-x86_64 -cpu CPU``.

    ``feeds`` is one dict of inputs (returns one dict of outputs) or a list of them (returns a
    list; one emulator start for all)."""
    qemu = qemu_x86()
    if qemu is None:
        raise EdgeBertError("run_as_cpu: expected qemu-x86_64 on an x86-64 host (apt-get install qemu-user), found none")
    with tempfile.TemporaryDirectory(prefix="edgebert-cpu-") as tmp:
        work = Path(tmp)
        model_path = work / "model.onnx"
        if isinstance(model, bytes):
            model_path.write_bytes(model)
        else:
            model_path = Path(model)
        batches = feeds if isinstance(feeds, list) else [feeds]
        np.savez(work / "feeds.npz", **{f"{i}/{k}": v for i, b in enumerate(batches) for k, v in b.items()})
        python = os.path.realpath(sys.executable)
        cmd = [qemu, "-cpu", cpu, python, "-c", _RUNNER, str(model_path), str(work / "feeds.npz"), str(work / "out.npz")]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
        if proc.returncode != 0:
            tail = proc.stderr.strip().splitlines()[-1:] or ["(no output)"]
            raise EdgeBertError(f"run_as_cpu: expected ONNX Runtime to run under qemu -cpu {cpu}, found exit "
                                f"{proc.returncode}: {tail[0]}")
        with np.load(work / "out.npz", allow_pickle=False) as f:
            outs = [{k.split("/", 1)[1]: f[k] for k in f.files if k.split("/")[0] == str(i)} for i in range(len(batches))]
        return outs if isinstance(feeds, list) else outs[0]
