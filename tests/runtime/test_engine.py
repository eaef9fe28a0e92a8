"""Engine: verified loading, text and TinyML artifacts, thread safety."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from edgebert import measure
from edgebert.errors import ArtifactError, InputError
from edgebert.model.tinyml import digits_data
from edgebert.runtime import Engine, OnlineLearner

SENTENCES = ["Tiny models on small devices.", "Federated learning over MQTT.", "A third sentence, longer than the others."]


def test_text_engine_embeds_like_onnxruntime(tiny_artifact) -> None:
    from tokenizers import Tokenizer

    engine = Engine.load(tiny_artifact.path)
    want = measure.embeddings(measure.session(tiny_artifact.onnx_path),
                              Tokenizer.from_file(str(tiny_artifact.file("tokenizer.json"))), SENTENCES)

    got = engine.embed(SENTENCES, batch_size=2)

    np.testing.assert_allclose(got, want, atol=1e-5)
    assert engine.features(SENTENCES[0]).shape == (1, 128) and engine.feature_dim == 128


def test_concurrent_callers_get_the_same_answers(tiny_artifact) -> None:
    engine = Engine.load(tiny_artifact.path)
    texts = [f"sentence number {i} about compact models" for i in range(64)]
    sequential = engine.embed(texts)

    with ThreadPoolExecutor(max_workers=8) as pool:
        parts = list(pool.map(lambda i: engine.embed(texts[i:i + 8]), range(0, 64, 8)))

    np.testing.assert_allclose(np.concatenate(parts), sequential, atol=1e-6)


@pytest.mark.parametrize("damage, match", [
    (lambda d: (d / "model.onnx").write_bytes((d / "model.onnx").read_bytes()[:-1]), "truncated"),
    (lambda d: (d / "tokenizer.json").write_text("{}"), "expected"),
])
def test_tampered_artifacts_are_refused(tiny_artifact, tmp_path: Path, damage, match: str) -> None:
    copy = Path(shutil.copytree(tiny_artifact.path, tmp_path / "copy"))
    damage(copy)

    with pytest.raises(ArtifactError, match=match):
        Engine.load(copy)


def test_tinyml_engine_features_output_and_trainable_weights(digits_artifact) -> None:
    engine = Engine.load(digits_artifact.path)
    X, y = digits_data()

    feats, out = engine.features(X[:50]), engine.output(X[:50])
    full = OnlineLearner.from_weights(engine.trainable_weights(), "xent", labels=list(range(10)))

    assert feats.shape == (50, 32) and out.shape == (50, 10)
    assert (out.argmax(1) == y[:50]).mean() > 0.85
    assert np.mean(np.array(full.predict(X[:200])) == y[:200]) > 0.85  # dequantized net, all layers trainable
    with pytest.raises(InputError, match="expected 64 numbers"):
        engine.features(np.zeros((2, 5)))
    with pytest.raises(InputError, match="text artifact"):
        engine.embed(["x"])


BLOCK_TORCH = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('torch', 'onnx', 'transformers', 'scipy', 'sklearn', 'cryptography', 'registry'):
            raise ImportError(f'{name} is blocked on this device')
sys.meta_path.insert(0, Block())
import json, numpy as np
from edgebert.runtime import Engine, OnlineLearner
from edgebert.runtime.device import Device
import edgebert.federated.client, edgebert.messaging.mqtt, edgebert.federated.tasks  # the device side of FL
import edgebert.fleet.agent, edgebert.fleet.signing  # the device side of provisioning: no crypto library
text = Engine.load(sys.argv[1]); tiny = Engine.load(sys.argv[2])
emb = text.embed(['a sentence', 'another one'])
head = OnlineLearner(emb.shape[1], 0); head.learn_one(emb[0], 'greeting')
dev = Device(tiny)
reply = dev.handle({'x': [0.0] * 64, 'y': 3})
ok = reply['loss'] >= 0 and reply['prediction'] in range(10)  # the artifact's classes, known from the start
print(json.dumps({'emb': list(emb.shape), 'pred': head.predict_one(emb[1]), 'loss': ok,
                  'torch': 'torch' in sys.modules, 'onnx': 'onnx' in sys.modules}))
"""


def test_runtime_works_where_torch_and_onnx_cannot_be_imported(tiny_artifact, digits_artifact) -> None:
    result = subprocess.run([sys.executable, "-c", BLOCK_TORCH, str(tiny_artifact.path), str(digits_artifact.path)],
                            capture_output=True, text=True, timeout=120)

    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout)
    assert out == {"emb": [2, 128], "pred": "greeting", "loss": True, "torch": False, "onnx": False}
