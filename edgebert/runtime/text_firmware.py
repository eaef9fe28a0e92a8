"""The firmware build of a text encoder, run on the host: the exported C (``edgebert_model.c``
with ``eb_text.h``) compiled as a shared library and called through ctypes (numpy and the
standard library only, as on a device).

``TextFirmware.encode`` gives the int32 outputs the microcontroller gives for a sentence's token
ids (bit for bit: same C, same integer arithmetic); ``embed`` reads them back as real
(normalized) sentence embeddings with firmware.json's output scales. Tokenizing happens on the
host or gateway: the firmware takes token ids.
"""

from __future__ import annotations

import ctypes
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgebert.errors import ArtifactError, InputError
from edgebert.graph.form import pooling_modes
from edgebert.runtime.firmware import FIRMWARE_JSON, LIBRARY, read_description

_I32P = ctypes.POINTER(ctypes.c_int32)
MASK_VALUE = -10000.0  # the .tflite's attention bias on padding


def check_ids(ids: np.ndarray, vocab: int, max_len: int) -> np.ndarray:
    """1..max_len integer token ids in [0, vocab) as int64, or one InputError line."""
    ids = np.asarray(ids)
    if ids.ndim != 1 or not 1 <= len(ids) <= max_len:
        raise InputError(f"ids: expected 1..{max_len} token ids, found shape {ids.shape}")
    if not np.issubdtype(ids.dtype, np.integer) or ids.min() < 0 or ids.max() >= vocab:
        raise InputError(f"ids: expected integers in [0, {vocab}), found {ids.min()}..{ids.max()}")
    return ids.astype(np.int64)


def real_embedding(values: np.ndarray, scale: np.ndarray | float, divisor: int, normalize: bool) -> np.ndarray:
    """A firmware's integer output as a real embedding: ``values * scale / divisor``, L2-normalized
    when the model normalizes."""
    e = np.asarray(values, np.float64) * scale / divisor
    if normalize:
        e = e / max(float(np.linalg.norm(e)), 1e-12)
    return e.astype(np.float32)


def fit(ids: np.ndarray, max_len: int) -> np.ndarray:
    """A tokenizer's ids cut to ``max_len`` as truncation does: the last id ([SEP]) kept."""
    ids = np.asarray(ids)
    if ids.ndim != 1 or len(ids) == 0:
        raise InputError(f"ids: expected a non-empty sequence of token ids, found shape {ids.shape}")
    return np.concatenate([ids[:max_len - 1], ids[-1:]]) if len(ids) > max_len else ids


def pool_rows(pool: str) -> tuple[str, ...]:
    """The pooling modes a .tflite takes as rows of its ``pool_weights`` input (linear ones only)."""
    modes = pooling_modes(pool)
    if "max" in modes:
        raise ArtifactError(f"pooling {pool!r}: expected cls and/or mean for a .tflite (a weighted sum of token "
                            "rows), found max (use --target c)")
    return modes


def text_feeds(sentences: list[np.ndarray], max_len: int, pool: str = "mean") -> list[dict[str, np.ndarray]]:
    """The .tflite's inputs for each sentence's token ids (cut by ``fit``, padded with id 0): ids,
    the attention bias (0 on real tokens, MASK_VALUE on padding) and the pooling weights, one row
    per pooling mode (CLS: 1 on token 0; mean: 1/n on the n real tokens)."""
    modes = pool_rows(pool)
    feeds = []
    for s in sentences:
        s = fit(s, max_len)
        n = len(s)
        x = np.zeros(max_len, np.int32)
        x[:n] = s
        bias = np.full((1, 1, max_len), MASK_VALUE, np.float32)
        bias[..., :n] = 0.0
        pw = np.zeros((len(modes), max_len), np.float32)
        for row, mode in enumerate(modes):
            if mode == "cls":
                pw[row, 0] = 1.0
            else:
                pw[row, :n] = 1.0 / n
        feeds.append({"input_ids": x, "attention_bias": bias, "pool_weights": pw})
    return feeds


def litert_interpreter(model: bytes, preserve_all_tensors: bool = False) -> Any:  # noqa: ANN401
    """A LiteRT interpreter of ``model``, tensors allocated."""
    from edgebert.runtime.backends import litert_interpreter_class

    it = litert_interpreter_class()(model_content=model, experimental_preserve_all_tensors=preserve_all_tensors)
    it.allocate_tensors()
    return it


