"""TensorFlow Lite Micro: the bundle a TFLM application compiles in, and the arena it needs.

``bundle_files`` formats the .tflite as a 16-byte aligned C array (``model_data.c/.h``) and the
``MicroMutableOpResolver`` registration of exactly the ops the model uses (``edgebert_ops.h``).
``arena_bytes`` measures the tensor arena by trying it: the smallest size (to 16 bytes) with which
the ``tflite-micro`` interpreter allocates and runs the model (each try in a forked child, since
TFLM crashes on arenas too small for its own structures); its recording allocator under-reports,
so it is not asked. That interpreter is a 64-bit build, whose structures hold
8-byte pointers: a 32-bit target needs no more, and the recommended size adds a 10% margin.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from edgebert.errors import ArtifactError, ToolchainError

RESOLVER_CALLS = {"MUL": "AddMul", "QUANTIZE": "AddQuantize", "FULLY_CONNECTED": "AddFullyConnected",
                  "DEQUANTIZE": "AddDequantize", "SOFTMAX": "AddSoftmax", "LOGISTIC": "AddLogistic",
                  "GATHER": "AddGather", "ADD": "AddAdd", "SUB": "AddSub", "MEAN": "AddMean", "RSQRT": "AddRsqrt",
                  "RESHAPE": "AddReshape", "TRANSPOSE": "AddTranspose", "BATCH_MATMUL": "AddBatchMatMul",
                  "CAST": "AddCast"}
# TFLM's README: "The core runtime just fits in 16 KB on an Arm Cortex M3" - a lower bound on the
# interpreter's flash without kernels (no TFLM build for Cortex-M is possible offline here).
TFLM_CORE_FLASH = 16 * 1024
MARGIN = 0.10


def interpreter(model: bytes, arena: int) -> Any:  # noqa: ANN401 - tflite_micro's Interpreter
    try:
        from tflite_micro.python.tflite_micro import runtime
    except ImportError:
        raise ToolchainError("--target tflm: expected the TFLite Micro interpreter (pip install tflite-micro), "
                             "found none") from None
    return runtime.Interpreter.from_bytes(model, arena_size=arena)


@contextmanager
def quiet() -> Iterator[None]:
    """File descriptors 1 and 2 to /dev/null: TFLM's C++ prints every failed allocation."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, null):
            os.close(fd)


def _runs(model: bytes, arena: int, xs: list[np.ndarray]) -> bool:
    """Whether TFLM allocates and runs ``model`` in ``arena`` bytes, tried in a forked child: with a
    very small arena the interpreter crashes (SIGSEGV) instead of reporting the failure."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        import faulthandler

        faulthandler.disable()  # a crash here is an answer, not a report
        code = 1
        try:
            interp = interpreter(model, arena)
            for i, x in enumerate(xs):
                interp.set_input(x, i)
            interp.invoke()
            code = 0
        except BaseException:  # noqa: BLE001, S110 - any failure means: this arena does not work
            pass
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def arena_bytes(model: bytes, input_dim: int | None = None, ceiling: int = 1 << 20,
                inputs: list[np.ndarray] | None = None) -> int:
    """The smallest arena (a multiple of 16) with which TFLM allocates and runs ``model`` on
    ``inputs`` (default: one float row of ``input_dim`` zeros)."""
    x = inputs if inputs is not None else [np.zeros((1, input_dim or 0), np.float32)]
    interpreter(model, ceiling)  # the import (a ToolchainError when missing) here, once, not in every child
    with quiet():
        if not _runs(model, ceiling, x):
            raise ArtifactError(f"TFLM: expected the model to run with a {ceiling}-byte arena, found it does not")
        lo, hi = 0, ceiling // 16  # in units of 16 bytes: lo fails (or is 0), hi works
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if _runs(model, mid * 16, x):
                hi = mid
            else:
                lo = mid
    return hi * 16


def recommended_arena(measured: int) -> int:
    return int(-(-int(measured * (1 + MARGIN)) // 16) * 16)


def run(model: bytes, x: np.ndarray, arena: int) -> tuple[np.ndarray, np.ndarray]:
    """int8 (features, output) of every row of ``x`` in the TFLM interpreter."""
    interp = interpreter(model, arena)
    feats, outs = [], []
    for row in np.asarray(x, np.float32):
        interp.set_input(row[None], 0)
        interp.invoke()
        feats.append(np.array(interp.get_output(0))[0])
        outs.append(np.array(interp.get_output(1))[0])
    return np.array(feats, np.int8), np.array(outs, np.int8)


def bundle_files(model: bytes, ops: list[str], arena: int, origin: str) -> dict[str, str]:
    """model_data.c/.h and edgebert_ops.h for a TFLM application."""
    hexes = [f"0x{b:02x}" for b in model]
    rows = ",\n    ".join(", ".join(hexes[i:i + 16]) for i in range(0, len(hexes), 16))
    header = (f"/* model_data.h - generated by edgebert's firmware export from {origin}; do not edit. */\n"
              "#ifndef EDGEBERT_MODEL_DATA_H\n#define EDGEBERT_MODEL_DATA_H\n\n"
              "#ifdef __cplusplus\nextern \"C\" {\n#endif\n"
              "extern const unsigned char edgebert_model_data[];\nextern const unsigned int edgebert_model_data_len;\n"
              "#ifdef __cplusplus\n}\n#endif\n\n#endif\n")
    source = (f"/* model_data.c - generated by edgebert's firmware export from {origin}; do not edit.\n"
              " * The .tflite flatbuffer, 16-byte aligned as TFLM expects. */\n"
              '#include "model_data.h"\n\n'
              "#if defined(__GNUC__) || defined(__clang__)\n#define EB_ALIGNED __attribute__((aligned(16)))\n"
              "#else\n#define EB_ALIGNED\n#endif\n\n"
              f"const unsigned char edgebert_model_data[{len(model)}] EB_ALIGNED = {{\n    {rows}\n}};\n"
              f"const unsigned int edgebert_model_data_len = {len(model)};\n")
    unknown = [op for op in ops if op not in RESOLVER_CALLS]
    if unknown:
        raise ArtifactError(f"TFLM bundle: expected ops TFLM registers, found {unknown}")
    calls = "\n".join(f"  if (r.{RESOLVER_CALLS[op]}() != kTfLiteOk) return kTfLiteError;" for op in ops)
    resolver = (f"// edgebert_ops.h - generated by edgebert's firmware export from {origin}; do not edit.\n"
                "// The ops this model needs, and the tensor arena it was measured to need (+10%).\n"
                "#ifndef EDGEBERT_OPS_H\n#define EDGEBERT_OPS_H\n\n"
                '#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"\n\n'
                f"constexpr int kEdgebertOpCount = {len(ops)};\n"
                f"constexpr unsigned int kEdgebertArenaSize = {arena};\n\n"
                "inline TfLiteStatus EdgebertRegisterOps(tflite::MicroMutableOpResolver<kEdgebertOpCount>& r) {\n"
                f"{calls}\n  return kTfLiteOk;\n}}\n\n#endif\n")
    return {"model_data.h": header, "model_data.c": source, "edgebert_ops.h": resolver}


__all__ = ["TFLM_CORE_FLASH", "arena_bytes", "bundle_files", "recommended_arena", "run"]
