"""On-device online learning (TinyOL, Ren et al. 2021): small dense nets in float32 numpy.

Forward and backward passes are written by hand (no autograd) and checked against finite
differences in the tests. Method names follow river, the online-learning library:
``learn_one``/``learn_many`` return the loss before the update, ``predict_one``/``predict``/
``predict_proba``. Classification labels are any str/int; an unseen label adds a class (a new
output unit) at run time. ``get_weights``/``set_weights`` exchange named arrays
(``layers.{i}.weight`` (out, in), ``layers.{i}.bias``) for federated learning; ``save``/``load``
write safetensors atomically (weights, optimizer state, replay buffer, labels).

Inputs are standardized online by default (``normalize=True``: running mean and variance with a
time constant of ~100 samples, as river's ``StandardScaler`` in front of a model): a drift in
input offset or gain is absorbed by the statistics and the net learns on centred inputs, which
recovers faster after strong drifts. ``get_weights`` folds the standardization into the first
layer (the weights act on raw inputs) and ``set_weights`` unfolds it; a net given pretrained
weights (``from_weights``) keeps its raw inputs unless asked otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgebert.errors import InputError
from edgebert.runtime import mlp, replay
from edgebert.runtime.inputs import as_features, as_targets
from edgebert.runtime.standardize import ema_update, variance_floor

LOSSES = ("xent", "mse")
OPTIMIZERS = ("sgd", "adam")
# Defaults chosen by a sweep on digits streams with strong drifts (inverted contrast, permuted
# pixels; benchmarks/online_learning.py --sweep): Adam at 5e-3 on standardized inputs, no replay
# (a reservoir of the whole stream replays pre-drift samples and slows recovery).
DEFAULT_OPTIMIZER = "adam"
DEFAULT_LR = 5e-3
NORM_BETA = 0.99
TINY = np.float32(1e-30)
NORM_FLOOR = 1e-2  # variance floor, relative to the mean variance: constant inputs are not blown up


class OnlineLearner:
    def __init__(self, input_dim: int, n_outputs: int, hidden: Sequence[int] = (), loss: str = "xent",
                 optimizer: str = DEFAULT_OPTIMIZER, lr: float = DEFAULT_LR, replay: int = 0, replay_batch: int = 8,
                 momentum: float = 0.0, seed: int = 0, labels: Sequence[Hashable] | None = None,
                 normalize: bool = True) -> None:
        if loss not in LOSSES:
            raise InputError(f"loss: expected one of {LOSSES}, found {loss!r}")
        if optimizer not in OPTIMIZERS:
            raise InputError(f"optimizer: expected one of {OPTIMIZERS}, found {optimizer!r}")
        if input_dim <= 0 or n_outputs < 0 or any(h <= 0 for h in hidden) or lr <= 0:
            raise InputError(f"OnlineLearner: expected positive sizes and lr, found input_dim={input_dim}, "
                             f"n_outputs={n_outputs}, hidden={tuple(hidden)}, lr={lr}")
        self.input_dim, self.loss, self.optimizer, self.lr = input_dim, loss, optimizer, float(lr)
        self.hidden = tuple(int(h) for h in hidden)
        self.momentum = float(momentum)
        self._rng = np.random.default_rng(seed)
        sizes = [input_dim, *self.hidden, n_outputs]
        # W (in, out) for x @ W; He init for ReLU layers, zeros for the output layer (a new head starts neutral)
        self.W: list[np.ndarray] = []
        self.b: list[np.ndarray] = []
        for i, (n_in, n_out) in enumerate(zip(sizes, sizes[1:], strict=False)):
            last = i == len(sizes) - 2
            scale = 0.0 if last else np.sqrt(2.0 / n_in)
            self.W.append((self._rng.standard_normal((n_in, n_out)) * scale).astype(np.float32))
            self.b.append(np.zeros(n_out, np.float32))
        self._reset_optimizer()
        self.labels: list[Hashable] = list(labels) if labels is not None else []
        if loss == "xent" and labels is not None and len(self.labels) != n_outputs:
            raise InputError(f"labels: expected {n_outputs} labels, found {len(self.labels)}")
        self.replay_size, self.replay_batch = int(replay), int(replay_batch)
        self._buf_x = np.zeros((self.replay_size, input_dim), np.float32)
        self._buf_y: list[Any] = [None] * self.replay_size
        self._seen = 0
        self.steps = 0
        self.normalize = bool(normalize)
        self.norm_mean = np.zeros(input_dim, np.float32)
        self.norm_var = np.ones(input_dim, np.float32)
        self._norm_t = 0
        self._norm_scale: np.ndarray | None = None
        self._norm_floor: np.float32 | None = None

    # ------------------------------------------------------------------ structure
    @property
    def n_outputs(self) -> int:
        return self.W[-1].shape[1]

    def _reset_optimizer(self) -> None:
        needs_m = self.optimizer == "adam" or bool(self.momentum)
        self._m = [np.zeros_like(p) for p in self.params()] if needs_m else []
        self._v = [np.zeros_like(p) for p in self.params()] if self.optimizer == "adam" else []
        self._m_flat: np.ndarray | None = None
        self._v_flat: np.ndarray | None = None
        self._t = 0

    def params(self) -> list[np.ndarray]:
        return [p for pair in zip(self.W, self.b, strict=True) for p in pair]

    def add_class(self, label: Hashable) -> int:
        """Add an output unit for ``label`` (zero-initialised); returns its index."""
        if label in self.labels:
            return self.labels.index(label)
        self.labels.append(label)
        grow = len(self.labels) - self.n_outputs
        if grow > 0:
            self.W[-1] = np.concatenate([self.W[-1], np.zeros((self.W[-1].shape[0], grow), np.float32)], axis=1)
            self.b[-1] = np.concatenate([self.b[-1], np.zeros(grow, np.float32)])
            k = len(self.W) - 1  # grow the optimizer state of the last layer alike
            for state in (self._m, self._v):
                if state:
                    state[2 * k] = np.concatenate([state[2 * k], np.zeros((state[2 * k].shape[0], grow), np.float32)], 1)
                    state[2 * k + 1] = np.concatenate([state[2 * k + 1], np.zeros(grow, np.float32)])
            self._m_flat = self._v_flat = None
        return len(self.labels) - 1

    # ------------------------------------------------------------------ maths
    def _scale(self) -> np.ndarray:
        """Per-input standard deviation used to standardize (cached; recomputed when statistics move)."""
        if self._norm_scale is None:
            if self._norm_floor is None or self._norm_t % 16 == 0:  # the floor moves slowly: refresh it now and then
                self._norm_floor = variance_floor(self.norm_var, NORM_FLOOR)
            self._norm_scale = np.sqrt(self.norm_var + self._norm_floor)
        return self._norm_scale

    def observe(self, X: Any) -> None:
        """Update the input statistics from samples without labels (a no-op without ``normalize``):
        a sensor's gain or offset drift is absorbed before any label arrives."""
        self._observe(self._as_matrix(X))

    def _observe(self, X: np.ndarray) -> None:
        """Update the running input mean and variance (exponential, time constant ~100 samples,
        warm-started so the first samples set them)."""
        if not self.normalize:
            return
        self._norm_t = ema_update(self.norm_mean, self.norm_var, self._norm_t, X, NORM_BETA)
        self._norm_scale = None

    def _forward(self, X: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        if self.normalize:
            X = (X - self.norm_mean) / self._scale()
        return mlp.forward(self.W, self.b, X)

    def _targets(self, Y: Any, n: int) -> np.ndarray:
        if self.loss == "mse":
            return as_targets(Y, n, self.n_outputs)
        labels = [Y] if n == 1 and not isinstance(Y, (list, tuple, np.ndarray)) else list(Y)
        return np.array([self.add_class(y) if y not in self.labels else self.labels.index(y) for y in labels])

    def loss_and_grads(self, X: np.ndarray, T: np.ndarray) -> tuple[float, list[np.ndarray]]:
        """Mean loss over the batch and its gradient w.r.t. every parameter (W0, b0, W1, b1, …)."""
        losses, grads = self._losses_and_grads(X, T)
        return float(losses.mean()), grads

    def _losses_and_grads(self, X: np.ndarray, T: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        out, acts = self._forward(X)
        return mlp.losses_and_grads(self.W, out, acts, T, self.loss)

    def _step(self, grads: list[np.ndarray]) -> None:
        """Apply one update; a non-finite gradient is refused before anything changes."""
        if self.optimizer == "sgd":
            mlp.sgd_step(self.params(), grads, self.lr, self.momentum, self._m)
        else:  # Adam (Kingma & Ba, 2015), on all parameters as one flat vector (few numpy calls)
            m, v = self._flat_moments()
            mlp.adam_step(self.params(), grads, self.lr, self._t + 1, m, v)
            self._t += 1
        self.steps += 1
        if self.steps % 64 == 0:
            self._flush_tiny()

    def _flush_tiny(self) -> None:
        mlp.flush_tiny([*self.params(), *self._m, *self._v, self.norm_mean, self.norm_var], TINY)

    def _flat_moments(self) -> tuple[np.ndarray, np.ndarray]:
        """Adam's moments as two flat vectors whose slices are the per-parameter arrays in _m/_v."""
        if self._m_flat is None:  # set to None wherever _m/_v are replaced (reset, new class, load)
            self._m_flat, self._v_flat = mlp.flat_views(self._m), mlp.flat_views(self._v)
        return self._m_flat, self._v_flat

    # ------------------------------------------------------------------ river-style API
    def _as_matrix(self, X: Any) -> np.ndarray:
        return as_features(X, self.input_dim)

    def learn_many(self, X: Any, Y: Any,
                   grad_hook: Callable[[list[np.ndarray]], list[np.ndarray]] | None = None) -> float:
        """One step on a batch. ``grad_hook`` may change the gradients before the step (a
        proximal term for FedProx, say): it gets and returns [W0, b0, W1, b1, …], W as (in, out)."""
        X = self._as_matrix(X)
        T = self._targets(Y, X.shape[0])
        self._observe(X)
        loss, grads = self.loss_and_grads(X, T)
        self._step(grad_hook(grads) if grad_hook is not None else grads)
        return loss

    def learn_one(self, x: Any, y: Any) -> float:
        """One SGD/Adam step on (x, y) (plus a replayed minibatch when the buffer is on)."""
        X = self._as_matrix(x)
        T = self._targets(y, 1)
        self._observe(X)
        if self.replay_size and self._seen:
            X, T = replay.with_replayed(X, T, self._buf_x, self._buf_y, self._seen, self.replay_batch, self._rng,
                                        self.loss == "mse")
        losses, grads = self._losses_and_grads(X, T)
        self._step(grads)
        if self.replay_size:  # reservoir sampling keeps a uniform sample of the stream
            replay.reservoir_add(self._buf_x, self._buf_y, self._seen, X[0], T[0], self._rng)
            self._seen += 1
        return float(losses[0])  # the new sample's loss, before the update

    def predict_proba(self, X: Any) -> np.ndarray:
        out, _ = self._forward(self._as_matrix(X))
        if self.loss != "xent":
            raise InputError("predict_proba: expected a classifier (loss xent), found a regressor")
        z = np.exp(out - out.max(axis=1, keepdims=True))
        return z / z.sum(axis=1, keepdims=True)

    def predict(self, X: Any) -> list[Any] | np.ndarray:
        out, _ = self._forward(self._as_matrix(X))
        if self.loss == "mse":
            return out
        if not self.labels:
            return [None] * out.shape[0]
        return [self.labels[i] for i in out[:, : len(self.labels)].argmax(axis=1)]

    def predict_one(self, x: Any) -> Any:
        result = self.predict(x)
        return result[0] if self.loss == "xent" else result[0].tolist()

    def predict_proba_one(self, x: Any) -> dict[Hashable, float]:
        return dict(zip(self.labels, self.predict_proba(x)[0].tolist(), strict=False))

    # ------------------------------------------------------------------ weights and state
    def get_weights(self) -> dict[str, np.ndarray]:
        """The net as it acts on raw inputs: input standardization is folded into the first layer."""
        out = {}
        for i, (W, b) in enumerate(zip(self.W, self.b, strict=True)):
            if i == 0 and self.normalize:
                scale = self._scale()
                W, b = W / scale[:, None], b - (self.norm_mean / scale) @ W
            out[f"layers.{i}.weight"] = np.array(W.T, np.float32)  # (out, in), the torch / graph-form convention
            out[f"layers.{i}.bias"] = np.array(b, np.float32)
        return out

    def set_weights(self, weights: dict[str, np.ndarray]) -> None:
        for i in range(len(self.W)):
            w, b = weights.get(f"layers.{i}.weight"), weights.get(f"layers.{i}.bias")
            if w is None or b is None:
                raise InputError(f"weights: expected layers.{i}.weight and layers.{i}.bias, found {sorted(weights)}")
            if w.shape != self.W[i].T.shape or b.shape != self.b[i].shape:
                raise InputError(f"weights: expected layers.{i} of shapes {self.W[i].T.shape}/{self.b[i].shape}, "
                                 f"found {w.shape}/{b.shape}")
            if not (np.isfinite(w).all() and np.isfinite(b).all()):
                raise InputError(f"weights: expected finite values in layers.{i}, found NaN/Inf")
            self.W[i] = np.array(w.T, dtype=np.float32, order="C", copy=True)  # never a view of the caller's array
            self.b[i] = np.array(b, dtype=np.float32, copy=True)
            if i == 0 and self.normalize:  # raw-input weights -> weights on standardized inputs
                self.b[0] = (self.b[0] + self.norm_mean @ self.W[0]).astype(np.float32)
                self.W[0] = (self.W[0] * self._scale()[:, None]).astype(np.float32)

    def state_arrays(self) -> dict[str, np.ndarray]:
        from edgebert.runtime.learner_state import state_arrays

        return state_arrays(self)

    def state_bytes(self) -> int:
        """Bytes of training state held in RAM: weights, optimizer state, replay buffer."""
        return int(sum(a.nbytes for a in self.state_arrays().values()))

    def config(self) -> dict[str, Any]:
        return {"input_dim": self.input_dim, "n_outputs": self.n_outputs, "hidden": list(self.hidden),
                "loss": self.loss, "optimizer": self.optimizer, "lr": self.lr, "replay": self.replay_size,
                "replay_batch": self.replay_batch, "momentum": self.momentum, "normalize": self.normalize}

    def save(self, path: str | Path) -> None:
        """Write weights, optimizer state, replay buffer and labels as safetensors, atomically."""
        from edgebert.runtime.learner_state import save_learner

        save_learner(self, path)

    @classmethod
    def load(cls, path: str | Path) -> OnlineLearner:
        from edgebert.runtime.learner_state import load_learner

        return load_learner(path)

    @classmethod
    def from_weights(cls, weights: dict[str, np.ndarray], loss: str, **kwargs: Any) -> OnlineLearner:
        """A learner for a whole net given as named arrays (e.g. a TinyML artifact's graph). The net
        keeps the inputs it was trained on: no input standardization unless ``normalize=True``."""
        n = len([k for k in weights if k.endswith(".weight")])
        shapes = [weights[f"layers.{i}.weight"].shape for i in range(n)]
        kwargs.setdefault("normalize", False)
        learner = cls(shapes[0][1], shapes[-1][0], [s[0] for s in shapes[:-1]], loss, **kwargs)
        learner.set_weights(weights)
        return learner
