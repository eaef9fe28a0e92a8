"""The CLI: one clear line and exit code 2 on bad input, nothing half-written."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edgebert.cli import main


def _run(args: list[str], capsys) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture()
def work(tiny_ckpt: Path, tmp_path: Path) -> Path:
    shutil.copytree(tiny_ckpt, tmp_path / "ckpt")
    return tmp_path


def _convert(work: Path, cal: Path, *extra: str) -> list[str]:
    return ["convert", str(work / "ckpt"), "--calibration", str(cal), "--out", str(work / "out"), "--quiet", *extra]


@pytest.mark.parametrize("setup, match", [
    (lambda w, c: shutil.rmtree(w / "ckpt"), "expected a checkpoint directory, found no such directory"),
    (lambda w, c: (w / "ckpt" / "model.safetensors").write_bytes(b"garbage"), "corrupt"),
    (lambda w, c: (w / "ckpt" / "config.json").write_text(json.dumps({"model_type": "gpt2"})),
     "expected a BERT-architecture checkpoint"),
    (lambda w, c: c.write_text("\n \n"), "expected at least one non-empty line"),
    (lambda w, c: c.write_bytes(b"caf\xe9 latin-1\n"), "expected UTF-8 text"),
    (lambda w, c: c.unlink(), "expected a calibration text file"),
    (lambda w, c: (w / "out").mkdir(), "existing one.*--force"),
])
def test_bad_input_is_one_line_and_exit_2(work: Path, capsys, setup, match: str) -> None:
    cal = work / "cal.txt"
    cal.write_text("A sentence for calibration.\nAnother one.\n")
    setup(work, cal)
    before = sorted(p.name for p in work.iterdir())

    code, _, err = _run(_convert(work, cal), capsys)

    assert code == 2
    assert err.count("\n") == 1 and err.startswith("edgebert: error: ")
    assert __import__("re").search(match, err)
    assert sorted(p.name for p in work.iterdir()) == before  # nothing half-written


def test_int8_without_calibration_is_refused(work: Path, capsys) -> None:
    code, _, err = _run(["convert", str(work / "ckpt"), "--out", str(work / "out")], capsys)

    assert code == 2 and "--calibration" in err and not (work / "out").exists()


def test_bad_smoothquant_value(work: Path, capsys, calibration_file: Path) -> None:
    code, _, err = _run(_convert(work, calibration_file, "--smoothquant", "lots"), capsys)

    assert code == 2 and "--smoothquant" in err


def test_convert_cli_in_a_subprocess_prints_the_report(work: Path, calibration_file: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "edgebert", *_convert(work, calibration_file)],
                            capture_output=True, text=True, timeout=300)

    assert result.returncode == 0, result.stderr
    assert "fidelity    cosine of sentence embeddings to the fp32 model" in result.stdout and "precision   int8" in result.stdout
    assert "through ONNX Runtime on this CPU (x86-64" in result.stdout or "ARM64" in result.stdout
    assert "saturation-free reference: mean" in result.stdout and "no CPU saturates them" in result.stdout
    assert (work / "out" / "manifest.json").is_file()


def test_json_output_is_the_manifest(work: Path, calibration_file: Path, capsys) -> None:
    code, out, _ = _run(_convert(work, calibration_file, "--json", "--no-measure"), capsys)

    assert code == 0 and json.loads(out)["precision"] == "int8"


def test_output_under_a_file_is_refused(work: Path, calibration_file: Path, capsys) -> None:
    (work / "afile").write_text("x")

    code, _, err = _run(["convert", str(work / "ckpt"), "--calibration", str(calibration_file),
                         "--out", str(work / "afile" / "out"), "--quiet"], capsys)

    assert code == 2 and "expected a writable location" in err


def test_device_side_modules_do_not_import_torch() -> None:
    code = "import sys, edgebert, edgebert.artifact, edgebert.errors; print('torch' in sys.modules)"

    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)

    assert result.stdout.strip() == "False", result.stderr


@pytest.mark.parametrize(("args", "match"), [
    (["serve", "--role", "edge", "--job", "j", "--state", "{tmp}/s"], "expected --edges N"),
    (["serve", "--role", "root", "--job", "j", "--state", "{tmp}/s"], "expected --edges N"),
    (["serve", "--role", "edge", "--edges", "3", "--edge", "3", "--job", "j", "--state", "{tmp}/s"],
     "expected --edge K with 0 <= K < --edges"),
    (["serve", "--role", "root", "--edges", "2", "--job", "j", "--state", "{tmp}/s", "--broker", "mqtt://127.0.0.1:9",
      "--credentials", "{tmp}/devices-only.json"], "expected the 'aggregator' service user"),
    (["serve", "--role", "edge", "--edges", "2", "--edge", "0", "--job", "j", "--state", "{tmp}/s",
      "--broker", "mqtt://127.0.0.1:9", "--credentials", "{tmp}/missing.json"], "expected credentials.json"),
    (["simulate", "--devices", "3", "--per-round", "2", "--edges", "5"], "expected 0 .flat. to --per-round"),
    (["simulate", "--devices", "3", "--per-round", "4"], "expected 0 < --per-round <= --devices"),
])
def test_hierarchical_federate_arguments_are_checked_before_anything_starts(tmp_path: Path, capsys, args: list[str],
                                                                           match: str) -> None:
    (tmp_path / "devices-only.json").write_text('{"dev-a": "device-secret"}')
    code, _, err = _run(["federate", *[a.replace("{tmp}", str(tmp_path)) for a in args]], capsys)

    assert code == 2 and err.count("\n") == 1 and __import__("re").search(match, err), err
    assert not (tmp_path / "s").exists()  # no state directory made for a refused service
