"""`edgebert registry …`: results, --json, and one-line errors with exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgebert.cli import main

from ..net import free_port
from .conftest import SELOC, make_td, write_artifact


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["registry", *args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture()
def store(tmp_path: Path, capsys) -> str:
    path = str(tmp_path / "store")
    assert run(capsys, "--store", path, "import", str(SELOC / "example_tflite_models.ttl"))[0] == 0
    return path


def test_match_json_and_export_td(store: str, capsys, tmp_path: Path) -> None:
    added, _, err = run(capsys, "--store", store, "add-device", str(SELOC / "example_arduino_nano_ble_33_td.ttl"))
    assert added == 0, err

    code, out, err = run(capsys, "--store", store, "--json", "match", "arduino_nano_ble_33-322-000-000-002")
    assert code == 0, err
    code_td, _, _ = run(capsys, "--store", store, "export-td", "arduino_nano_ble_33-322-000-000-002",
                        "--out", str(tmp_path / "td.json"))

    assert code == 0 and len(json.loads(out)["matches"]) == 22 and json.loads(out)["unknown_capabilities"] == []
    assert code_td == 0 and json.loads((tmp_path / "td.json").read_text())["eb:flashBytes"] == 628_000


def test_deploy_outdated_lineage_flow(store: str, capsys, tmp_path: Path) -> None:
    devices = tmp_path / "devices.json"
    devices.write_text(json.dumps([make_td("gw", 10**9, 10**9)]))
    old = write_artifact(tmp_path, "old", created="2026-01-01T00:00:00+00:00")
    new = write_artifact(tmp_path, "new", created="2026-06-01T00:00:00+00:00")
    for args in (["add-device", str(devices)], ["add-artifact", str(old)], ["add-artifact", str(new)],
                 ["deploy", "gw", "old"]):
        assert run(capsys, "--store", store, *args)[0] == 0

    _, out, _ = run(capsys, "--store", store, "--json", "outdated")
    _, lineage, _ = run(capsys, "--store", store, "lineage", "new")
    _, where, _ = run(capsys, "--store", store, "deployments")

    assert json.loads(out) == [{"device": "urn:dev:gw", "current": "urn:edgebert:artifact:old",
                                "newer": "urn:edgebert:artifact:new", "created": "2026-06-01T00:00:00Z"}]
    assert "urn:edgebert:model:" in lineage and "urn:edgebert:artifact:old  active" in where


@pytest.mark.parametrize("setup, args, match", [
    (lambda p: p.write_text(json.dumps({**make_td("x", 1, 1), "title": 5})), ["add-device", "{f}"],
     "invalid Thing Description at 'title'"),
    (lambda p: p.write_text(json.dumps({**make_td("x", 1, 1), "eb:ramBytes": 0})),
     ["add-device", "{f}"], "'eb:ramBytes' a positive integer"),
    (lambda p: p.write_text("{"), ["add-device", "{f}"], "expected JSON"),
    (lambda p: None, ["query", "SELECT WHERE"], "malformed SPARQL"),
    (lambda p: p.write_text("<a> <b> ."), ["import", "{f}"], "syntax error"),
    (lambda p: None, ["match", "no-such-device"], "expected a device or artifact known"),
])
def test_bad_input_exit_2_store_unchanged(store: str, capsys, tmp_path: Path, setup, args, match) -> None:
    f = tmp_path / ("in.ttl" if "import" in args else "in.json")
    setup(f)
    _, before, _ = run(capsys, "--store", store, "query", "SELECT (COUNT(*) AS ?n) WHERE { ?s ?p ?o }")

    code, _, err = run(capsys, "--store", store, *[a.replace("{f}", str(f)) for a in args])

    _, after, _ = run(capsys, "--store", store, "query", "SELECT (COUNT(*) AS ?n) WHERE { ?s ?p ?o }")
    assert code == 2 and err.count("\n") == 1 and match in err
    assert before == after


def test_wrong_sha256_manifest_exit_2(store: str, capsys, tmp_path: Path) -> None:
    art = write_artifact(tmp_path, "bad")
    (art / "model.onnx").write_bytes(b"z" * 500)

    code, _, err = run(capsys, "--store", store, "add-artifact", str(art))

    assert code == 2 and "sha256" in err


def test_unreachable_endpoint_exit_2(capsys) -> None:
    code, _, err = run(capsys, "--store", f"http://127.0.0.1:{free_port()}/query", "outdated")

    assert code == 2 and "expected a reachable SPARQL endpoint" in err


def test_match_and_devices_for_say_why_a_device_cannot_be_matched(store: str, capsys, tmp_path: Path) -> None:
    td = make_td("bare", 1, 1)
    td.pop("eb:ramBytes"), td.pop("eb:flashBytes")
    (tmp_path / "bare.json").write_text(json.dumps(td))
    assert run(capsys, "--store", store, "add-device", str(tmp_path / "bare.json"))[0] == 0

    code, out, _ = run(capsys, "--store", store, "--json", "match", "bare")
    m = json.loads(out)
    assert code == 0 and m["matches"] == [] and m["unknown_capabilities"] == ["eb:ramBytes", "eb:flashBytes"]
    assert m["reason"] == "cannot be matched: its description states no eb:ramBytes, eb:flashBytes"
    code, out, _ = run(capsys, "--store", store, "match", "bare")
    assert code == 0 and "cannot be matched" in out
    code, out, _ = run(capsys, "--store", store, "--json", "devices-for", "nonexistent-artifact")
    assert code == 2
    code, out, _ = run(capsys, "--store", store, "--json", "query", "PREFIX schema: <https://schema.org/> "
                       "SELECT ?id WHERE { ?a schema:identifier ?id } LIMIT 1")
    some_artifact = json.loads(out)[0]["id"]
    code, out, _ = run(capsys, "--store", store, "--json", "devices-for", some_artifact)
    d = json.loads(out)
    assert code == 0 and {"device": "urn:dev:bare", "unknown_capabilities": ["eb:ramBytes", "eb:flashBytes"]} \
        in d["unmatchable"]
