"""Binarization-aware distillation of a TinyML MLP from itself (host, torch).

The teacher is the fp32 net; the student is the same net whose linears see 1-bit weights (and, for
"w1a1", 1-bit inputs) through the straight-through estimator (``distill.student.binarize_student``'s
parametrization). On unlabeled inputs (a converter's calibration array) the student learns the
teacher's outputs: softened class probabilities (KL divergence at temperature 2, Hinton et al.) for a
classifier, the outputs themselves (MSE) for a regressor. Half of every batch is mixup of two
calibration rows (Zhang et al. 2018), which the teacher labels: a few hundred rows become an
unbounded supply of inputs near the data. Adam with a cosine decay over the
budget; batch ``b`` is drawn from (seed, b) alone, so a run is deterministic. A TinyML net trains in
seconds: no resume state is kept. The written model directory holds the latent float weights,
which the binary conversion binarizes to exactly what was trained.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgebert.errors import InputError
from edgebert.progress import Progress, silent

TEMPERATURE = 2.0


def distill_mlp(teacher_dir: str | Path, inputs: np.ndarray, out_dir: str | Path, binarize: str = "w1a8", *,
                steps: int | None = None, minutes: float | None = None, lr: float = 3e-3, batch_size: int = 64,
                seed: int = 0, progress: Progress = silent) -> dict[str, Any]:
    import torch
    from torch import nn

    from edgebert.distill.student import binarize_linears, plain_state
    from edgebert.model.tinyml import load_mlp, save_mlp

    if steps is None and minutes is None:
        raise InputError("distill: expected --steps N or --minutes N, found neither")
    if (steps is not None and steps < 1) or (minutes is not None and not minutes > 0):
        raise InputError(f"distill: expected a positive --steps/--minutes, found {steps}/{minutes}")
    x_all = np.asarray(inputs, np.float32)
    cfg, weights = load_mlp(Path(teacher_dir))
    if x_all.ndim != 2 or x_all.shape[1] != cfg.input_dim or not len(x_all) or not np.isfinite(x_all).all():
        raise InputError(f"inputs: expected finite (rows, {cfg.input_dim}) values, found {x_all.shape}")
    torch.manual_seed(seed)

    def net() -> nn.Module:
        layers: list[nn.Module] = []
        for i in range(len(cfg.sizes) - 1):
            lin = nn.Linear(cfg.sizes[i], cfg.sizes[i + 1])
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(weights[f"layers.{i}.weight"]))
                lin.bias.copy_(torch.from_numpy(weights[f"layers.{i}.bias"]))
            layers += [lin, nn.ReLU()] if i < len(cfg.sizes) - 2 else [lin]
        return nn.Sequential(*layers)

    teacher, student = net().eval(), binarize_linears(net(), binarize)
    opt = torch.optim.Adam(student.parameters(), lr=lr)
    x = torch.from_numpy(x_all)
    with torch.no_grad():
        target = teacher(x)
    total = steps if steps is not None else math.inf
    started, step, curve = time.monotonic(), 0, []

    def loss_of(out: torch.Tensor, want: torch.Tensor) -> torch.Tensor:
        if cfg.loss == "xent":
            return nn.functional.kl_div(nn.functional.log_softmax(out / TEMPERATURE, -1),
                                        nn.functional.log_softmax(want / TEMPERATURE, -1), log_target=True,
                                        reduction="batchmean") * TEMPERATURE ** 2
        return nn.functional.mse_loss(out, want)

    def agreement() -> float:
        with torch.no_grad():
            out = student(x)
        if cfg.loss == "xent":
            return float((out.argmax(1) == target.argmax(1)).float().mean())
        return float(-nn.functional.mse_loss(out, target))

    while step < total:
        elapsed = time.monotonic() - started
        if minutes is not None and elapsed >= minutes * 60:
            break
        frac = step / steps if steps is not None else elapsed / (minutes * 60)  # type: ignore[operator]
        for group in opt.param_groups:
            group["lr"] = lr * 0.5 * (1.0 + math.cos(math.pi * min(frac, 1.0)))
        rng = np.random.default_rng([seed, step])
        idx = torch.from_numpy(rng.integers(0, len(x_all), batch_size))
        other = torch.from_numpy(rng.integers(0, len(x_all), batch_size))
        lam = torch.from_numpy(rng.uniform(0.0, 1.0, (batch_size, 1)).astype(np.float32))
        mixed = lam * x[idx] + (1 - lam) * x[other]  # mixup: new unlabeled inputs the teacher labels
        batch = torch.cat([x[idx], mixed])
        with torch.no_grad():
            want = teacher(batch)
        loss = loss_of(student(batch), want)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        if step % 100 == 0 or step == total:
            curve.append({"step": step, "seconds": round(time.monotonic() - started, 2), "agreement": agreement()})
        progress("distill (binarization-aware)", step, int(total) if total != math.inf else step)
    state = plain_state(student)
    linears = [i for i, m in enumerate(student) if isinstance(m, nn.Linear)]
    latent = {}
    for j, i in enumerate(linears):
        latent[f"layers.{j}.weight"], latent[f"layers.{j}.bias"] = state[f"{i}.weight"], state[f"{i}.bias"]
    report = {"teacher": str(Path(teacher_dir).resolve()), "steps": step,
              "seconds": round(time.monotonic() - started, 2), "binarize": binarize,
              "metric": "argmax agreement with the teacher" if cfg.loss == "xent" else "-MSE to the teacher",
              "final": agreement(), "curve": curve}
    save_mlp(Path(out_dir), cfg, latent, extra={"distill": report})
    return report


__all__ = ["distill_mlp"]
