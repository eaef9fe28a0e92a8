"""Engine: load a verified artifact and run it, without PyTorch.

``Engine.load`` checks every file against the manifest's sha256 first; a tampered or truncated
artifact is refused. Text artifacts (with ``tokenizer.json``) embed sentences; TinyML artifacts
take float inputs ``x``. ``features`` is what online learning consumes: the sentence embedding,
or a TinyML net's last hidden layer.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgebert.artifact import BINARY_RUNTIME, Artifact
from edgebert.errors import ArtifactError, InputError
from edgebert.graph.reference import mean_pool
from edgebert.model.tokenizer import encode_batch  # tokenizers + numpy only
from edgebert.runtime.backends import Backend, open_backend

if TYPE_CHECKING:
    from tokenizers import Tokenizer


def sentence_embeddings(run: Callable[[dict[str, np.ndarray], list[str]], dict[str, np.ndarray]], outputs: list[str],
                        tokenizer: Tokenizer, texts: list[str], batch_size: int = 32) -> np.ndarray:
    """(len(texts), hidden): the model's ``sentence_embedding``, or its ``last_hidden_state``
    mean-pooled over the real tokens when it has no pooling. ``run(feeds, names)`` runs the model."""
    out = []
    for i in range(0, len(texts), batch_size):
        ids, mask = encode_batch(tokenizer, texts[i:i + batch_size])
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "sentence_embedding" in outputs:
            out.append(run(feeds, ["sentence_embedding"])["sentence_embedding"])
        else:
            out.append(mean_pool(run(feeds, ["last_hidden_state"])["last_hidden_state"], mask))
    return np.concatenate(out)


class Engine:
    def __init__(self, artifact: Artifact, backend: Backend, tokenizer: Any | None) -> None:
        self.artifact, self.backend, self.tokenizer = artifact, backend, tokenizer

    @classmethod
    def load(cls, artifact_dir: str | Path, threads: int = 1) -> Engine:
        artifact = Artifact.load(artifact_dir, verify=True)
        runtime = artifact.manifest.runtime
        model = artifact.path / ("model.tflite" if runtime in ("litert", "tflite-micro") else
                                 "firmware.json" if runtime == "c99" else
                                 "graph.safetensors" if runtime == BINARY_RUNTIME else "model.onnx")
        tokenizer = None
        if "tokenizer.json" in artifact.manifest.files:
            from tokenizers import Tokenizer

            try:
                tokenizer = Tokenizer.from_file(str(artifact.path / "tokenizer.json"))
            except Exception as exc:  # tokenizers raises plain Exception
                raise ArtifactError(f"{artifact.path / 'tokenizer.json'}: expected a tokenizer, found: {exc}") from None
            tokenizer.no_padding()
        return cls(artifact, open_backend(model, threads, runtime), tokenizer)

    @property
    def manifest(self):  # noqa: ANN201
        return self.artifact.manifest

    @property
    def is_text(self) -> bool:
        return self.tokenizer is not None

    @property
    def input_dim(self) -> int | None:
        cfg = self.manifest.architecture.get("config", {})
        return None if self.is_text else int(cfg["input_dim"])

    @property
    def feature_dim(self) -> int:
        cfg = self.manifest.architecture["config"]
        return int(cfg["hidden_size"]) if self.is_text else int(cfg["hidden"][-1])

    @property
    def firmware(self):  # noqa: ANN201 - edgebert.runtime.firmware.Firmware | None
        """The C build of a ``c99`` firmware artifact (its head learner lives there), else None."""
        return getattr(self.backend, "firmware", None)

    def run(self, inputs: dict[str, np.ndarray], outputs: list[str] | None = None) -> dict[str, np.ndarray]:
        missing = set(self.backend.input_names) - set(inputs)
        if missing:
            raise InputError(f"inputs: expected {sorted(self.backend.input_names)}, found {sorted(inputs)}")
        return self.backend.run(inputs, outputs)

    def embed(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        """Sentence embeddings (len(texts), hidden) of a text artifact."""
        if self.tokenizer is None:
            raise InputError("embed: expected a text artifact (with tokenizer.json), found a tensor-input artifact")
        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
            raise InputError("embed: expected a list of strings")
        if not texts:
            return np.zeros((0, self.feature_dim), np.float32)
        return sentence_embeddings(self.backend.run, self.backend.output_names, self.tokenizer, texts, batch_size)

    def features(self, x: Any) -> np.ndarray:
        """Backbone output for online learning: (n, feature_dim)."""
        if self.is_text:
            return self.embed([x] if isinstance(x, str) else list(x))
        arr = np.asarray(x, np.float32)
        arr = arr[None] if arr.ndim == 1 else arr
        if arr.ndim != 2 or arr.shape[1] != self.input_dim:
            raise InputError(f"x: expected {self.input_dim} numbers per sample, found shape {arr.shape}")
        return self.backend.run({"x": arr}, ["features"])["features"]

    def output(self, x: Any) -> np.ndarray:
        """The frozen model's own output (TinyML artifacts)."""
        arr = np.asarray(x, np.float32)
        arr = arr[None] if arr.ndim == 1 else arr
        return self.backend.run({"x": arr}, ["output"])["output"]

    def trainable_weights(self) -> dict[str, np.ndarray]:
        """A TinyML artifact's layers as float32 named arrays (int8 weights dequantized), for
        training the whole net on the device."""
        if self.is_text:
            raise InputError("trainable_weights: expected a TinyML artifact, found a text artifact")
        from edgebert.graph.form import Graph

        g = Graph.load(self.artifact.path / "graph.safetensors")
        out = {}
        for node in g.linears():
            out[f"{node.name}.weight"] = g.linear_weight(node)
            out[f"{node.name}.bias"] = g.tensors[node.attrs["bias"]].astype(np.float32)
        return out
