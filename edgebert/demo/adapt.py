"""Step 5: online adaptation on the camera (digits) and text devices, frozen vs learning."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from edgebert.demo.fleet import DemoFleet
from edgebert.progress import Progress


def adapt_digits(fleet: DemoFleet, names: list[str], samples: int, seed: int, progress: Progress) -> dict[str, Any]:
    """Camera devices (Cortex-M4 class, running the exported C firmware): each sees the digits through
    its own gain/offset; the provisioned int8 net as it is (frozen) vs a classifier head learning
    online in the firmware's C (TinyOL: SGD on the int8 net's features), prequential accuracy."""
    from edgebert.demo.convert import HEAD_LR
    from edgebert.errors import ArtifactError
    from edgebert.federated.tasks import DeviceTask
    from edgebert.model.tinyml import digits_data

    dx, dy = digits_data()
    frozen, adapting = [], []
    for i, name in enumerate(names):
        engine = fleet.agents[name].engine
        if engine is None or engine.firmware is None:
            raise ArtifactError(f"{name}: expected the Cortex-M4 firmware (runtime c99) active, found "
                                f"{engine.manifest.runtime if engine else 'no artifact'}")
        task = DeviceTask("digits", 77_000 + seed * 1000 + i, dx, dy)
        x, y = task.sample(samples, np.random.default_rng(seed + i))
        frozen.append((engine.output(x).argmax(1) == y).astype(float))
        head = engine.firmware
        head.head_init(HEAD_LR, normalize=True)
        hits = []
        for f, label in zip(head.features(x), y, strict=True):
            hits.append(float(head.head_predict(f) == label))
            head.head_learn(f, int(label))
        adapting.append(np.array(hits))
        progress("online adaptation (camera devices)", i + 1, len(names))
    f, a = np.mean(frozen, 0), np.mean(adapting, 0)
    bins = 25
    return {"devices": len(names), "samples": samples, "bin": bins, "learner": f"C head (SGD, lr {HEAD_LR}) on the "
            "firmware's int8 features", "frozen_curve": [float(f[j:j + bins].mean()) for j in range(0, samples, bins)],
            "adapting_curve": [float(a[j:j + bins].mean()) for j in range(0, samples, bins)],
            "frozen_last_100": float(f[-100:].mean()), "adapting_last_100": float(a[-100:].mean())}


def adapt_text(fleet: DemoFleet, names: list[str], samples: int, seed: int, progress: Progress) -> dict[str, Any]:
    """Text devices: a classifier head on the provisioned encoder learns each device's own labelled
    stream online; a fourth topic appears halfway (a class the head has never seen)."""
    from edgebert.demo.streams import TOPICS, text_stream
    from edgebert.runtime.online import OnlineLearner

    topics = list(TOPICS)
    half = samples // 2
    curves, new_class_after = [], []
    for i, name in enumerate(names):
        engine = fleet.agents[name].engine
        assert engine is not None
        rng = np.random.default_rng(seed * 100 + i)
        first = [topics[(i + k) % 4] for k in range(3)]
        stream = text_stream(rng, half, first) + text_stream(rng, samples - half, topics)
        feats = engine.embed([t for t, _ in stream])
        head = OnlineLearner(engine.feature_dim, 0, optimizer="adam", lr=0.01)
        hits, new = [], []
        for j, (f, (_, label)) in enumerate(zip(feats, stream, strict=True)):
            hit = float(head.predict_one(f) == label)
            hits.append(hit)
            if j >= half and label not in first:
                new.append(hit)
            head.learn_one(f, label)
        curves.append(np.array(hits))
        new_class_after.append(float(np.mean(new[5:])) if len(new) > 5 else float("nan"))
        progress("online adaptation (text devices)", i + 1, len(names))
    c = np.mean(curves, 0)
    bins = 10
    return {"devices": len(names), "samples": samples, "new_topic_at": half, "bin": bins,
            "curve": [float(c[j:j + bins].mean()) for j in range(0, samples, bins)],
            "accuracy_last_20": float(c[-20:].mean()),
            "new_topic_accuracy_after_5": float(np.nanmean(new_class_after))}


def text_sensor(fleet: DemoFleet, names: list[str], teacher: Any, progress: Progress) -> dict[str, Any]:  # noqa: ANN401
    """Keyword-sensor devices (Cortex-M4 class, running the text encoder's C firmware): their sentence
    embeddings of held-out bundled sentences against the teacher's (its int8 artifact), both on the
    same 32-token inputs; the firmware's measured flash, RAM and instructions."""
    from edgebert.distill import HELD_OUT
    from edgebert.distill.corpus import read_lines, split
    from edgebert.errors import ArtifactError
    from edgebert.model.zoo import corpus_path
    from edgebert.runtime.engine import Engine

    _, held = split(read_lines(corpus_path()), 0, HELD_OUT)  # the lines the demo's distillation held out
    ref_engine = Engine.load(teacher.path)
    rows = []
    for i, name in enumerate(names):
        engine = fleet.agents[name].engine
        if engine is None or engine.manifest.runtime != "c99":
            raise ArtifactError(f"{name}: expected the text encoder's Cortex-M4 firmware (runtime c99) active, found "
                                f"{engine.manifest.runtime if engine else 'no artifact'}")
        max_len = int(engine.manifest.memory.get("seq", 32))
        ref_engine.tokenizer.enable_truncation(max_length=max_len)
        a, b = engine.embed(held), ref_engine.embed(held)
        cos = (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
        fig = json.loads((engine.artifact.path / "firmware.json").read_text(encoding="utf-8"))["figures"]
        rows.append({"device": name, "artifact": engine.manifest.artifact_id, "cosine_mean": float(cos.mean()),
                     "cosine_min": float(cos.min()), "flash_bytes": fig.get("flash_bytes"),
                     "ram_bytes": fig.get("ram_bytes"), "instructions": fig.get("instructions_per_inference"),
                     "tokens": fig.get("tokens")})
        progress("text encoder on the keyword sensors", i + 1, len(names))
    return {"devices": len(names), "sentences": len(held), "teacher": teacher.manifest.artifact_id,
            "rows": rows, "cosine_mean": float(np.mean([r["cosine_mean"] for r in rows])) if rows else None}
