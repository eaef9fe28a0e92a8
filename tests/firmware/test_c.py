"""The standalone C99 build: compiled with -Werror, bit-exact with the fixed-point reference on the
host and on a Cortex-M4 (QEMU), and its head learner step for step with OnlineLearner."""

from __future__ import annotations

import numpy as np
import pytest

from edgebert.runtime.firmware import Firmware
from edgebert.runtime.online import OnlineLearner
from firmware_export import c99, program
from firmware_export.c99 import arena_layout, c_float
from tests.firmware.conftest import needs_m4

STEPS = 300
LR = 0.05
WEIGHT_TOL = 1e-5  # the C head and OnlineLearner: same float32 operations, sums in another order


def test_the_host_build_is_bit_exact_on_2000_inputs(digits_c, digits_program, digits_inputs) -> None:
    fw = Firmware(digits_c.artifact.path)
    feats, outs = fw.infer(digits_inputs)
    ref_f, ref_o = program.run(digits_program, digits_inputs)
    assert np.array_equal(outs, ref_o) and np.array_equal(feats, ref_f)
    assert np.allclose(fw.features(digits_inputs[:5]), program.dequantize_features(digits_program, ref_f[:5]))


def test_the_arena_keeps_only_neighbours_alive_together() -> None:
    layout = arena_layout([64, 32, 32, 10])
    assert layout.offsets == (0, 64, 0, 64) and layout.size == 64 + 32
    odd = arena_layout([3, 5, 7])
    assert odd.offsets[1] % 4 == 0 and odd.size == 8 + 5  # the second half starts word-aligned
    for a, b in zip(layout.offsets, layout.offsets[1:], strict=False):
        assert a != b  # a layer never writes over its own input


def test_float_literals_read_back_to_the_same_float32() -> None:
    values = np.random.default_rng(0).standard_normal(1000).astype(np.float32) * 1e-3
    for v in [*values, np.float32(1.0), np.float32(3e-39), np.float32(-0.0)]:
        text = c_float(float(v))
        assert text.endswith("f") and ("." in text or "e" in text)
        assert np.float32(float(text[:-1])) == v


def _stream(digits_program, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    from edgebert.model.tinyml import digits_data

    x, y = digits_data()
    idx = np.random.default_rng(seed).permutation(len(x))[:STEPS]
    return x[idx], y[idx]


def _learner(fw: Firmware, x: np.ndarray, y: np.ndarray, normalize: bool) -> OnlineLearner:
    learner = OnlineLearner(fw.feature_dim, fw.output_dim, (), "xent", "sgd", LR, labels=list(range(fw.output_dim)),
                            normalize=normalize)
    fw.head_init(LR, normalize)
    for f, label in zip(fw.features(x), y, strict=True):
        assert fw.head_predict(f) == learner.predict_one(f)
        z_in = (f - learner.norm_mean) / learner._scale() if normalize else f  # what the logits see
        c_loss, py_loss = fw.head_learn(f, int(label)), learner.learn_one(f, int(label))
        # the loss moves by at most twice the logits' difference: weights that agree within WEIGHT_TOL,
        # plus float32 dot products of len(f) terms summed in another order (BLAS vs a loop)
        reach = float(np.abs(z_in).sum())
        logit_gap = reach * WEIGHT_TOL + len(f) * 2.0**-24 * reach * float(np.abs(learner.W[0]).max())
        assert abs(c_loss - py_loss) <= 2 * logit_gap + 2.0**-20 * max(1.0, py_loss)
    return learner


@pytest.mark.parametrize("normalize", [True, False])
def test_the_c_head_learns_as_online_learner_does(digits_c, digits_program, normalize: bool) -> None:
    """300 SGD steps: the same float32 operations in the same order, but for the order of a few
    sums (BLAS vs a loop) and libm's exp/log: the weights agree within 1e-5."""
    fw = Firmware(digits_c.artifact.path)
    x, y = _stream(digits_program)
    learner = _learner(fw, x, y, normalize)
    w, b = fw.head_weights()
    assert np.abs(w - learner.W[0]).max() <= WEIGHT_TOL and np.abs(b - learner.b[0]).max() <= WEIGHT_TOL
    assert np.abs(learner.W[0]).max() > 0.05  # it did learn something
    assert fw.head_state_bytes() <= 4096


def test_the_head_refuses_what_it_cannot_learn_from(digits_c) -> None:
    from edgebert.errors import InputError

    fw = Firmware(digits_c.artifact.path)
    fw.head_init(LR, True)
    with pytest.raises(InputError, match="expected a class"):
        fw.head_learn(np.zeros(fw.feature_dim, np.float32), fw.output_dim)
    with pytest.raises(InputError, match="NaN/Inf"):
        fw.head_learn(np.full(fw.feature_dim, np.nan, np.float32), 0)
    with pytest.raises(InputError, match="expected 32 numbers"):
        fw.head_predict(np.zeros(3, np.float32))
    with pytest.raises(InputError, match="finite"):
        fw.infer(np.full((1, fw.input_dim), np.inf, np.float32))


@needs_m4
def test_on_a_cortex_m4_the_build_is_bit_exact_and_the_head_learns_the_same(digits_c, digits_program) -> None:
    """One QEMU run: 300 digits through the Cortex-M4 build (bit-exact with the reference), then 300
    head learning steps on the M4's own features (within 1e-5 of OnlineLearner)."""
    from firmware_export import m4

    fw = Firmware(digits_c.artifact.path)
    x, y = _stream(digits_program)
    run = m4.measure(c99.sources(digits_program, "test"), x, y, lr=LR, normalize=True)
    ref_f, ref_o = program.run(digits_program, x)
    assert np.array_equal(run.features, ref_f) and np.array_equal(run.outputs, ref_o)
    learner = _learner(fw, x, y, True)
    assert np.abs(run.head_weights - learner.W[0]).max() <= 1e-5
    assert np.abs(run.head_bias - learner.b[0]).max() <= 1e-5
    fig = run.figures
    assert fig.head_state_bytes <= 4096 and fig.learn_ram_bytes > fig.inference_ram_bytes
    assert 0 < fig.instructions_per_inference and 0 < fig.instructions_per_learning_step
    assert fig.inference_flash_bytes > sum(lay.weight.size for lay in digits_program.layers)
