"""Step 4: a device runs an int8 TinyML artifact without torch and keeps learning from its stream.

Trains the digits MLP on the host, converts it to int8, then feeds the device a stream whose
sensor gain drifts halfway; the online head recovers while the frozen model stays degraded.
Run: python examples/04_device_online_learning.py [WORK_DIR]
"""

import sys
import tempfile
from pathlib import Path

import numpy as np

import edgebert
from edgebert.model.tinyml import digits_data, train
from edgebert.runtime import Engine, OnlineLearner

work = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp())
model, _ = train("digits", work / "digits", steps=300)
artifact = edgebert.convert(model, work / "digits-int8", "int8", model / "calibration.npy", force=True)

engine = Engine.load(artifact.path)  # sha256-verified; numpy + onnxruntime only from here on
weights = engine.trainable_weights()
head = OnlineLearner(engine.feature_dim, 10, optimizer="adam", lr=1e-3, labels=list(range(10)),
                     normalize=False)  # starts from the trained last layer: keep its input semantics
head.set_weights({"layers.0.weight": weights["layers.2.weight"], "layers.0.bias": weights["layers.2.bias"]})

X, y = digits_data()
rng = np.random.default_rng(0)
idx = rng.integers(0, len(X), 1200)
xs = X[idx].copy()
xs[600:] = np.clip(0.6 * xs[600:] + 0.25, 0, 1)  # the sensor's gain and offset drift
frozen, online = [], []
for x, label in zip(xs, y[idx], strict=True):
    frozen.append(int(engine.output(x)[0].argmax()) == label)
    features = engine.features(x)[0]
    online.append(head.predict_one(features) == label)
    head.learn_one(features, int(label))
print(f"after the drift, last 200 samples: frozen {np.mean(frozen[-200:]):.2f}, online head {np.mean(online[-200:]):.2f}")
head.save(work / "head.safetensors")
print("done")
