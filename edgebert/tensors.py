"""Named numpy arrays on disk and on the wire, as safetensors (never pickle): one place for both.

``save_tensors`` writes atomically (temporary sibling + rename); ``load_tensors`` returns the
arrays and the string metadata, or InputError saying what was found; ``to_bytes``/``from_bytes``
are the in-memory forms the protocol sends.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgebert.errors import InputError
from edgebert.files import atomic_write

Tensors = dict[str, np.ndarray]


def to_bytes(tensors: Tensors, meta: dict[str, str] | None = None) -> bytes:
    from safetensors.numpy import save

    return save({k: np.ascontiguousarray(v) for k, v in tensors.items()}, metadata=meta) if tensors or meta else b""


def from_bytes(data: bytes) -> Tensors:
    """The arrays in ``data``; InputError if it is not safetensors."""
    from safetensors import SafetensorError
    from safetensors.numpy import load

    if not data:
        return {}
    try:
        return load(data)
    except (SafetensorError, ValueError, OSError) as exc:
        raise InputError(f"expected safetensors bytes, found: {exc}") from None


def save_tensors(path: Path, tensors: Tensors, meta: dict[str, str] | None = None) -> None:
    atomic_write(Path(path), to_bytes(tensors, meta))


def load_tensors(path: Path, what: str = "a safetensors file") -> tuple[Tensors, dict[str, str]]:
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    try:
        with safe_open(str(path), "np") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})
    except FileNotFoundError:
        raise InputError(f"{path}: expected {what}, found no such file") from None
    except (SafetensorError, OSError, ValueError) as exc:
        raise InputError(f"{path}: expected {what}, found: {exc!r}"[:300]) from None