class TfliteTextRunner:
    """A text encoder's .tflite in TFLite Micro (``tflite-micro``) or LiteRT (``litert``): token ids
    in, real (normalized) sentence embeddings out."""

    INPUTS = ("input_ids", "attention_bias", "pool_weights")

    def __init__(self, model: bytes, runtime: str, arena: int, max_len: int, out_scale: float, out_zero_point: int,
                 normalize: bool, vocab: int | None = None, pool: str = "mean") -> None:
        self.runtime, self.max_len, self.vocab, self.pool = runtime, max_len, vocab, pool
        pool_rows(pool)
        self.out_scale, self.out_zero_point, self.normalize = out_scale, out_zero_point, normalize
        self._lock = threading.Lock()
        if runtime == "tflite-micro":
            from edgebert.runtime.backends import _tflm_interpreter_bytes

            self._tflm = _tflm_interpreter_bytes(model, arena)
            self._litert = None
        else:
            self._tflm = None
            self._litert = litert_interpreter(model)
            self._index = {d["name"]: d["index"] for d in self._litert.get_input_details()}
            self._out = self._litert.get_output_details()[0]["index"]

    def _codes(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        with self._lock:
            if self._tflm is not None:
                for i, name in enumerate(self.INPUTS):
                    self._tflm.set_input(feed[name], i)
                self._tflm.invoke()
                return np.array(self._tflm.get_output(0))[0]
            for name in self.INPUTS:
                self._litert.set_tensor(self._index[name], feed[name])
            self._litert.invoke()
            return np.array(self._litert.get_tensor(self._out))[0]

    def embed_ids(self, sentences: list[np.ndarray]) -> np.ndarray:
        rows = []
        for s in sentences:
            s = fit(s, self.max_len)
            if self.vocab is not None:  # GATHER must never see an id beyond its table
                s = check_ids(s, self.vocab, self.max_len)
            q = self._codes(text_feeds([s], self.max_len, self.pool)[0])
            rows.append(real_embedding(q.astype(np.int64) - self.out_zero_point, self.out_scale, 1, self.normalize))
        return np.array(rows, np.float32)


@dataclass(frozen=True)
class TextFirmwareInfo:
    vocab: int
    hidden: int
    max_len: int
    out_dim: int
    out_scale: np.ndarray
    pool: str
    normalize: bool

    @classmethod
    def load(cls, directory: Path) -> TextFirmwareInfo:
        path = Path(directory) / FIRMWARE_JSON

        def parse(raw: dict) -> TextFirmwareInfo:
            shape, q = raw["shape"], raw["quantization"]
            return cls(int(shape["vocab"]), int(shape["hidden"]), int(shape["max_len"]), int(shape["out"]),
                       np.asarray(q["out_scale"], np.float32), str(q["pool"]), bool(q["normalize"]))

        info = read_description(directory, parse, "a text firmware description")
        pooling_modes(info.pool)
        if info.out_scale.shape != (info.out_dim,) or min(info.vocab, info.hidden, info.max_len, info.out_dim) < 1:
            raise ArtifactError(f"{path}: expected {info.out_dim} output scales and positive sizes, found others")
        return info

    def embedding(self, out: np.ndarray, n: int) -> np.ndarray:
        """Real embedding of one sentence's int32 output (as eb_text_embedding computes it)."""
        return real_embedding(out, self.out_scale, n if "mean" in pooling_modes(self.pool) else 1, self.normalize)


def is_text_firmware(directory: Path) -> bool:
    try:
        return "vocab" in json.loads((Path(directory) / FIRMWARE_JSON).read_text(encoding="utf-8"))["shape"]
    except (OSError, ValueError, KeyError, TypeError):
        return False


class TextFirmware:
    """A host build of a text firmware: ``libedgebert_firmware.so`` and ``firmware.json`` in ``directory``."""

    def __init__(self, directory: Path) -> None:
        directory = Path(directory)
        self.info = TextFirmwareInfo.load(directory)
        try:
            lib = ctypes.CDLL(str((directory / LIBRARY).resolve()))
            lib.eb_text_run.argtypes = [_I32P, ctypes.c_int, _I32P]
            lib.eb_text_run.restype = ctypes.c_int
            lib.eb_text_dims.argtypes = [ctypes.POINTER(ctypes.c_int)]
        except (OSError, AttributeError) as exc:
            raise ArtifactError(f"{directory / LIBRARY}: expected the text firmware's host build, found: {exc}") from None
        dims = (ctypes.c_int * 4)()
        lib.eb_text_dims(dims)
        want = (self.info.vocab, self.info.hidden, self.info.max_len, self.info.out_dim)
        if tuple(dims) != want:
            raise ArtifactError(f"{directory / LIBRARY}: expected a build for vocab/hidden/max_len/out {want} "
                                f"(firmware.json), found {tuple(dims)}")
        self._lib, self._lock = lib, threading.Lock()

    def fit(self, ids: np.ndarray) -> np.ndarray:
        return fit(ids, self.info.max_len)

    def encode(self, ids: np.ndarray) -> np.ndarray:
        """int32 outputs (out,) of one sentence's token ids (at most max_len; see ``fit``)."""
        x = np.ascontiguousarray(check_ids(ids, self.info.vocab, self.info.max_len), np.int32)
        out = np.zeros(self.info.out_dim, np.int32)
        with self._lock:
            rc = self._lib.eb_text_run(x.ctypes.data_as(_I32P), len(x), out.ctypes.data_as(_I32P))
        if rc != 0:  # pragma: no cover - the checks above refuse what the C refuses
            raise InputError(f"ids: expected the firmware to accept them, found return code {rc}")
        return out.astype(np.int64)

    def embed_ids(self, sentences: list[np.ndarray]) -> np.ndarray:
        """(len(sentences), out) real embeddings."""
        rows = []
        for ids in sentences:
            ids = self.fit(ids)
            rows.append(self.info.embedding(self.encode(ids), len(ids)))
        return np.array(rows, np.float32).reshape(len(rows), self.info.out_dim)


__all__ = ["MASK_VALUE", "TextFirmware", "TextFirmwareInfo", "TfliteTextRunner", "check_ids", "fit", "is_text_firmware",
           "pool_rows", "real_embedding", "text_feeds"]
