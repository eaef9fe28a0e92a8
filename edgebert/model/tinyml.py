"""TinyML nets beside BERT: small MLPs for the sine-wave and 8x8-digits tasks.

- sine: regression y = A sin(x + phase), A in [0.1, 5], phase in [0, pi], x in [-5, 5], the task
  family of MAML (Finn et al., 2017) and Reptile (Nichol et al., 2018); net 1 -> 40 -> 40 -> 1.
- digits: scikit-learn's bundled 8x8 handwritten digits (offline), pixels scaled to [0, 1];
  net 64 -> 32 -> 32 -> 10.

A model directory holds ``config.json`` (``model_type: edgebert-mlp``) and ``model.safetensors``
(``layers.{i}.weight`` (out, in), ``layers.{i}.bias``); training runs on the host in torch.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edgebert.errors import CheckpointError
from edgebert.model.tasks import MODEL_TYPE, TASKS, MlpConfig, default_config, sine_batch, sine_task  # noqa: F401


# ------------------------------------------------------------------ data
def digits_data() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled digits: X (1797, 64) in [0, 1], y (1797,) int64."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.data / 16.0).astype(np.float32), d.target.astype(np.int64)


# ------------------------------------------------------------------ model dir I/O
def save_mlp(out_dir: Path, cfg: MlpConfig, weights: dict[str, np.ndarray], extra: dict | None = None) -> Path:
    from safetensors.numpy import save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    save_file({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in weights.items()}, str(out_dir / "model.safetensors"))
    (out_dir / "config.json").write_text(json.dumps({**cfg.to_dict(), **(extra or {})}, indent=2))
    return out_dir


def load_mlp(model_dir: Path) -> tuple[MlpConfig, dict[str, np.ndarray]]:
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        raw = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{model_dir}: expected config.json, found no such file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{model_dir / 'config.json'}: expected JSON, found a parse error ({exc})") from None
    cfg = MlpConfig.from_dict(raw)
    path = model_dir / "model.safetensors"
    if not path.is_file():
        raise CheckpointError(f"{model_dir}: expected model.safetensors, found no weights file")
    try:
        weights = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{path}: expected a safetensors file, found a corrupt one ({exc})") from None
    sizes = cfg.sizes
    for i in range(len(sizes) - 1):
        for name, shape in ((f"layers.{i}.weight", (sizes[i + 1], sizes[i])), (f"layers.{i}.bias", (sizes[i + 1],))):
            if name not in weights:
                raise CheckpointError(f"{path}: expected tensor {name}, found none")
            if tuple(weights[name].shape) != shape:
                raise CheckpointError(f"{path}: expected {name} of shape {shape}, found {tuple(weights[name].shape)}")
    return cfg, weights


def is_mlp_dir(model_dir: Path) -> bool:
    try:
        return json.loads((model_dir / "config.json").read_text(encoding="utf-8")).get("model_type") == MODEL_TYPE
    except (OSError, json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return False


# ------------------------------------------------------------------ host-side training (torch)
def train(task: str, out_dir: Path, seed: int = 0, steps: int | None = None) -> tuple[Path, dict]:
    """Train the task's MLP on the host; write the model dir and a calibration set (calibration.npy)."""
    import torch
    from torch import nn

    cfg = default_config(task)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    sizes = cfg.sizes
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    net = nn.Sequential(*layers)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3 if task == "sine" else 3e-3)
    if task == "sine":
        # the "average task" pre-training a single-task learner would do: many tasks, one net
        steps = steps or 3000
        for _ in range(steps):
            amp, phase = sine_task(rng)
            x, y = sine_batch(rng, amp, phase, 10)
            loss = nn.functional.mse_loss(net(torch.from_numpy(x)), torch.from_numpy(y))
            opt.zero_grad()
            loss.backward()
            opt.step()
        calib = rng.uniform(-5.0, 5.0, (512, 1)).astype(np.float32)
        xs, ys = sine_batch(rng, 1.0, 0.0, 200)
        with torch.no_grad():
            metric = {"mse_on_sin_x": float(nn.functional.mse_loss(net(torch.from_numpy(xs)), torch.from_numpy(ys)))}
    else:
        x_all, y_all = digits_data()
        order = rng.permutation(len(x_all))
        train_idx, test_idx = order[:1400], order[1400:]
        xt, yt = torch.from_numpy(x_all[train_idx]), torch.from_numpy(y_all[train_idx])
        steps = steps or 600
        for _ in range(steps):
            idx = torch.from_numpy(rng.integers(0, len(xt), 64))
            loss = nn.functional.cross_entropy(net(xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            pred = net(torch.from_numpy(x_all[test_idx])).argmax(1).numpy()
        metric = {"test_accuracy": float((pred == y_all[test_idx]).mean()), "test_samples": len(test_idx)}
        calib = x_all[train_idx[:512]]
    linears = [m for m in net if isinstance(m, nn.Linear)]
    weights = {}
    for i, lin in enumerate(linears):
        weights[f"layers.{i}.weight"] = lin.weight.detach().numpy()
        weights[f"layers.{i}.bias"] = lin.bias.detach().numpy()
    save_mlp(out_dir, cfg, weights, extra={"training": {"steps": steps, "seed": seed, **metric}})
    np.save(out_dir / "calibration.npy", calib, allow_pickle=False)
    return out_dir, metric
