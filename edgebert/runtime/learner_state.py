"""An OnlineLearner's state on disk: weights, optimizer moments, input statistics, replay buffer,
labels and progress, in one safetensors file written atomically (no pickle); a non-finite state
is never written over a good one."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edgebert.errors import InputError
from edgebert.runtime.online import OnlineLearner
from edgebert.tensors import load_tensors, save_tensors


def state_arrays(learner: OnlineLearner) -> dict[str, np.ndarray]:
    state = {}
    for i, (W, b) in enumerate(zip(learner.W, learner.b, strict=True)):  # as trained (not folded)
        state[f"layers.{i}.weight"], state[f"layers.{i}.bias"] = W.T, b
    if learner.normalize:
        state["norm.mean"], state["norm.var"] = learner.norm_mean, learner.norm_var
    for j, m in enumerate(learner._m):
        state[f"opt.m.{j}"] = m
    for j, v in enumerate(learner._v):
        state[f"opt.v.{j}"] = v
    if learner.replay_size:
        state["replay.x"] = learner._buf_x
        if learner.loss == "mse":
            state["replay.y"] = np.stack([y if y is not None else np.zeros(learner.n_outputs, np.float32)
                                          for y in learner._buf_y]).astype(np.float32)
        else:
            state["replay.y"] = np.array([-1 if y is None else int(y) for y in learner._buf_y], np.int64)
    return state


def save_learner(learner: OnlineLearner, path: str | Path) -> None:
    """Write weights, optimizer state, replay buffer and labels as safetensors, atomically."""
    path = Path(path)
    arrays = state_arrays(learner)
    bad = [k for k, v in arrays.items() if v.dtype.kind == "f" and not np.isfinite(v).all()]
    if bad:  # never replace a good state file with a broken one
        raise InputError(f"{path}: expected a finite learner state to save, found NaN/Inf in {', '.join(bad[:3])}")
    meta = {"config": json.dumps(learner.config()), "labels": json.dumps(learner.labels),
            "progress": json.dumps({"steps": learner.steps, "t": learner._t, "seen": learner._seen,
                                    "norm_t": learner._norm_t,
                                    "norm_floor": None if learner._norm_floor is None else float(learner._norm_floor)})}
    save_tensors(path, arrays, meta)


def load_learner(path: str | Path) -> OnlineLearner:
    path = Path(path)
    arrays, meta = load_tensors(path, "a learner state file")
    try:
        cfg = json.loads(meta["config"])
        labels = json.loads(meta["labels"])
        progress = json.loads(meta["progress"])
    except (KeyError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: expected a learner state (safetensors with config), found: {exc!r}") from None
    learner = OnlineLearner(cfg["input_dim"], cfg["n_outputs"], cfg["hidden"], cfg["loss"], cfg["optimizer"], cfg["lr"],
                  cfg["replay"], cfg["replay_batch"], cfg.get("momentum", 0.0), normalize=False)
    learner.labels = labels
    learner.set_weights(arrays)  # the trained parameters as they are
    if cfg.get("normalize", False):
        mean, var = arrays.get("norm.mean"), arrays.get("norm.var")
        if mean is None or var is None or mean.shape != (learner.input_dim,) or var.shape != mean.shape \
                or not (np.isfinite(mean).all() and np.isfinite(var).all() and (var >= 0).all()):
            raise InputError(f"{path}: expected finite input statistics norm.mean/norm.var of shape "
                             f"({learner.input_dim},), found {None if mean is None else mean.shape}")
        learner.normalize = True
        learner.norm_mean, learner.norm_var = mean.astype(np.float32), var.astype(np.float32)
        floor = progress.get("norm_floor")
        learner._norm_scale, learner._norm_floor = None, None if floor is None else np.float32(floor)
        learner._norm_t = int(progress.get("norm_t", 0))
    learner._m = [arrays[f"opt.m.{j}"] for j in range(len(learner._m))] if learner._m else []
    learner._v = [arrays[f"opt.v.{j}"] for j in range(len(learner._v))] if learner._v else []
    learner._m_flat = learner._v_flat = None
    learner.steps, learner._t, learner._seen = progress["steps"], progress["t"], progress["seen"]
    if learner.replay_size:
        learner._buf_x = arrays["replay.x"]
        ys = arrays["replay.y"]
        learner._buf_y = [None if (learner.loss == "xent" and y < 0) else y for y in
                          (ys.tolist() if learner.loss == "xent" else list(ys))]
    return learner
