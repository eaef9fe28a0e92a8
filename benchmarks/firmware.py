"""Firmware: our C99 build on a Cortex-M4 vs the same model's .tflite in TensorFlow Lite Micro.

For the sine (1-40-40-1) and digits (64-32-32-10) int8 nets, trained and converted here (seed 0):
- TFLM: the .tflite our writer makes, run by the ``tflite-micro`` interpreter (x86-64 reference
  kernels): file bytes, the smallest arena it runs in (found by trying), and flash = file + the
  TFLM core runtime, counted as 16 KB: TensorFlow's own figure for the core on a Cortex-M3 ("The
  core runtime just fits in 16 KB on an Arm Cortex M3", tensorflow.org/lite/microcontrollers),
  a lower bound: the kernels it needs (FULLY_CONNECTED, QUANTIZE, MUL) come on top. TFLM cannot be
  built for a Cortex-M offline here (its Makefile downloads its dependencies).
- C99: ``edgebert export --target c``: flash = text + data of a bare Cortex-M4 image running one
  inference (start-up, model, kernels, libm's roundf), RAM = the model's static arena + the stack
  peak of one inference (painted stack, QEMU), instructions per inference from SysTick under
  ``qemu-system-arm -M mps2-an386 -icount shift=0`` (calibrated on a loop of known length).
- Agreement: TFLM vs the C host build on 2,000 inputs, and the Cortex-M4 build vs the host build
  on the same 2,000 (bit-exact means every int8 output equal).
- Head learning (digits, 32 -> 10): 300 SGD steps of the C head on the Cortex-M4 vs OnlineLearner
  in numpy (max abs weight difference), its RAM and instructions per step.

    python benchmarks/firmware.py [--out benchmarks/results/firmware.json]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import finish

from edgebert.converter import convert
from edgebert.graph.form import Graph
from edgebert.model.tinyml import digits_data, train
from edgebert.runtime.firmware import Firmware
from edgebert.runtime.online import OnlineLearner
from firmware_export import c99, m4, program, tflite, tflm
from firmware_export.export import export
from firmware_export.lower import lower_mlp

HEAD_STEPS, HEAD_LR = 300, 0.05


def inputs(task: str) -> np.ndarray:
    if task == "sine":
        return np.linspace(-6.0, 6.0, 2000, dtype=np.float32)[:, None]
    x, _ = digits_data()
    noisy = np.clip(x[:203] + np.random.default_rng(1).normal(0, 0.8, (203, 64)), -1.5, 2.5)
    return np.concatenate([x, noisy]).astype(np.float32)


def net(task: str, work: Path) -> dict:
    model_dir, _ = train(task, work / task, seed=0)
    art = convert(model_dir, work / f"{task}-int8", "int8", model_dir / "calibration.npy", measure=False)
    m = lower_mlp(Graph.load(art.path / "graph.safetensors"))
    data = tflite.to_tflite(m)
    arena = tflm.arena_bytes(data, m.input_dim)
    x = inputs(task)
    t_f, t_o = tflm.run(data, x, arena)
    fw_art = export(art.path, "c", work / f"{task}-c", device="cortex-m4", lr=HEAD_LR)
    fw = Firmware(fw_art.artifact.path)
    h_f, h_o = fw.infer(x)
    labels = np.arange(len(x)) % m.output_dim
    run = m4.measure(c99.sources(m, task), x, labels, lr=HEAD_LR, learn=False)
    fig = fw_art.firmware["figures"]
    return {
        "task": task, "shape": f"{m.input_dim}-" + "-".join(str(lay.weight.shape[0]) for lay in m.layers),
        "weights_bytes": int(sum(lay.weight.size for lay in m.layers)),
        "tflm": {"model_bytes": len(data), "arena_bytes": arena, "flash_lower_bound": len(data) + tflm.TFLM_CORE_FLASH},
        "c99": {"flash_bytes": fig["inference_flash_bytes"], "ram_bytes": fig["inference_ram_bytes"],
                "arena_bytes": fig["arena_bytes"], "stack_bytes": fig["stack_bytes"],
                "instructions_per_inference": run.figures.instructions_per_inference,
                "learn_flash_bytes": fig["learn_flash_bytes"], "learn_ram_bytes": fig["learn_ram_bytes"]},
        "agreement": {"inputs": len(x),
                      "tflm_vs_reference": int((t_o != program.run(m, x)[1]).sum() + (t_f != program.run(m, x)[0]).sum()),
                      "tflm_vs_c_host": int((t_o != h_o).sum() + (t_f != h_f).sum()),
                      "m4_vs_c_host": int((run.outputs != h_o).sum() + (run.features != h_f).sum())},
        "model": m, "firmware": fw, "sources": c99.sources(m, task),
    }


def head(result: dict) -> dict:
    """300 C head steps on the Cortex-M4 vs OnlineLearner on the same features."""
    x, y = digits_data()
    idx = np.random.default_rng(0).permutation(len(x))[:HEAD_STEPS]
    run = m4.measure(result["sources"], x[idx], y[idx], lr=HEAD_LR, normalize=True)
    fw: Firmware = result["firmware"]
    learner = OnlineLearner(fw.feature_dim, fw.output_dim, (), "xent", "sgd", HEAD_LR, labels=list(range(10)))
    for f, label in zip(fw.features(x[idx]), y[idx], strict=True):
        learner.predict_one(f)
        learner.learn_one(f, int(label))
    diff = max(float(np.abs(run.head_weights - learner.W[0]).max()), float(np.abs(run.head_bias - learner.b[0]).max()))
    return {"steps": HEAD_STEPS, "max_abs_weight_diff": diff, "state_bytes": run.figures.head_state_bytes,
            "ram_bytes": run.figures.head_state_bytes + run.figures.learn_stack_bytes,
            "instructions_per_step": run.figures.instructions_per_learning_step}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="benchmarks/results/firmware.json")
    args = ap.parse_args()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        rows = {task: net(task, Path(tmp)) for task in ("sine", "digits")}
        learning = head(rows["digits"])
    print(f"\nint8 MLPs: TFLite Micro (our .tflite, tflite-micro {tflm_version()}) vs our C99 on a Cortex-M4 "
          "(arm-none-eabi-gcc -O2, QEMU mps2-an386 -icount shift=0)")
    head_row = (f"{'net':<20}{'weights':>9}{'.tflite':>9}{'TFLM arena':>12}{'TFLM flash>=':>14}{'C flash':>9}"
                f"{'C RAM':>7}{'flash x':>9}{'RAM x':>7}{'instr/inf':>11}  agreement (2,000 inputs)")
    print(head_row + "\n" + "-" * (len(head_row) + 24))
    for task, r in rows.items():
        t, c, a = r["tflm"], r["c99"], r["agreement"]
        agree = ("bit-exact" if a["tflm_vs_c_host"] == 0 and a["m4_vs_c_host"] == 0 and a["tflm_vs_reference"] == 0
                 else f"{a}")
        print(f"{task + ' ' + r['shape']:<20}{r['weights_bytes']:>9,}{t['model_bytes']:>9,}{t['arena_bytes']:>12,}"
              f"{t['flash_lower_bound']:>14,}{c['flash_bytes']:>9,}{c['ram_bytes']:>7,}"
              f"{c['flash_bytes'] / t['flash_lower_bound']:>9.2f}{c['ram_bytes'] / t['arena_bytes']:>7.2f}"
              f"{c['instructions_per_inference']:>11,}  {agree} (TFLM = C host = Cortex-M4)")
    print(f"\nC head learning (digits features 32 -> 10, SGD lr {HEAD_LR}), Cortex-M4: {learning['steps']} steps, "
          f"max |W_c - W_OnlineLearner| = {learning['max_abs_weight_diff']:.2e}; state {learning['state_bytes']:,} B, "
          f"RAM with the step's stack {learning['ram_bytes']:,} B; {learning['instructions_per_step']:,} instructions "
          f"per step")
    d = rows["digits"]
    print(f"digits with head learning: flash {d['c99']['learn_flash_bytes']:,} B, RAM {d['c99']['learn_ram_bytes']:,} B "
          f"(libm's expf/logf/sqrtf come in); wall {time.perf_counter() - t0:.0f} s")
    exact = all(r["agreement"][k] == 0 for r in rows.values() for k in ("tflm_vs_reference", "tflm_vs_c_host",
                                                                        "m4_vs_c_host"))
    targets = {
        "digits bit-exact with TFLM, C host = Cortex-M4 (2,000 inputs)": exact,
        "digits C flash <= 0.5x (.tflite + TFLM core)": d["c99"]["flash_bytes"] <= 0.5 * d["tflm"]["flash_lower_bound"],
        "digits C RAM <= 0.5x TFLM arena": d["c99"]["ram_bytes"] <= 0.5 * d["tflm"]["arena_bytes"],
        "digits <= 30k instructions per inference": d["c99"]["instructions_per_inference"] <= 30_000,
        "head within 1e-5 of OnlineLearner after 300 steps": learning["max_abs_weight_diff"] <= 1e-5,
        "head (32 -> 10) in <= 4 KB RAM": learning["ram_bytes"] <= 4096,
    }
    clean = {task: {k: v for k, v in r.items() if k not in ("model", "firmware", "sources")} for task, r in rows.items()}
    return finish(targets, {"nets": clean, "head": learning, "tflm_core_flash_assumed": tflm.TFLM_CORE_FLASH}, args.out)


def tflm_version() -> str:
    from importlib.metadata import version

    return version("tflite-micro")


if __name__ == "__main__":
    sys.exit(main())
