"""A device process: serve inference and learn online from a stream of JSON messages.

``Device.handle(message) -> reply`` is the seam the MQTT side plugs into; ``run_stream`` drives it
from JSON lines (a file or stdin). A message is ``{"x": …}`` (predict) or ``{"x": …, "y": …}``
(predict, then learn: prequential evaluation). ``x`` is a sentence for text artifacts, a list of
numbers for TinyML ones. The learner's state is saved atomically every ``save_every`` updates and
at the end, and loaded at start, so a restarted device resumes where it stopped.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from edgebert.errors import EdgeBertError, InputError
from edgebert.runtime.engine import Engine
from edgebert.runtime.online import DEFAULT_LR, DEFAULT_OPTIMIZER, OnlineLearner

MODES = ("head", "full")


@dataclass(frozen=True)
class DeviceConfig:
    mode: str = "head"  # head: frozen backbone + trainable head; full: the whole TinyML net (all layers)
    optimizer: str = DEFAULT_OPTIMIZER
    lr: float = DEFAULT_LR
    hidden: tuple[int, ...] = ()
    replay: int = 0
    save_every: int = 50
    normalize: bool = True  # head mode: standardize the features online (full mode keeps the net's inputs)
    allow_new_classes: bool = False  # a classifier artifact's labels are the only ones learned unless this is set

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise InputError(f"--mode: expected one of {MODES}, found {self.mode!r}")
        if self.lr <= 0 or self.save_every <= 0 or self.replay < 0:
            raise InputError("device: expected lr > 0, save_every > 0 and replay >= 0")


class Device:
    def __init__(self, engine: Engine, config: DeviceConfig = DeviceConfig(), state_path: Path | None = None) -> None:
        self.engine, self.config, self.state_path = engine, config, state_path
        cfg = engine.manifest.architecture.get("config", {})
        # a TinyML classifier names its classes 0..n-1; a text backbone names none
        self.artifact_labels = (tuple(range(int(cfg["n_outputs"]))) if cfg.get("loss") == "xent"
                                and isinstance(cfg.get("n_outputs"), int) else None)
        self.learner = self._learner()
        self.seen = self.correct = self.errors = 0
        self._since_save = 0

    def _learner(self) -> OnlineLearner:
        if self.state_path is not None and self.state_path.is_file():
            return OnlineLearner.load(self.state_path)
        cfg = self.engine.manifest.architecture.get("config", {})
        loss = "mse" if cfg.get("loss") == "mse" else "xent"
        if self.config.mode == "full":
            if self.engine.is_text:
                raise InputError("--mode full: expected a TinyML artifact, found a text artifact (use --mode head)")
            labels = list(self.artifact_labels) if self.artifact_labels is not None else None
            return OnlineLearner.from_weights(self.engine.trainable_weights(), loss, optimizer=self.config.optimizer,
                                              lr=self.config.lr, replay=self.config.replay, labels=labels)
        if loss == "mse":
            n_out, labels = cfg.get("n_outputs", 1), None
        elif self.artifact_labels is not None:  # the artifact's classes, known from the start
            n_out, labels = len(self.artifact_labels), list(self.artifact_labels)
        else:  # a text backbone: classes are added as labels arrive
            n_out, labels = 0, None
        return OnlineLearner(self.engine.feature_dim, n_out, self.config.hidden, loss, self.config.optimizer,
                             self.config.lr, self.config.replay, labels=labels, normalize=self.config.normalize)

    def _inputs(self, x: Any) -> np.ndarray:
        if self.config.mode == "full":
            arr = np.asarray(x, np.float32)
            return arr[None] if arr.ndim == 1 else arr
        return self.engine.features(x)

    def handle(self, message: dict[str, Any]) -> dict[str, Any]:
        """Predict for ``x``; when ``y`` is given, learn from it after predicting."""
        if not isinstance(message, dict) or "x" not in message:
            raise InputError(f"message: expected an object with 'x' (and optionally 'y'), found {str(message)[:80]}")
        x = message["x"]
        if self.engine.is_text and not isinstance(x, str):
            raise InputError(f"x: expected a sentence (string) for a text artifact, found {type(x).__name__}")
        if not self.engine.is_text and not (isinstance(x, list) and all(isinstance(v, (int, float)) for v in x)):
            raise InputError("x: expected a list of numbers for a TinyML artifact")
        feats = self._inputs(x)
        reply: dict[str, Any] = {"prediction": self.learner.predict_one(feats[0])}
        if "y" in message:
            y = message["y"]
            if self.learner.loss == "xent":
                self._check_label(y)
            reply["loss"] = self.learner.learn_one(feats[0], y if self.learner.loss == "xent" else np.atleast_1d(y))
            self.seen += 1
            self.correct += int(self.learner.loss == "xent" and reply["prediction"] == y)
            self._since_save += 1
            if self.state_path is not None and self._since_save >= self.config.save_every:
                self.save()
        else:  # an unlabelled sample still moves the input statistics (sensor drift, before labels arrive)
            self.learner.observe(feats)
        return reply

    def _check_label(self, y: Any) -> None:
        if isinstance(y, bool) or not isinstance(y, (str, int)):
            raise InputError(f"y: expected a class label (string or integer), found {type(y).__name__}")
        if isinstance(y, str) and not 0 < len(y) <= 200:
            raise InputError(f"y: expected a label of 1 to 200 characters, found {len(y)}")
        if isinstance(y, int) and not -2**63 <= y < 2**63:
            raise InputError("y: expected an integer label within 64 bits, found a larger one")
        if y in self.learner.labels or self.config.allow_new_classes:
            return
        if self.artifact_labels is not None:
            raise InputError(f"y: expected one of the artifact's classes {self.artifact_labels[0]}.."
                             f"{self.artifact_labels[-1]}, found {y!r:.40} (--allow-new-classes adds it)")

    def save(self) -> None:
        if self.state_path is not None:
            self.learner.save(self.state_path)
            self._since_save = 0

    def run_stream(self, lines: Iterable[str], out: TextIO) -> int:
        """Handle JSON lines; a bad line gets an error reply and the stream goes on. Returns errors."""
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                with np.errstate(over="ignore", invalid="ignore"):  # overflow ends in an error reply, not a warning
                    reply = self.handle(json.loads(line))
            except json.JSONDecodeError as exc:
                reply = {"error": f"line {number}: expected a JSON object, found invalid JSON ({exc.msg})"}
            except RecursionError:
                reply = {"error": f"line {number}: expected a JSON object, found JSON nested too deeply"}
            except EdgeBertError as exc:
                reply = {"error": f"line {number}: {exc}"}
            except Exception as exc:  # noqa: BLE001 - one line never stops the device; say what it was
                reply = {"error": f"line {number}: expected a message the device can handle, found one that raised "
                                  f"{type(exc).__name__}: {str(exc)[:160]}"}
            if "error" not in reply:
                reply = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in reply.items()}
            try:
                text = json.dumps(reply, allow_nan=False)  # always valid JSON: no NaN/Infinity tokens
            except ValueError:
                reply = {"error": f"line {number}: expected a finite result, found NaN/Inf (inputs too large?)"}
                text = json.dumps(reply)
            if "error" in reply:
                self.errors += 1
            out.write(text + "\n")
            out.flush()
        self.save()
        return self.errors
