"""OnlineLearner: hand-written gradients vs finite differences, learning, classes, state."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgebert.errors import InputError
from edgebert.runtime import OnlineLearner


def numeric_grads(learner: OnlineLearner, X: np.ndarray, T: np.ndarray, eps: float = 1e-3) -> list[np.ndarray]:
    out = []
    for p in learner.params():
        g = np.zeros_like(p, dtype=np.float64)
        for idx in np.ndindex(p.shape):
            old = p[idx]
            p[idx] = old + eps
            up = learner.loss_and_grads(X, T)[0]
            p[idx] = old - eps
            down = learner.loss_and_grads(X, T)[0]
            p[idx] = old
            g[idx] = (up - down) / (2 * eps)
        out.append(g)
    return out


@pytest.mark.parametrize("loss, hidden", [("xent", ()), ("xent", (7, 5)), ("mse", ()), ("mse", (6,))])
def test_gradients_match_finite_differences(loss: str, hidden: tuple[int, ...]) -> None:
    rng = np.random.default_rng(0)
    learner = OnlineLearner(4, 3, hidden, loss, seed=1)
    for W in learner.W:  # non-zero output layer so that every gradient is exercised
        W += rng.normal(0, 0.5, W.shape).astype(np.float32)
    X = rng.normal(0, 1, (5, 4))
    T = rng.integers(0, 3, 5) if loss == "xent" else rng.normal(0, 1, (5, 3))
    for i in range(len(learner.W)):  # float64 copies for a clean finite difference
        learner.W[i], learner.b[i] = learner.W[i].astype(np.float64), learner.b[i].astype(np.float64)

    _, analytic = learner.loss_and_grads(X, T)
    numeric = numeric_grads(learner, X, T)

    for a, n in zip(analytic, numeric, strict=True):
        np.testing.assert_allclose(a, n, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_learning_a_separable_stream_with_classes_added_at_run_time(optimizer: str) -> None:
    rng = np.random.default_rng(0)
    centers = {"a": np.array([2.0, 0, 0]), "b": np.array([0, 2.0, 0]), "c": np.array([0, 0, 2.0])}
    learner = OnlineLearner(3, 0, optimizer=optimizer, lr=0.1 if optimizer == "sgd" else 0.05)

    for step in range(600):
        label = "abc"[step % 2] if step < 300 else "abc"[step % 3]  # class "c" appears mid-stream
        learner.learn_one(centers[label] + rng.normal(0, 0.3, 3), label)

    test = [(centers[k] + rng.normal(0, 0.3, 3), k) for k in "abc" for _ in range(20)]
    accuracy = np.mean([learner.predict_one(x) == y for x, y in test])
    assert learner.labels == ["a", "b", "c"] and learner.n_outputs == 3
    assert accuracy > 0.95
    assert set(learner.predict_proba_one(centers["c"])) == {"a", "b", "c"}


def test_regression_loss_falls() -> None:
    rng = np.random.default_rng(0)
    learner = OnlineLearner(1, 1, (16,), "mse", "adam", lr=0.01)
    xs = rng.uniform(-1, 1, (2000, 1))

    losses = [learner.learn_one(x, 3.0 * x) for x in xs]

    assert np.mean(losses[-200:]) < 0.05 * np.mean(losses[:200])


def test_replay_buffer_keeps_a_bounded_sample() -> None:
    learner = OnlineLearner(2, 0, replay=16, replay_batch=4)

    for i in range(100):
        learner.learn_one([float(i % 2), 1.0], str(i % 2))

    assert learner._seen == 100 and learner._buf_x.shape == (16, 2)
    assert {y for y in learner._buf_y} <= {0, 1}


def test_weights_round_trip_and_bad_weights_are_refused() -> None:
    a, b = OnlineLearner(4, 2, (3,), seed=1), OnlineLearner(4, 2, (3,), seed=2)
    a.W[-1] += 1.0

    b.set_weights(a.get_weights())

    np.testing.assert_array_equal(b.predict_proba(np.ones((1, 4))) if b.labels else b._forward(np.ones((1, 4)))[0],
                                  a._forward(np.ones((1, 4)))[0])
    assert a.get_weights()["layers.0.weight"].shape == (3, 4)  # (out, in)
    with pytest.raises(InputError, match="expected layers.1 of shapes"):
        b.set_weights({**a.get_weights(), "layers.1.weight": np.zeros((5, 5), np.float32)})
    with pytest.raises(InputError, match="NaN"):
        b.set_weights({**a.get_weights(), "layers.0.bias": np.full(3, np.nan, np.float32)})


@pytest.mark.parametrize("optimizer, replay", [("adam", 0), ("sgd", 8)])
def test_save_load_resumes_exactly(tmp_path: Path, optimizer: str, replay: int) -> None:
    rng = np.random.default_rng(0)
    data = [(rng.normal(0, 1, 5), int(rng.integers(0, 3))) for _ in range(40)]
    straight = OnlineLearner(5, 0, (4,), optimizer=optimizer, replay=replay, seed=3)
    for x, y in data:
        straight.learn_one(x, y)
    resumed = OnlineLearner(5, 0, (4,), optimizer=optimizer, replay=replay, seed=3)
    for x, y in data[:20]:
        resumed.learn_one(x, y)

    resumed.save(tmp_path / "state.safetensors")
    loaded = OnlineLearner.load(tmp_path / "state.safetensors")
    loaded._rng = resumed._rng  # the replay sampler's position
    for x, y in data[20:]:
        loaded.learn_one(x, y)

    for k, v in straight.get_weights().items():
        np.testing.assert_allclose(loaded.get_weights()[k], v, rtol=1e-6, atol=1e-7)
    assert loaded.labels == straight.labels and list(tmp_path.iterdir()) == [tmp_path / "state.safetensors"]


def test_bad_inputs_are_clear() -> None:
    learner = OnlineLearner(3, 1, loss="mse")

    with pytest.raises(InputError, match="expected 3 features"):
        learner.learn_one([1.0, 2.0], [1.0])
    with pytest.raises(InputError, match="loss: expected one of"):
        OnlineLearner(3, 1, loss="hinge")
    with pytest.raises(InputError, match="expected a learner state"):
        OnlineLearner.load(Path(__file__))


@pytest.mark.parametrize("input_dim", [1, 4])  # a (40, 1) weight's transpose is contiguous: no views allowed
def test_set_weights_copies_so_training_never_touches_the_callers_arrays(input_dim: int) -> None:
    source = OnlineLearner(input_dim, 1, (5,), "mse", seed=1).get_weights()
    frozen = {k: v.copy() for k, v in source.items()}
    learner = OnlineLearner(input_dim, 1, (5,), "mse")
    learner.set_weights(source)

    for _ in range(5):
        learner.learn_one(np.ones(input_dim), [3.0])

    for k, v in frozen.items():
        np.testing.assert_array_equal(source[k], v)


def _raw_net_outputs(weights: dict[str, np.ndarray], X: np.ndarray) -> np.ndarray:
    h = X
    n = len(weights) // 2
    for i in range(n):
        h = h @ weights[f"layers.{i}.weight"].T + weights[f"layers.{i}.bias"]
        h = np.maximum(h, 0) if i < n - 1 else h
    return h


def test_standardized_learner_exports_and_imports_weights_that_act_on_raw_inputs() -> None:
    rng = np.random.default_rng(0)
    X = (rng.normal(0, 1, (300, 6)) * [1, 10, 0.1, 1, 5, 1] + [0, 50, -3, 0, 1, 7]).astype(np.float32)
    learner = OnlineLearner(6, 3, (8,), labels=[0, 1, 2])
    for x in X:
        learner.learn_one(x, int(x[0] > 0) + int(x[1] > 50))
    probe = X[:20]
    raw_logits = learner._forward(learner._as_matrix(probe))[0]

    exported = learner.get_weights()
    other = OnlineLearner(6, 3, (8,), labels=[0, 1, 2], seed=5)
    for x in X[:50]:  # different running statistics
        other.learn_one(x * 2, 0)
    other.set_weights(exported)

    assert learner.normalize and not np.allclose(learner.norm_mean, 0)
    scale = float(np.abs(raw_logits).max())
    np.testing.assert_allclose(_raw_net_outputs(exported, probe), raw_logits, rtol=0, atol=1e-4 * scale)
    np.testing.assert_allclose(other._forward(other._as_matrix(probe))[0], raw_logits, rtol=0, atol=1e-4 * scale)


def test_pretrained_weights_keep_their_raw_inputs() -> None:
    source = OnlineLearner(4, 2, (3,), normalize=False, seed=1)
    for W in source.W:
        W += 0.3
    weights = source.get_weights()

    learner = OnlineLearner.from_weights(weights, "xent")
    X = np.random.default_rng(0).normal(5, 2, (10, 4)).astype(np.float32)

    assert not learner.normalize
    np.testing.assert_allclose(learner._forward(X)[0], _raw_net_outputs(weights, X), rtol=1e-6, atol=1e-6)


def test_unlabelled_samples_absorb_a_sensor_gain_and_offset_drift() -> None:
    rng = np.random.default_rng(3)
    centers = rng.normal(0, 1, (4, 8)).astype(np.float32)

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, 4, n)
        return centers[y] + rng.normal(0, 0.4, (n, 8)).astype(np.float32), y

    learner = OnlineLearner(8, 4, (16,), labels=[0, 1, 2, 3])
    for x, y in zip(*draw(600), strict=True):
        learner.learn_one(x, int(y))
    test_x, test_y = draw(400)
    before = np.mean(np.array(learner.predict(test_x)) == test_y)
    drift = np.linspace(0.3, 3.0, 8).astype(np.float32), np.linspace(-4, 4, 8).astype(np.float32)
    stale = np.mean(np.array(learner.predict(test_x * drift[0] + drift[1])) == test_y)

    learner.observe(draw(500)[0] * drift[0] + drift[1])  # unlabelled samples from the drifted sensor
    after = np.mean(np.array(learner.predict(test_x * drift[0] + drift[1])) == test_y)

    assert before > 0.9 and stale < before - 0.2
    assert after >= before - 0.03, (before, stale, after)


@pytest.mark.parametrize("x", [[np.nan, 0.0, 0.0], [1e39, 0.0, 0.0], [np.inf, 0.0, 0.0], ["a", 0.0, 0.0]])
def test_non_finite_or_non_numeric_inputs_are_refused_before_learning(x) -> None:
    learner = OnlineLearner(3, 1, (4,), "mse", seed=1)
    learner.learn_one([0.1, 0.2, 0.3], [1.0])
    before = learner.get_weights()

    with pytest.raises(InputError, match="x: expected"):
        learner.learn_one(x, [1.0])

    for k, v in learner.get_weights().items():
        np.testing.assert_array_equal(v, before[k])


@pytest.mark.parametrize("y", [[np.nan], [1e308], ["a"]])
def test_non_finite_or_non_numeric_targets_are_refused(y) -> None:
    learner = OnlineLearner(3, 1, (4,), "mse")

    with pytest.raises(InputError, match="y: expected"):
        learner.learn_one([0.1, 0.2, 0.3], y)
    assert learner.steps == 0


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_an_overflowing_update_changes_nothing_and_the_saved_state_stays_good(tmp_path: Path, optimizer: str) -> None:
    learner = OnlineLearner(3, 1, (4,), "mse", optimizer=optimizer, normalize=False, seed=1)
    learner.learn_one([0.1, 0.2, 0.3], [1.0])
    learner.save(tmp_path / "state.safetensors")
    good = (tmp_path / "state.safetensors").read_bytes()
    before = learner.get_weights()

    with pytest.raises(InputError, match="finite gradients"), np.errstate(over="ignore", invalid="ignore"):
        learner.learn_one([3e38, 3e38, 3e38], [3e38])  # finite inputs, but the gradient overflows float32

    for k, v in learner.get_weights().items():
        np.testing.assert_array_equal(v, before[k])
    learner.W[0][0, 0] = np.nan  # a state broken some other way is never written over the good file
    with pytest.raises(InputError, match="finite learner state"):
        learner.save(tmp_path / "state.safetensors")
    assert (tmp_path / "state.safetensors").read_bytes() == good
