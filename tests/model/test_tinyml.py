"""TinyML nets: host training, int8 conversion through the same converter, bad calibration arrays."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import edgebert
from edgebert import measure
from edgebert.errors import CheckpointError, InputError
from edgebert.model.tinyml import digits_data, load_mlp, train


def test_digits_artifact_agrees_with_the_fp32_net(digits_artifact, digits_model) -> None:
    m = digits_artifact.manifest
    cfg, _ = load_mlp(digits_model)

    assert m.architecture["type"] == "mlp" and m.onnx["inputs"] == ["x"] and m.onnx["outputs"] == ["features", "output"]
    assert m.metrics["fidelity"]["argmax_agreement"] > 0.97
    assert m.files["model.onnx"].bytes < 20_000 and "tokenizer.json" not in m.files
    X, y = digits_data()
    out = measure.session(digits_artifact.onnx_path).run(["output"], {"x": X[1400:]})[0]
    assert (out.argmax(1) == y[1400:]).mean() > 0.85 and cfg.hidden == (32, 32)


def test_sine_net_trains_and_converts(tmp_path: Path) -> None:
    model, metric = train("sine", tmp_path / "sine", steps=200)

    art = edgebert.convert(model, tmp_path / "sine-int8", "int8", model / "calibration.npy")

    assert json.loads((model / "config.json").read_text())["hidden"] == [40, 40] and "mse_on_sin_x" in metric
    assert art.manifest.metrics["fidelity"]["max_abs_error"] < 0.2


@pytest.mark.parametrize("make, match", [
    (lambda p: np.save(p, np.zeros((10, 3), np.float32)), r"expected an array of shape \(rows, 64\)"),
    (lambda p: np.save(p, np.array([{"a": 1}], dtype=object), allow_pickle=True), "without pickle"),
    (lambda p: np.save(p, np.full((10, 64), np.nan, np.float32)), "NaN"),
    (lambda p: p.write_text("sentences are not arrays\n"), "expected a .npy"),
])
def test_bad_calibration_arrays(digits_model, tmp_path: Path, make, match: str) -> None:
    path = tmp_path / ("cal.txt" if "sentences" in match or "npy" in match else "cal.npy")
    make(path)

    with pytest.raises(InputError, match=match):
        edgebert.convert(digits_model, tmp_path / "out", "int8", path)
    assert not (tmp_path / "out").exists()


def test_mlp_dir_with_wrong_shapes_is_refused(digits_model, tmp_path: Path) -> None:
    import shutil

    bad = Path(shutil.copytree(digits_model, tmp_path / "bad"))
    cfg = json.loads((bad / "config.json").read_text())
    (bad / "config.json").write_text(json.dumps({**cfg, "hidden": [16, 32]}))

    with pytest.raises(CheckpointError, match=r"layers.0.weight of shape \(16, 64\)"):
        load_mlp(bad)


def test_tinyml_train_cli_then_convert_cli(tmp_path: Path) -> None:
    import subprocess
    import sys

    run = lambda *a: subprocess.run([sys.executable, "-m", "edgebert", *a], capture_output=True, text=True,  # noqa: E731
                                    timeout=300)
    out = tmp_path / "digits"

    trained = run("tinyml", "train", "digits", "--out", str(out), "--steps", "100")
    again = run("tinyml", "train", "digits", "--out", str(out), "--steps", "100")
    converted = run("convert", str(out), "--calibration", str(out / "calibration.npy"), "--out", str(tmp_path / "a"),
                    "--quiet")

    assert trained.returncode == 0 and "edgebert convert" in trained.stdout
    assert again.returncode == 2 and "--force" in again.stderr
    assert converted.returncode == 0 and "MLP 64-32-32-10" in converted.stdout and "argmax agreement" in converted.stdout
