"""``edgebert export``: the firmware artifact it writes, how it runs, how the registry and the CLI
treat it, and the one-line refusals (exit 2, nothing written)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgebert.artifact import Artifact
from edgebert.cli import main
from edgebert.runtime.engine import Engine
from firmware_export import program
from firmware_export.export import export, probe_inputs
from tests.firmware.conftest import needs_m4


def _cli(args: list[str], capsys) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_the_c_export_is_an_artifact_whose_device_runs_the_firmware(digits_c, digits_program, digits_inputs) -> None:
    art = Artifact.load(digits_c.artifact.path)  # every file verifies against the manifest
    m = art.manifest
    assert m.runtime == "c99" and m.artifact_id.endswith("-c") and m.firmware["ops"] == ["linear", "relu"]
    assert "model.onnx" not in m.device_files() and "libedgebert_firmware.so" in m.device_files()
    info = json.loads((art.path / "firmware.json").read_text())
    assert info["agreement"]["c_host_vs_reference"] == "bit-exact"
    engine = Engine.load(art.path)
    x = digits_inputs[:50]
    _, ref_o = program.run(digits_program, x)
    assert np.allclose(engine.output(x), program.dequantize_output(digits_program, ref_o))
    assert engine.features(x).shape == (50, 32) and engine.firmware is not None


@needs_m4
def test_measured_figures_reach_the_manifest_and_the_registry(digits_c, tmp_path: Path) -> None:
    from registry.registry import open_registry
    from tests.registry.conftest import make_td

    fig = digits_c.firmware["figures"]
    m = digits_c.artifact.manifest
    assert m.memory["measured"] and m.memory["flash_bytes"] == fig["learn_flash_bytes"]
    assert m.memory["peak_ram_bytes"] == fig["learn_ram_bytes"] and "QEMU" in m.memory["how"]
    reg = open_registry(str(tmp_path / "reg"))
    try:
        reg.add_artifact(digits_c.artifact.path)
        reg.add_tds([make_td("m4", 256_000, 1_000_000, runtimes=("c99",)),
                     make_td("tiny", fig["learn_ram_bytes"] - 1, 1_000_000, runtimes=("c99",)),
                     make_td("pi", 10**9, 10**10, runtimes=("onnxruntime",))])
        assert [x.id for x in reg.match("urn:dev:m4")] == [m.artifact_id]
        assert reg.match("urn:dev:tiny") == []  # one byte short of the measured RAM
        assert m.artifact_id not in [x.id for x in reg.match("urn:dev:pi")]  # an ONNX Runtime device runs no firmware
    finally:
        reg.close()


def test_tflm_and_tflite_exports_run_in_their_interpreters(digits_artifact, digits_program, tmp_path: Path) -> None:
    x = probe_inputs(digits_program, 20, seed=3)
    _, ref_o = program.run(digits_program, x)
    for target, runtime in (("tflm", "tflite-micro"), ("tflite", "litert")):
        result = export(digits_artifact.path, target, tmp_path / target)
        assert result.artifact.manifest.runtime == runtime
        memory = result.artifact.manifest.memory
        assert memory["measured"] is False and "lower bound" in memory["how"]  # TFLM's flash is not measured here
        out = Engine.load(result.artifact.path).output(x)
        lsb = digits_program.output_scale * (0 if target == "tflm" else 1)  # TFLM exact, LiteRT within 1 LSB
        assert np.abs(out - program.dequantize_output(digits_program, ref_o)).max() <= lsb + 1e-6
    assert (tmp_path / "tflm" / "model_data.c").is_file() and not (tmp_path / "tflite" / "model_data.c").exists()


def test_a_budget_is_met_or_the_export_is_refused_with_the_overshoot(digits_artifact, tmp_path: Path, capsys) -> None:
    out = tmp_path / "fw"
    code, _, err = _cli(["export", str(digits_artifact.path), "--target", "tflm", "--out", str(out), "--ram", "1K",
                         "--flash", "1M", "--quiet"], capsys)
    assert code == 2 and "does not fit the budget: over on RAM by" in err and err.count("\n") == 1
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".fw")]
    code, stdout, _ = _cli(["export", str(digits_artifact.path), "--target", "tflm", "--out", str(out), "--device",
                            "cortex-m4", "--quiet"], capsys)
    assert code == 0 and "fits cortex-m4" in stdout


@pytest.mark.parametrize("args, match", [
    (["--target", "c", "--ram", "1000"], "expected both"),
    (["--target", "c", "--device", "cortex-m4", "--ram", "1K", "--flash", "1M"], "either --device or --ram/--flash"),
    (["--target", "c", "--no-measure", "--device", "cortex-m4"], "expected measured figures"),
])
def test_contradictory_options_are_one_line(digits_artifact, tmp_path: Path, capsys, args, match: str) -> None:
    code, _, err = _cli(["export", str(digits_artifact.path), "--out", str(tmp_path / "o"), *args], capsys)
    assert code == 2 and match in err and not (tmp_path / "o").exists()


def test_bad_artifacts_are_refused_in_one_line(digits_artifact, tmp_path: Path, capsys) -> None:
    tampered = tmp_path / "tampered"
    shutil.copytree(digits_artifact.path, tampered)
    with (tampered / "graph.safetensors").open("r+b") as fh:
        fh.seek(-4, os.SEEK_END)
        fh.write(b"\x00\x01\x02\x03")
    cases = [(tampered, "tampered"), (tmp_path / "missing", "expected an artifact directory")]
    for path, match in cases:
        code, _, err = _cli(["export", str(path), "--target", "tflite", "--out", str(tmp_path / "o")], capsys)
        assert code == 2 and match in err and err.count("\n") == 1, err
    assert not (tmp_path / "o").exists()


def test_without_the_cortex_m4_toolchain_the_c_export_says_what_to_install(digits_artifact, tmp_path, monkeypatch,
                                                                          capsys) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    for name in ("cc", "gcc", "as", "ld"):  # the host compiler stays reachable
        if shutil.which(name):
            (empty / name).symlink_to(shutil.which(name))
    monkeypatch.setenv("PATH", str(empty))
    code, _, err = _cli(["export", str(digits_artifact.path), "--target", "c", "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and "apt-get install --no-install-recommends gcc-arm-none-eabi" in err
    assert not (tmp_path / "o").exists()
    code, out, _ = _cli(["export", str(digits_artifact.path), "--target", "c", "--out", str(tmp_path / "o"),
                         "--no-measure", "--json"], capsys)
    assert code == 0 and json.loads(out)["figures"]["measured"] is None


def test_relative_paths_work_as_users_type_them(digits_artifact, tmp_path: Path, monkeypatch, capsys) -> None:
    """The compilers run in the build directory: an output path relative to the user's directory
    must still land where the user said (the demo writes ./edgebert-demo)."""
    monkeypatch.chdir(tmp_path)
    shutil.copytree(digits_artifact.path, tmp_path / "digits-int8")
    code, _, err = _cli(["export", "digits-int8", "--target", "c", "--out", "out/digits-c", "--no-measure", "--quiet"],
                        capsys)
    assert code == 0, err
    assert Engine.load(tmp_path / "out" / "digits-c").output(np.zeros(64, np.float32)).shape == (1, 10)


def test_help_teaches_targets_and_budgets(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["export", "--help"])
    text = capsys.readouterr().out
    for needle in ("tflm", "C99", "--device", "--ram", "qemu-system-arm", "examples:"):
        assert needle in text


def test_a_firmware_export_is_not_exported_again(digits_c, tmp_path: Path, capsys) -> None:
    code, _, err = _cli(["export", str(digits_c.artifact.path), "--target", "c", "--out", str(tmp_path / "x")], capsys)
    assert code == 2 and "found a firmware export" in err



def test_a_tampered_or_inconsistent_firmware_is_refused_before_it_runs(digits_c, tmp_path: Path) -> None:
    """The host build is native code: it is loaded only after the signed manifest's sha256 checks,
    and only if its own dimensions are the ones firmware.json promises (no buffer overrun)."""
    from edgebert.errors import ArtifactError
    from edgebert.runtime.firmware import Firmware

    tampered = tmp_path / "tampered"
    shutil.copytree(digits_c.artifact.path, tampered)
    with (tampered / "libedgebert_firmware.so").open("r+b") as fh:
        fh.seek(200)
        fh.write(b"\x90\x90\x90\x90")
    with pytest.raises(ArtifactError, match="tampered"):
        Engine.load(tampered)
    lying = tmp_path / "lying"
    shutil.copytree(digits_c.artifact.path, lying)
    info = json.loads((lying / "firmware.json").read_text())
    info["shape"]["features"] = 64
    info["quantization"]["feature_scale"] = info["quantization"]["feature_scale"] * 2
    (lying / "firmware.json").write_text(json.dumps(info))
    with pytest.raises(ArtifactError, match="expected a build for 64/64/10"):
        Firmware(lying)
    (lying / "firmware.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="expected a firmware description"):
        Firmware(lying)


def test_byte_budgets_take_the_units_datasheets_use() -> None:
    import argparse

    from edgebert.cli.export import _int

    assert [_int(t) for t in ("262144", "256K", "256KB", "1M", "1mb", "1.5K")] == [262144, 256_000, 256_000,
                                                                                   1_000_000, 1_000_000, 1500]
    for bad in ("", "KB", "-1K", "lots"):
        with pytest.raises(argparse.ArgumentTypeError):
            _int(bad)
