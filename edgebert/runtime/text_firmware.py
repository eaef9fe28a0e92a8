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

import numpy as np

from edgebert.errors import ArtifactError, InputError
from edgebert.runtime.firmware import FIRMWARE_JSON, LIBRARY

_I32P = ctypes.POINTER(ctypes.c_int32)


@dataclass(frozen=True)
class TextFirmwareInfo:
    vocab: int
    hidden: int
    max_len: int
    out_dim: int
    out_scale: np.ndarray
    mean_pool: bool
    normalize: bool

    @classmethod
    def load(cls, directory: Path) -> TextFirmwareInfo:
        path = Path(directory) / FIRMWARE_JSON
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            shape, q = raw["shape"], raw["quantization"]
            info = cls(int(shape["vocab"]), int(shape["hidden"]), int(shape["max_len"]), int(shape["out"]),
                       np.asarray(q["out_scale"], np.float32), q["pool"] == "mean", bool(q["normalize"]))
        except FileNotFoundError:
            raise ArtifactError(f"{path.parent}: expected {FIRMWARE_JSON} (edgebert export), found none") from None
        except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as exc:
            raise ArtifactError(f"{path}: expected a text firmware description, found an invalid one ({exc!r})") from None
        if info.out_scale.shape != (info.out_dim,) or min(info.vocab, info.hidden, info.max_len, info.out_dim) < 1:
            raise ArtifactError(f"{path}: expected {info.out_dim} output scales and positive sizes, found others")
        return info

    def embedding(self, out: np.ndarray, n: int) -> np.ndarray:
        """Real embedding of one sentence's int32 output (as eb_text_embedding computes it)."""
        e = out.astype(np.float64) * self.out_scale / (n if self.mean_pool else 1)
        if self.normalize:
            e = e / max(float(np.linalg.norm(e)), 1e-12)
        return e.astype(np.float32)


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
        """A tokenizer's ids cut to the firmware's length as truncation does: the last id ([SEP]) kept."""
        ids = np.asarray(ids)
        if ids.ndim != 1 or len(ids) == 0:
            raise InputError(f"ids: expected a non-empty sequence of token ids, found shape {ids.shape}")
        if len(ids) > self.info.max_len:
            ids = np.concatenate([ids[:self.info.max_len - 1], ids[-1:]])
        return ids

    def encode(self, ids: np.ndarray) -> np.ndarray:
        """int32 outputs (out,) of one sentence's token ids (at most max_len; see ``fit``)."""
        ids = np.asarray(ids)
        if ids.ndim != 1 or not 1 <= len(ids) <= self.info.max_len:
            raise InputError(f"ids: expected 1..{self.info.max_len} token ids, found shape {ids.shape}")
        if not np.issubdtype(ids.dtype, np.integer) or ids.min() < 0 or ids.max() >= self.info.vocab:
            raise InputError(f"ids: expected integers in [0, {self.info.vocab}), found {ids.min()}..{ids.max()}")
        x = np.ascontiguousarray(ids, np.int32)
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


__all__ = ["TextFirmware", "TextFirmwareInfo", "is_text_firmware"]
