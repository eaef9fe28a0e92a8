"""The firmware build of a TinyML artifact, run on the host: the exported C (``eb_api.c`` over
``edgebert_model.c``) compiled as a shared library and called through ctypes (numpy + the standard
library only, as on a device).

``Firmware.infer`` gives the int8 features and outputs the microcontroller would give (bit for
bit: same C, same integer arithmetic); ``learn``/``predict`` drive the C head learner (TinyOL).
The library holds one static head: one ``Firmware`` per loaded library file.
"""

from __future__ import annotations

import ctypes
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from edgebert.errors import ArtifactError, InputError

LIBRARY = "libedgebert_firmware.so"
FIRMWARE_JSON = "firmware.json"
_F32P = ctypes.POINTER(ctypes.c_float)
_I8P = ctypes.POINTER(ctypes.c_int8)


def _ptr(a: np.ndarray, kind: Any) -> Any:  # noqa: ANN401 - a ctypes pointer
    return a.ctypes.data_as(kind)


T = TypeVar("T")


def read_description(directory: Path, parse: Callable[[dict], T], what: str) -> T:
    """``parse`` of a firmware export's firmware.json, or one ArtifactError line saying what is wrong."""
    path = Path(directory) / FIRMWARE_JSON
    try:
        return parse(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise ArtifactError(f"{path.parent}: expected {FIRMWARE_JSON} (edgebert export), found none") from None
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{path}: expected {what}, found an invalid one ({exc!r})") from None


@dataclass(frozen=True)
class FirmwareInfo:
    """What a runtime needs from firmware.json: shapes and how to read the int8 outputs."""

    input_dim: int
    feature_dim: int
    output_dim: int
    feature_zero_point: int
    feature_scale: np.ndarray
    output_scale: float
    output_zero_point: int
    raw: dict

    @classmethod
    def load(cls, directory: Path) -> FirmwareInfo:
        path = Path(directory) / FIRMWARE_JSON

        def parse(raw: dict) -> FirmwareInfo:
            shape, q = raw["shape"], raw["quantization"]
            return cls(int(shape["inputs"]), int(shape["features"]), int(shape["outputs"]), int(q["feature_zero_point"]),
                       np.asarray(q["feature_scale"], np.float32), float(q["output_scale"]), int(q["output_zero_point"]),
                       raw)

        info = read_description(directory, parse, "a firmware description")
        if info.feature_scale.shape != (info.feature_dim,) or min(info.input_dim, info.feature_dim, info.output_dim) < 1:
            raise ArtifactError(f"{path}: expected {info.feature_dim} feature scales and positive sizes, found others")
        return info

    def features(self, q: np.ndarray) -> np.ndarray:
        return ((q.astype(np.float32) - np.float32(self.feature_zero_point)) * self.feature_scale).astype(np.float32)

    def output(self, q: np.ndarray) -> np.ndarray:
        return ((q.astype(np.float32) - np.float32(self.output_zero_point)) * np.float32(self.output_scale))


def _bind(lib: ctypes.CDLL) -> tuple[int, ...]:
    """Declare the entry points' signatures; returns the build's (inputs, features, outputs)."""
    lib.eb_infer.argtypes = [_F32P, _I8P, _I8P]
    lib.eb_infer.restype = None
    lib.eb_learner_init.argtypes = [ctypes.c_float, ctypes.c_int]
    lib.eb_head_predict_features.argtypes = [_F32P]
    lib.eb_head_predict_features.restype = ctypes.c_int
    lib.eb_head_learn_features.argtypes = [_F32P, ctypes.c_int]
    lib.eb_head_learn_features.restype = ctypes.c_float
    lib.eb_head_weights.argtypes = [_F32P, _F32P]
    lib.eb_head_state_bytes.restype = ctypes.c_uint
    lib.eb_model_dims.argtypes = [ctypes.POINTER(ctypes.c_int)]
    dims = (ctypes.c_int * 3)()
    lib.eb_model_dims(dims)
    return tuple(dims)


class Firmware:
    """A host build of the firmware: ``libedgebert_firmware.so`` and ``firmware.json`` in ``directory``."""

    def __init__(self, directory: Path) -> None:
        directory = Path(directory)
        self.info = FirmwareInfo.load(directory)
        self.input_dim, self.feature_dim, self.output_dim = (self.info.input_dim, self.info.feature_dim,
                                                             self.info.output_dim)
        try:
            lib = ctypes.CDLL(str((directory / LIBRARY).resolve()))
        except OSError as exc:
            raise ArtifactError(f"{directory / LIBRARY}: expected the firmware's host build, found: {exc}") from None
        try:
            dims = _bind(lib)
        except AttributeError as exc:  # a library without the firmware's entry points
            raise ArtifactError(f"{directory / LIBRARY}: expected the firmware's entry points, found: {exc}") from None
        if dims != (self.input_dim, self.feature_dim, self.output_dim):
            raise ArtifactError(f"{directory / LIBRARY}: expected a build for {self.input_dim}/{self.feature_dim}/"
                                f"{self.output_dim} inputs/features/outputs (firmware.json), found {dims}")
        self._lib, self._lock = lib, threading.Lock()

    # ------------------------------------------------------------------ inference
    def _inputs(self, x: Any) -> np.ndarray:  # noqa: ANN401
        arr = np.asarray(x, np.float32)
        arr = arr[None] if arr.ndim == 1 else arr
        if arr.ndim != 2 or arr.shape[1] != self.input_dim:
            raise InputError(f"x: expected {self.input_dim} numbers per sample, found shape {arr.shape}")
        if not np.isfinite(arr).all():
            raise InputError("x: expected finite numbers, found NaN/Inf")
        return np.ascontiguousarray(arr)

    def infer(self, x: Any) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN401
        """int8 features (n, features) and outputs (n, outputs), one C call per sample."""
        arr = self._inputs(x)
        feats = np.zeros((arr.shape[0], self.feature_dim), np.int8)
        outs = np.zeros((arr.shape[0], self.output_dim), np.int8)
        with self._lock:
            for i in range(arr.shape[0]):
                self._lib.eb_infer(_ptr(arr[i], _F32P), _ptr(feats[i], _I8P), _ptr(outs[i], _I8P))
        return feats, outs

    def features(self, x: Any) -> np.ndarray:  # noqa: ANN401
        """Real-valued features (n, features): (q - zp) * scale in float32, as eb_model_features computes them."""
        return self.info.features(self.infer(x)[0])

    def output(self, x: Any) -> np.ndarray:  # noqa: ANN401
        """Real-valued outputs (n, outputs)."""
        return self.info.output(self.infer(x)[1])

    # ------------------------------------------------------------------ the head (TinyOL)
    def head_init(self, lr: float, normalize: bool = True) -> None:
        if not (np.isfinite(lr) and lr > 0):
            raise InputError(f"lr: expected a positive learning rate, found {lr}")
        self._lib.eb_learner_init(float(lr), int(normalize))

    def head_learn(self, features: np.ndarray, label: int) -> float:
        f = np.ascontiguousarray(features, np.float32)
        if f.shape != (self.feature_dim,):
            raise InputError(f"features: expected {self.feature_dim} numbers, found shape {f.shape}")
        if not 0 <= int(label) < self.output_dim:
            raise InputError(f"y: expected a class 0..{self.output_dim - 1}, found {label!r}")
        with self._lock:
            loss = float(self._lib.eb_head_learn_features(_ptr(f, _F32P), int(label)))
        if loss < 0:
            raise InputError("update: expected finite features and gradients, found NaN/Inf; nothing was learned")
        return loss

    def head_predict(self, features: np.ndarray) -> int:
        f = np.ascontiguousarray(features, np.float32)
        if f.shape != (self.feature_dim,):
            raise InputError(f"features: expected {self.feature_dim} numbers, found shape {f.shape}")
        with self._lock:
            return int(self._lib.eb_head_predict_features(_ptr(f, _F32P)))

    def head_weights(self) -> tuple[np.ndarray, np.ndarray]:
        """(W (features, classes), b (classes)) of the C head."""
        w = np.zeros((self.feature_dim, self.output_dim), np.float32)
        b = np.zeros(self.output_dim, np.float32)
        self._lib.eb_head_weights(_ptr(w, _F32P), _ptr(b, _F32P))
        return w, b

    def head_state_bytes(self) -> int:
        return int(self._lib.eb_head_state_bytes())


__all__ = ["FIRMWARE_JSON", "LIBRARY", "Firmware", "FirmwareInfo"]
