"""Per-device tasks for federated meta-learning, and few-shot evaluation (numpy only).

- sine: device ``i`` is one task y = A sin(x + phase), A in [0.1, 5], phase in [0, pi],
  x in [-5, 5] (MAML / Reptile); each round it draws fresh x from its own task.
- digits: device ``i`` sees the 8x8 digits through its own sensor: a per-device gain/offset and a
  small rotation; labels are the digits. (The digits arrays are passed in: sklearn stays on the host.)
Evaluation: from given initial weights, adapt with ``shots`` samples of an unseen device for
``steps`` SGD steps, then measure on fresh samples of that device.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgebert.model.tasks import default_config, sine_batch, sine_task
from edgebert.runtime.online import OnlineLearner


def new_learner(task: str, lr: float = 0.01, seed: int = 0, optimizer: str = "sgd") -> OnlineLearner:
    cfg = default_config(task)  # the same net the host trains and converts
    d_in, hidden, d_out, loss = cfg.input_dim, cfg.hidden, cfg.n_outputs, cfg.loss
    learner = OnlineLearner(d_in, d_out, hidden, loss, optimizer, lr, seed=seed,
                            labels=list(range(d_out)) if loss == "xent" else None,
                            normalize=False)  # weights mean the same on every device: no per-device statistics
    if loss == "mse":  # a regression head starting at zero would learn nothing below it; small random init
        rng = np.random.default_rng(seed + 7)
        learner.W[-1] = (rng.standard_normal(learner.W[-1].shape) * np.sqrt(1.0 / learner.W[-1].shape[0])).astype(
            np.float32)
    else:
        rng = np.random.default_rng(seed + 7)
        learner.W[-1] = (rng.standard_normal(learner.W[-1].shape) * 0.1).astype(np.float32)
    return learner


@dataclass(frozen=True)
class DeviceTask:
    task: str
    device_seed: int
    digits_x: np.ndarray | None = None
    digits_y: np.ndarray | None = None

    def _params(self) -> tuple[float, float]:
        rng = np.random.default_rng(self.device_seed)
        if self.task == "sine":
            return sine_task(rng)
        return float(rng.uniform(0.5, 1.0)), float(rng.uniform(-0.3, 0.3))  # gain, offset

    def round_data(self, round_: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The device's own ``n`` samples for a round (deterministic in device and round)."""
        return self.sample(n, np.random.default_rng([self.device_seed, round_]))

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        a, b = self._params()
        if self.task == "sine":
            return sine_batch(rng, a, b, n)
        assert self.digits_x is not None and self.digits_y is not None
        idx = rng.integers(0, len(self.digits_x), n)
        x = np.clip(a * self.digits_x[idx] + b, 0.0, 1.0).astype(np.float32)
        shift = np.random.default_rng(self.device_seed + 1).integers(0, 2)
        if shift:  # half the devices see the image one pixel to the right
            im = x.reshape(-1, 8, 8)
            moved = np.zeros_like(im)
            moved[:, :, 1:] = im[:, :, :-1]
            x = moved.reshape(-1, 64)
        return x, self.digits_y[idx]


def adapt(learner: OnlineLearner, x: np.ndarray, y: np.ndarray, steps: int, batch: int | None = None,
          rng: np.random.Generator | None = None) -> OnlineLearner:
    """``steps`` gradient steps on (x, y), full batch or random minibatches."""
    for _ in range(steps):
        if batch and batch < len(x) and rng is not None:
            idx = rng.integers(0, len(x), batch)
            learner.learn_many(x[idx], y[idx])
        else:
            learner.learn_many(x, y)
    return learner


def few_shot_score(task: str, init: dict[str, np.ndarray], tasks: list[DeviceTask], shots: int = 10,
                   steps: int = 32, lr: float = 0.01, seed: int = 0) -> float:
    """Mean MSE (sine) or accuracy (digits) on unseen devices after ``shots``-shot adaptation."""
    scores = []
    for i, t in enumerate(tasks):
        rng = np.random.default_rng(seed + 1000 + i)
        learner = new_learner(task, lr)
        learner.set_weights(init)
        x, y = t.sample(shots, rng)
        adapt(learner, x, y, steps)
        xt, yt = t.sample(200, rng)
        if task == "sine":
            scores.append(float(((learner.predict(xt) - yt) ** 2).mean()))
        else:
            scores.append(float(np.mean(np.array(learner.predict(xt)) == yt)))
    return float(np.mean(scores))
