"""The device process: a JSON-lines stream, bad lines, resumable state, the CLI."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from edgebert.model.tinyml import digits_data
from edgebert.runtime import Engine
from edgebert.runtime.device import Device, DeviceConfig


def digits_lines(n: int, start: int = 0) -> list[str]:
    X, y = digits_data()
    return [json.dumps({"x": X[i].tolist(), "y": int(y[i])}) for i in range(start, start + n)]


def test_stream_learns_and_bad_lines_get_error_replies(digits_artifact) -> None:
    device = Device(Engine.load(digits_artifact.path), DeviceConfig(lr=0.1))
    out = io.StringIO()
    lines = digits_lines(400) + ["{not json", json.dumps({"x": [1, 2]}), json.dumps({"y": 1}),
                                 json.dumps({"x": [0.0] * 64})]

    errors = device.run_stream(lines, out)

    replies = [json.loads(r) for r in out.getvalue().splitlines()]
    late = [r["prediction"] == json.loads(line)["y"] for r, line in zip(replies[300:400], lines[300:400], strict=True)]
    assert errors == 3 and len(replies) == 404
    assert [("error" in r) for r in replies[400:]] == [True, True, True, False]
    assert "line 401: expected a JSON object" in replies[400]["error"]
    assert np.mean(late) > 0.8  # the head on frozen int8 features has learned the digits


def test_state_survives_a_restart(digits_artifact, tmp_path: Path) -> None:
    state = tmp_path / "head.safetensors"
    first = Device(Engine.load(digits_artifact.path), DeviceConfig(save_every=10), state)
    first.run_stream(digits_lines(100), io.StringIO())

    second = Device(Engine.load(digits_artifact.path), DeviceConfig(save_every=10), state)

    assert second.learner.steps == 100 and sorted(second.learner.labels) == list(range(10))


def test_full_mode_trains_every_layer_of_a_tinyml_net(digits_artifact) -> None:
    device = Device(Engine.load(digits_artifact.path), DeviceConfig(mode="full", lr=0.01))
    before = [w.copy() for w in device.learner.W]

    device.run_stream(digits_lines(50), io.StringIO())

    assert all(not np.array_equal(a, b) for a, b in zip(before, device.learner.W, strict=True))


def test_cli_exit_code_2_when_a_message_was_bad(digits_artifact, tmp_path: Path) -> None:
    stream = tmp_path / "s.jsonl"
    stream.write_text("\n".join(digits_lines(20) + ["[1, 2]"]) + "\n")

    result = subprocess.run([sys.executable, "-m", "edgebert", "device", "run", str(digits_artifact.path),
                             "--stream", str(stream), "--state", str(tmp_path / "st.safetensors")],
                            capture_output=True, text=True, timeout=120)

    assert result.returncode == 2 and "20 labelled samples" in result.stderr and "1 bad message" in result.stderr
    assert len(result.stdout.splitlines()) == 21 and (tmp_path / "st.safetensors").is_file()


def _strict_json(text: str) -> dict:
    def refuse(token: str) -> None:
        raise ValueError(f"not JSON: {token}")

    return json.loads(text, parse_constant=refuse)


def test_nan_and_huge_inputs_get_error_replies_and_the_learned_state_survives(digits_artifact, tmp_path: Path) -> None:
    state = tmp_path / "full.safetensors"
    device = Device(Engine.load(digits_artifact.path), DeviceConfig(mode="full", lr=0.01, save_every=5), state)
    x = [0.5] * 64
    hostile = ['{"x": [NaN' + ", 0.0" * 63 + '], "y": 1}', json.dumps({"x": [1e39] + x[1:], "y": 1}),
               '{"x": [Infinity' + ", 0.0" * 63 + ']}', json.dumps({"x": [3e38] * 64, "y": 2})]
    out = io.StringIO()

    errors = device.run_stream(digits_lines(10) + hostile + digits_lines(10, start=10), out)

    replies = [_strict_json(r) for r in out.getvalue().splitlines()]  # every reply is valid JSON
    assert errors == 4 and len(replies) == 24
    assert all("error" in r for r in replies[10:14]) and not any("error" in r for r in replies[14:])
    assert "expected finite numbers" in replies[10]["error"]
    reloaded = Device(Engine.load(digits_artifact.path), DeviceConfig(mode="full"), state)
    assert reloaded.learner.steps == 20 and all(np.isfinite(w).all() for w in reloaded.learner.W)


def test_a_classifier_artifact_fixes_the_label_set_unless_new_classes_are_allowed(digits_artifact) -> None:
    x = [0.5] * 64
    bad = [10, -1, 10**30, True, None, 2.5, "", "7"]
    strict = Device(Engine.load(digits_artifact.path))
    out = io.StringIO()

    errors = strict.run_stream([json.dumps({"x": x, "y": y}) for y in bad] + [json.dumps({"x": x, "y": 3})], out)

    replies = [json.loads(r) for r in out.getvalue().splitlines()]
    assert errors == len(bad) and "error" not in replies[-1]
    assert "expected one of the artifact's classes 0..9, found 10" in replies[0]["error"]
    assert "found bool" in replies[3]["error"] and "64 bits" in replies[2]["error"]
    assert strict.learner.labels == list(range(10)) and strict.learner.steps == 1

    open_set = Device(Engine.load(digits_artifact.path), DeviceConfig(allow_new_classes=True))
    open_set.handle({"x": x, "y": 10})
    assert open_set.learner.labels == [*range(10), 10] and open_set.learner.n_outputs == 11
